"""ReCaLL, Con-ReCall and DC-PDD in the membership check, on the canary model trained here:
the held-out records are the same across batch sizes, scored by no score and named; the new
scores' AUROCs are reported beside loss's on the same records (no threshold: a tiny LM has no
in-context ability to speak of)."""

from __future__ import annotations

import json

import pytest

from core.check_kinds import FitContext, SubmitContext
from core.dataset_profile import DatasetProfile
from tests.conftest import filler_records, write_jsonl
from worker.checks.lm.figures import roc_figure, score_distribution_figure
from worker.checks.lm.holdout import HoldoutError, select_holdout
from worker.checks.lm.kinds import MEMBERSHIP, MembershipParams
from worker.checks.lm.report import holdout_notes
from worker.local import audit_records, audit_texts, load_local

NEW = ("recall", "con_recall", "dc_pdd")


def test_new_scores_beside_loss_on_the_same_records(tiny_lm) -> None:
    lm = load_local(tiny_lm.model_dir)
    params = {"bootstrap": 100, "holdout_share": 0.2, "scores": ["loss", *NEW]}
    checks = [{"kind": "membership", "params": params}]
    result = audit_records(lm, tiny_lm.dataset_path, checks, batch_size=7)["membership"]
    summary, samples = result["summary"], result["samples"]
    held = [s for s in samples if s.get("held_out")]
    # 24 per label, share 0.2 -> 5 of each held out, 3 of them the prefix shots.
    assert len(held) == 10
    holdout = summary["holdout"]
    assert holdout["n_held_out"] == 10 and holdout["n_scored"] == 38
    assert len(holdout["prefix"]["members"]) == 3 == len(holdout["prefix"]["nonmembers"])
    assert len(holdout["frequency_only"]["members"]) == 2
    named = {
        i
        for group in (holdout["prefix"], holdout["frequency_only"])
        for ids in group.values()
        for i in ids
    }
    assert named == {f"{s['index']}:{s['id']}" for s in held}  # position and id
    for sample in held:  # scored by nothing, loss included
        assert not set(sample) & {"loss", "zlib", *NEW}
    scored = [s for s in samples if not s.get("held_out")]
    for name in ("loss", *NEW):
        assert all(isinstance(s[name], float) for s in scored), name
        entry = summary["scores"][name]
        assert entry["n_members"] + entry["n_nonmembers"] == 38
        assert 0 <= entry["auroc"]["value"] <= 1 and "tpr_at_0.01_fpr" in entry
    assert holdout["loss_auroc_same_records"] == summary["scores"]["loss"]["auroc"]
    print("\ncanary GPT-2, 38 scored records:")
    for name in ("loss", *NEW):
        print(f"  {name:>10}: AUROC {summary['scores'][name]['auroc']['value']:.3f}")
    # The report draws them beside the others and names the held-out records.
    curves = {trace.name.split(" · ")[0] for trace in roc_figure(summary).data if trace.name}
    assert {"loss", *NEW} <= curves
    assert score_distribution_figure(summary, "dc_pdd") is not None
    (note,) = holdout_notes(holdout)
    assert all(i in note for i in holdout["prefix"]["members"]) and "same 38 scored" in note
    # The same records are held out whatever the batching (each batch reads the whole file).
    again = audit_records(lm, tiny_lm.dataset_path, checks, batch_size=48)["membership"]
    assert again["summary"]["holdout"]["prefix"] == holdout["prefix"]
    for a, b in zip(samples, again["samples"], strict=True):
        assert a.get("held_out") == b.get("held_out")
        if "recall" in a:
            assert b["recall"] == pytest.approx(a["recall"], rel=1e-6)  # float32 batching


