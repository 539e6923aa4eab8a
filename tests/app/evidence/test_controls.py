"""The controls map: evidence only where a check serves a control, caveats where the
membership evidence is weak, and always what a control asks that one audit cannot show."""

from __future__ import annotations

from app.evidence.controls import CONTROLS, control_map, role_of


def _methods(*kinds: str) -> list[dict]:
    return [{"kind": kind, "role": role_of(kind)} for kind in kinds]


def _by_control(entries: list[dict]) -> dict[str, dict]:
    return {entry["control"]: entry for entry in entries}


def test_a_loss_only_audit_serves_no_attack_control_but_hints_at_privacy() -> None:
    entries = _by_control(control_map(_methods("loss"), {}, has_verdict=False))
    for control in ("AIG-035", "Art. 15", "MEASURE 2.7"):
        assert entries[control]["evidence_in_this_pack"] == "none"
        assert entries[control]["evidence"] == [] and entries[control]["not_covered"]
    privacy = entries["MEASURE 2.10"]
    assert privacy["evidence_in_this_pack"] == "present"
    assert privacy["evidence"][0] == {
        "item": "/methods/0",
        "what": "loss: memorisation indicator (not an attack): per-record signals of memorisation",
    }
    assert "/verdict" not in {item["item"] for item in privacy["evidence"]}


def test_membership_evidence_carries_its_caveats() -> None:
    confounded = {"membership": {"blind_baseline": {"reading": "confounded"}, "scores": {}}}
    entries = _by_control(control_map(_methods("membership"), confounded, has_verdict=True))
    caveats = entries["AIG-035"]["caveats"]
    assert any("confounded" in c for c in caveats)
    assert any("no member labels" in c for c in caveats)  # no score has an AUROC
    assert not any("not confounded" in c for c in caveats)
    assert "/verdict" in {item["item"] for item in entries["AIG-035"]["evidence"]}

    tested = {
        "membership": {
            "blind_baseline": {"reading": "no_confound_detected"},
            "scores": {"loss": {"auroc": {"value": 0.91}}},
        }
    }
    entries = _by_control(control_map(_methods("membership"), tested, has_verdict=False))
    assert entries["AIG-035"]["caveats"] == []
    skipped = {"membership": {"blind_baseline": {"reading": "not_assessed", "reason": "few"}}}
    entries = _by_control(control_map(_methods("membership"), skipped, has_verdict=False))
    assert any("not checked by a blind baseline: few" in c for c in entries["Art. 15"]["caveats"])


def test_every_control_names_its_source_and_paraphrases_it() -> None:
    assert [c.control for c in CONTROLS] == ["AIG-035", "Art. 15", "MEASURE 2.7", "MEASURE 2.10"]
    for control in CONTROLS:
        assert control.reference.startswith("https://") and control.not_covered
        assert '"' not in control.asks  # a paraphrase, never a quotation
    assert role_of("extraction") == "extraction" and role_of("toy") == "memorisation_indicator"
