"""PAC and the neighbourhood attack in the membership check, on the demo's canary LM (a tiny
GPT-2 trained in the test) with a tiny BERT trained on other canaries as the neighbour model:
their AUROCs beside loss's, their values equal to each record scored alone, and when they run."""

from __future__ import annotations

import pytest

from core.check_kinds import SubmitContext
from tests.worker.masked_lm import build_masked_lm
from worker.checks.lm.compute import plan_membership
from worker.checks.lm.kinds import MembershipParams
from worker.demo import make_corpus
from worker.engine.attacks_pac import augmentations, pac_score
from worker.engine.neighbourhood import neighbours
from worker.engine.scoring import ScoringRequest, score_sequences
from worker.loaders.masked_lm import cached_masked_lm
from worker.loaders.models import LoadedModel
from worker.local import audit_texts, load_local, local_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def canary_lm(tiny_lm) -> LoadedModel:
    return load_local(tiny_lm.model_dir)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """Trained on canaries the audited records are not: the swaps know the template only."""
    root = tmp_path_factory.mktemp("neighbour") / "models"
    return build_masked_lm(root / "canary-bert", make_corpus(seed=11).members)


def _records(tiny_lm) -> list[dict]:
    corpus = make_corpus(tiny_lm.n_members, tiny_lm.n_nonmembers)
    return [{"text": t, "member": True} for t in corpus.members] + [
        {"text": t, "member": False} for t in corpus.nonmembers
    ]


def _loss(lm: LoadedModel, text: str) -> float:
    (stats,) = score_sequences(
        lm.model, [ScoringRequest(lm.special_prefix + lm.encode(text))], lm.device
    )
    return -stats.mean_logprob


def _logprobs(lm: LoadedModel, text: str):
    (stats,) = score_sequences(
        lm.model, [ScoringRequest(lm.special_prefix + lm.encode(text))], lm.device
    )
    return stats.logprobs


def test_pac_and_neighbourhood_reported_beside_loss(tiny_lm, canary_lm, bert_dir) -> None:
    records = _records(tiny_lm)
    params = {
        "scores": ["loss", "pac", "neighbourhood"],
        "neighbour_model": f"path:{bert_dir}",
        "neighbours": 8,
        "bootstrap": 200,
        "seed": 3,
    }
    result = audit_texts(canary_lm, records, [{"kind": "membership", "params": params}])
    summary = result["membership"]["summary"]
    scores = summary["scores"]
    print(f"\ncanary LM, {tiny_lm.n_members} members vs {tiny_lm.n_nonmembers} non-members")
    for name in ("loss", "pac", "neighbourhood"):
        auroc = scores[name]["auroc"]
        print(f"  {name:14s} AUROC {auroc['value']:.3f}  CI95 {auroc['ci95']}")
        assert auroc["ci95"][0] <= auroc["value"] <= auroc["ci95"][1]
        assert "tpr_at_0.01_fpr" in scores[name] and "reading" in scores[name]
    assert "blind_baseline" in summary

    # Each record's values equal the record scored alone, outside the batched pass.
    masked = cached_masked_lm(local_spec(bert_dir))
    for sample, record in list(zip(result["membership"]["samples"], records, strict=True))[::12]:
        text = record["text"]
        augmented = [_logprobs(canary_lm, a) for a in augmentations(text, 3)]
        expected_pac = pac_score(_logprobs(canary_lm, text), augmented)
        assert sample["pac"] == pytest.approx(expected_pac, abs=1e-5)
        swaps = neighbours(text, masked.model, masked.tokenizer, n=8, seed=3)
        own = _loss(canary_lm, text)
        expected = sum(_loss(canary_lm, s) for s in swaps) / len(swaps) - own
        assert sample["n_neighbours"] == 8
        assert sample["neighbourhood"] == pytest.approx(expected, abs=1e-5)

    # The same seed gives the same scores (to float32 batching noise: other batch-mates).
    again = audit_texts(canary_lm, records[:4], [{"kind": "membership", "params": params}])
    first = result["membership"]["samples"][:4]
    for one, other in zip(first, again["membership"]["samples"], strict=True):
        assert one["pac"] == pytest.approx(other["pac"], abs=1e-6)
        assert one["neighbourhood"] == pytest.approx(other["neighbourhood"], abs=1e-6)