def test_too_few_labels_say_so(tiny_lm, tmp_path) -> None:
    lm = load_local(tiny_lm.model_dir)
    rows = [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]
    few = write_jsonl(tmp_path / "few.jsonl", rows[:3] + rows[-6:])  # 3 members: none left
    with pytest.raises(HoldoutError, match="3 labelled members"):
        select_holdout(few, 0.0, 3, 0)
    named = [{"kind": "membership", "params": {"bootstrap": 0, "scores": ["loss", "recall"]}}]
    summary = audit_records(lm, few, named)["membership"]["summary"]
    assert "not computed" in " ".join(summary["warnings"])
    assert "leaves none to score" in summary["scores"]["recall"]["not_computed"]
    assert summary["scores"]["loss"]["n_members"] == 3  # nothing held out
    assert "leaves none" in summary["holdout"]["not_computed"]
    assert "were not computed" in holdout_notes(summary["holdout"])[0]
    # A list of texts holds records out of itself: too few labels are said, not skipped.
    texts = audit_texts(lm, rows[:4], named)["membership"]["summary"]
    assert "leaves none to score" in texts["scores"]["recall"]["not_computed"]


def test_policy_fit_refuses_named_scores_it_cannot_hold_out() -> None:
    profile = DatasetProfile(n_records=5, n_parsed=5, members={"true": 3, "false": 2, "absent": 0})
    named = MEMBERSHIP.fit(MembershipParams(scores=["recall"]), FitContext(profile))
    assert any("leaves none to score" in r for r in named.refusals)
    default = MEMBERSHIP.fit(MembershipParams(), FitContext(profile))
    assert not default.refusals and not default.warnings  # the held-out scores are opt-in
    assert not MEMBERSHIP.fit(MembershipParams(scores=["loss"]), FitContext(profile)).warnings
    enough = DatasetProfile(n_records=8, n_parsed=8, members={"true": 4, "false": 4, "absent": 0})
    assert not MEMBERSHIP.fit(MembershipParams(scores=["recall"]), FitContext(enough)).refusals


def test_a_reference_corpus_holds_no_audited_record_out(tiny_lm, tmp_path) -> None:
    lm = load_local(tiny_lm.model_dir)
    fresh = [{"text": r["text"]} for r in filler_records(5, seed=9)]  # unlabelled: non-members
    corpus = write_jsonl(tmp_path / "reference.jsonl", fresh)
    params = {"bootstrap": 0, "reference_corpus": f"path:{corpus}", "shots": 2}
    named = [{"kind": "membership", "params": {**params, "scores": ["recall", "con_recall"]}}]
    summary = audit_records(lm, tiny_lm.dataset_path, named)["membership"]["summary"]
    assert (
        "0 `member: true` records, fewer than shots=2"
        in summary["scores"]["con_recall"]["not_computed"]
    )
    checks = [{"kind": "membership", "params": {**params, "scores": ["recall", "dc_pdd"]}}]
    result = audit_records(lm, tiny_lm.dataset_path, checks)["membership"]
    samples, holdout = result["samples"], result["summary"]["holdout"]
    assert not any(s.get("held_out") for s in samples)
    assert all(isinstance(s["recall"], float) and isinstance(s["dc_pdd"], float) for s in samples)
    assert holdout["source"] == f"path:{corpus}" and holdout["n_scored"] == 48
    assert result["summary"]["scores"]["recall"]["n_members"] == 24
    assert "reference corpus" in holdout_notes(holdout)[0]


def test_the_reference_corpus_is_checked_at_submit() -> None:
    class Found:
        fields = ["body"]

    def refuse(uri: str) -> object:
        raise ValueError(f"{uri} is outside the data roots")

    params = MembershipParams(reference_corpus="path:/elsewhere/corpus.jsonl")
    with pytest.raises(ValueError, match="outside the data roots"):
        MEMBERSHIP.validate(params, SubmitContext(False, resolve_dataset=refuse))
    with pytest.raises(ValueError, match="no `text` field"):
        MEMBERSHIP.validate(params, SubmitContext(False, resolve_dataset=lambda _u: Found()))
