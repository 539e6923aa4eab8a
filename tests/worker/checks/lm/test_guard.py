"""The blind-baseline guard on a real model's membership audit: an IID split stands, a split
that differs by a stylistic marker is confounded and every membership metric withheld."""

from __future__ import annotations

import random

import pytest

from core.verdicts import evaluate
from worker.demo import canary_text, make_corpus
from worker.loaders.models import LoadedModel
from worker.local import audit_texts, load_local

pytestmark = pytest.mark.slow
CHECK = {"kind": "membership", "params": {"scores": ["loss", "zlib"], "bootstrap": 300}}
THRESHOLDS = [{"metric": "membership.best.auc", "op": "<=", "value": 0.6}]


@pytest.fixture(scope="module")
def canary_lm(tiny_lm) -> LoadedModel:
    return load_local(tiny_lm.model_dir)


def _records(tiny_lm, marker: str = "") -> list[dict]:
    """The demo model's canaries as members, and fresh canaries from the same template as
    non-members (an IID split); `marker` is appended to members only."""
    corpus = make_corpus(tiny_lm.n_members, tiny_lm.n_nonmembers)
    rng = random.Random(7)
    others = corpus.nonmembers + [canary_text(rng) for _ in range(76 - len(corpus.nonmembers))]
    return [{"text": t + marker, "member": True} for t in corpus.members] + [
        {"text": t, "member": False} for t in others
    ]


def test_on_an_iid_split_nothing_is_flagged_and_the_model_signal_stands(tiny_lm, canary_lm) -> None:
    summary = audit_texts(canary_lm, _records(tiny_lm), [CHECK])["membership"]["summary"]
    blind = summary["blind_baseline"]
    low, high = blind["auroc"]["ci95"]
    assert low <= 0.5 <= high, blind["auroc"]
    assert blind["reading"] == "no_confound_detected"
    assert blind["n_members"] == 24 and blind["n_nonmembers"] == 76
    for name in ("loss", "zlib"):
        score = summary["scores"][name]
        assert score["auroc"]["value"] >= 0.95, (name, score["auroc"])
        assert score["reading"] == {"reading": "stands"}
        # The model, not the split, separates them: its margin over the blind baseline is large.
        assert score["margin_over_blind"]["ci95"][0] > 0.2
    verdict = evaluate({"membership": summary}, THRESHOLDS)
    assert verdict.status == "fail" and verdict.promotion == "blocked"
    inference = summary["dataset_inference"]
    assert inference["reading"] == {"reading": "stands"} and inference["p_value"] < 0.01
    assert (inference["n_suspect"], inference["n_validation"]) == (24, 76)


def test_a_split_that_differs_by_a_stylistic_marker_is_confounded_and_withheld(
    tiny_lm, canary_lm
) -> None:
    records = _records(tiny_lm, marker=" (as noted above)")
    summary = audit_texts(canary_lm, records, [CHECK])["membership"]["summary"]
    blind = summary["blind_baseline"]
    assert blind["reading"] == "confounded" and blind["auroc"]["ci95"][0] > 0.55
    for name in ("loss", "zlib"):
        assert summary["scores"][name]["reading"] == {
            "reading": "inconclusive",
            "why": "the split is confounded",
        }
        assert "margin_over_blind" in summary["scores"][name]  # shown, for information only
    assert summary["dataset_inference"]["reading"]["reading"] == "inconclusive"
    for thresholds in (THRESHOLDS, [{"metric": "membership.loss.auc", "op": ">=", "value": 0.5}]):
        verdict = evaluate({"membership": summary}, thresholds)
        assert verdict.status == "inconclusive" and verdict.promotion == "blocked"
        assert verdict.results[0].passed is None
    assert evaluate({"membership": summary}, THRESHOLDS, "allow").promotion == "allowed"