def test_pac_is_opt_in_and_a_neighbour_model_asks_for_neighbourhood(tiny_lm, canary_lm) -> None:
    context = SubmitContext(has_reference_model=False)
    assert plan_membership(MembershipParams(), context).pac is None
    plan = plan_membership(MembershipParams(scores=["pac"], pac_augmentations=3), context)
    assert plan.pac is not None and plan.pac.n == 3
    assert "neighbourhood" in MembershipParams(neighbour_model="path:/m").wanted(False)
    assert "neighbourhood" not in MembershipParams().wanted(True)
    found = audit_texts(canary_lm, _records(tiny_lm)[:4], [{"kind": "membership"}])
    assert all("pac" not in v and "neighbourhood" not in v for v in found["membership"]["samples"])


def test_an_empty_record_is_skipped_and_counted_not_a_crash(canary_lm) -> None:
    """The demo's tokenizer adds no BOS token, so an empty text has no token at all."""
    assert canary_lm.special_prefix == []
    records = [
        {"id": "e", "text": "", "member": True},
        {"id": "w", "text": "Customer", "member": False},
        {"id": "f", "text": "Customer amber has", "member": False},
        {"id": "g", "text": "Customer basil has", "member": True},
    ]
    checks = [
        {"kind": "loss", "params": {}},
        {"kind": "membership", "params": {"scores": ["loss", "pac"], "bootstrap": 10}},
    ]
    result = audit_texts(canary_lm, records, checks)
    loss, membership = result["loss"], result["membership"]
    empty, one_token = membership["samples"][:2]
    assert empty["skipped"] and empty["reason"] == "empty"
    assert one_token["skipped"] and one_token["reason"] == "too_short"
    assert membership["summary"]["n_skipped"] == 2
    assert [row["reason"] for row in loss["samples"][:2]] == ["empty", "too_short"]
    assert loss["summary"]["n_skipped"] == 2
    assert loss["summary"]["skipped_reasons"] == ["empty", "too_short"]


def test_unscorable_pac_and_neighbourhood_say_why_and_report_no_auroc(canary_lm, bert_dir) -> None:
    """Japanese records have no spaces for PAC's swaps, and the canary BERT knows none of their
    characters (all [UNK], special): neither score exists, and each says why instead of an
    AUROC over 0.0s or "ROC needs both members and non-members" on a labelled dataset."""
    japanese = [
        {"text": f"顧客{i}の秘密の暗証番号は{i * 111111:06d}です。", "member": i % 2 == 0}
        for i in range(6)
    ]
    english = [
        {"text": "Customer amber has secret PIN 123456.", "member": True},
        {"text": "Customer basil has secret PIN 654321.", "member": False},
    ]
    params = {
        "scores": ["loss", "pac", "neighbourhood"],
        "neighbour_model": f"path:{bert_dir}",
        "neighbours": 3,
        "bootstrap": 10,
    }
    checks = [{"kind": "membership", "params": params}]
    result = audit_texts(canary_lm, japanese, checks)["membership"]
    for row in result["samples"]:
        assert row["pac"] is None and row["pac_not_scored"] == "fewer than 2 space-separated words"
        assert row["neighbourhood"] is None and row["n_neighbours"] == 0
    scores = result["summary"]["scores"]
    assert scores["pac"]["auroc"] is None and scores["pac"]["n_not_scored"] == 6
    assert scores["pac"]["not_computed"] == "fewer than 2 space-separated words for 6 of 6 records"
    assert scores["neighbourhood"]["not_computed"].startswith("no neighbours (")
    assert scores["neighbourhood"]["n_not_scored"] == 6
    assert "ROC needs both members and non-members" not in result["summary"]["warnings"]
    assert scores["loss"]["auroc"]["value"] is not None

    mixed = audit_texts(canary_lm, japanese + english, checks)["membership"]["summary"]
    assert mixed["scores"]["pac"]["auroc"]["value"] is not None  # the two English records
    assert mixed["scores"]["pac"]["n_not_scored"] == 6
    assert "pac: fewer than 2 space-separated words for 6 of 8 records" in mixed["warnings"]


def test_held_out_records_get_no_neighbours(tiny_lm, canary_lm, bert_dir, monkeypatch) -> None:
    """Records held out for ReCaLL are scored by no score: no neighbours are made for them."""
    from worker.checks.lm import calibration_work

    made: list[str] = []
    real = calibration_work.neighbours

    def counted(text, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(calibration_work, "neighbours", counted)
    params = {
        "scores": ["loss", "recall", "neighbourhood"],
        "neighbour_model": f"path:{bert_dir}",
        "neighbours": 2,
        "bootstrap": 0,
    }
    records = _records(tiny_lm)
    result = audit_texts(canary_lm, records, [{"kind": "membership", "params": params}])
    samples = result["membership"]["samples"]
    held = [r["text"] for r, s in zip(records, samples, strict=True) if s.get("held_out")]
    assert len(held) == 6 and not set(held) & set(made)
    assert len(made) == len(records) - 6
