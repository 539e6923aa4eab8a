"""The guard's edges: it cannot be switched off by a check's params, never fails the audit it
guards, reads only finite scores, and lets dataset inference stand only on a clean split."""

from __future__ import annotations

import math
import random

import pytest

from tests.word_texts import word_texts
from worker.checks.lm import guard
from worker.checks.lm.compute import summarize_membership
from worker.checks.lm.guard import _inference_reading
from worker.checks.lm.kinds import MembershipParams
from worker.engine.blind_baseline import score_reading
from worker.engine.membership import roc_curve


def _rows(members: list[str], others: list[str], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"text": t, "member": member, "loss": rng.gauss(0.3 if member else 0.0, 1.0)}
        for texts, member in ((members, True), (others, False))
        for t in texts
    ]


def test_a_check_without_bootstrap_cannot_switch_the_guard_off() -> None:
    rows = _rows(word_texts(100, 1, marker=" — as noted"), word_texts(100, 2))
    summary = summarize_membership(rows, MembershipParams(scores=["loss"], bootstrap=0))
    assert summary["blind_baseline"]["reading"] == "confounded"
    assert summary["blind_baseline"]["bootstrap"] == 1000
    assert summary["scores"]["loss"]["reading"]["reading"] == "inconclusive"
    assert summary["dataset_inference"]["reading"]["reading"] == "inconclusive"


def test_a_rare_side_survives_the_subsample(monkeypatch) -> None:
    monkeypatch.setattr(guard, "MAX_BLIND_RECORDS", 100)
    rows = _rows(word_texts(3, 3), word_texts(297, 4))
    summary = summarize_membership(rows, MembershipParams(scores=["loss"], bootstrap=50))
    blind = summary["blind_baseline"]
    assert blind["n_members"] == 3 and blind["subsample"]["kept"] == 100
    assert blind["reading"] in ("confounded", "no_confound_detected")


def test_a_failing_blind_baseline_withholds_instead_of_failing_the_audit(monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise ValueError("no usable feature")

    monkeypatch.setattr(guard, "blind_scores", broken)
    rows = _rows(word_texts(40, 5), word_texts(40, 6))
    summary = summarize_membership(rows, MembershipParams(scores=["loss"], bootstrap=50))
    assert summary["blind_baseline"]["reading"] == "not_assessed"
    assert "no usable feature" in summary["blind_baseline"]["reason"]
    assert summary["scores"]["loss"]["reading"]["reading"] == "inconclusive"


def test_non_finite_scores_are_left_out_alike_everywhere() -> None:
    rows = _rows(word_texts(80, 7), word_texts(80, 8), seed=9)
    for row in rows[::4]:
        row["loss"] = math.nan
    summary = summarize_membership(rows, MembershipParams(scores=["loss"], bootstrap=200))
    entry = summary["scores"]["loss"]
    assert entry["n_members"] + entry["n_nonmembers"] == 120
    finite = [row for row in rows if not math.isnan(row["loss"])]
    direct = roc_curve(
        [r["loss"] for r in finite if r["member"]], [r["loss"] for r in finite if not r["member"]]
    ).auc
    assert entry["auroc"]["value"] == pytest.approx(direct)
    # The margin is over the same finite records: within what the blind AUROC can move it.
    margin = entry["margin_over_blind"]["value"]
    assert math.isfinite(margin) and abs(margin - (direct - 0.5)) < 0.3


def test_scores_below_chance_are_not_read_as_no_signal() -> None:
    found = score_reading(0.30, [0.25, 0.35], 400, False)
    assert found["reading"] == "inconclusive" and "check the labels" in found["why"]


def test_records_needed_is_always_more_than_were_audited() -> None:
    found = score_reading(0.773, [0.545, 0.955], 17, False)
    assert found["reading"] == "underpowered" and found["records_needed"] >= 18


@pytest.mark.parametrize(
    ("ci", "p", "reading"),
    [
        ([0.47, 0.53], 0.001, "stands"),
        ([0.54, 0.56], 1e-10, "inconclusive"),  # a small confound δ tolerates, a test does not
        ([0.47, 0.53], 0.2, "underpowered"),  # it can find a trained-on set, never clear one
    ],
)
def test_dataset_inference_stands_only_on_a_clean_split(ci, p, reading) -> None:  # type: ignore[no-untyped-def]
    blind = {"reading": "no_confound_detected", "auroc": {"value": sum(ci) / 2, "ci95": ci}}
    found = {"p_value": p, "power": {"records_needed_for_p_0.01": 5000}}
    assert _inference_reading(found, blind)["reading"] == reading
