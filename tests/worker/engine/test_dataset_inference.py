"""Dataset inference (Maini et al. 2024): power where per-record scores are near chance, a
calibrated p-value where nothing was trained on, and the edges.

The real-model tests train a tiny GPT-2 here, deliberately too briefly for any one record to be
told apart (every score's AUROC within 0.5 +- 0.1, asserted), and take the per-record scores
from the membership check's own path (`worker.local.audit_texts`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats

from worker.demo import build_tokenizer, canary_text, train_steps
from worker.engine.dataset_inference import (
    MIN_PER_SET,
    dataset_inference,
    power_estimate,
    usable_features,
    welch_greater,
    welch_test,
)
from worker.loaders.models import LoadedModel
from worker.local import audit_texts

# Sized so that, over data seeds 0-2, the best score's AUROC stayed within 0.545-0.58 while
# the dataset's p stayed below 0.002: fewer records or steps leave p near 0.01, more steps
# push single scores past 0.6. Memorization sets in sharply, so the window is narrow.
N_PER_SET = 1500  # members and as many non-members
TRAIN_STEPS = 250  # batches of 32: about 5 epochs, before any one canary is memorized
CALIBRATION_SETS = 200
CALIBRATION_SET_SIZE = 30  # records per side of each null test
KEYS = ["loss", "zlib", "lowercase", "mink_0.2", "minkpp_0.2", "ref"]


@dataclass(frozen=True)
class Undertrained:
    target: LoadedModel
    reference: LoadedModel
    members: list[str]
    nonmembers: list[str]
    fresh: list[str]  # never trained on by either model, for the null tests


def _unique_canaries(n: int, seed: int) -> list[str]:
    rng, texts = random.Random(seed), {}  # a dict keeps the drawing order; a set would not
    while len(texts) < n:
        texts[canary_text(rng)] = None
    return list(texts)


def _held(model, tokenizer) -> LoadedModel:  # type: ignore[no-untyped-def]
    return LoadedModel(
        spec=None,
        model=model,
        tokenizer=tokenizer,
        device="cpu",
        dtype="torch.float32",
        content_sha256="in-memory",
    )


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One core, as budgeted: two torch threads on a busy 2-core machine spin far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def undertrained(one_thread: None) -> Undertrained:
    n_fresh = 2 * CALIBRATION_SETS * CALIBRATION_SET_SIZE
    texts = _unique_canaries(3 * N_PER_SET + n_fresh, seed=0)
    members, nonmembers = texts[:N_PER_SET], texts[N_PER_SET : 2 * N_PER_SET]
    reference_data = texts[2 * N_PER_SET : 3 * N_PER_SET]
    # The tokenizer learns from the reference data only: one fitted to the members would cut
    # them into fewer tokens than the non-members, a confound before any training.
    tokenizer = build_tokenizer(reference_data[:500])
    target = train_steps(members, tokenizer, steps=TRAIN_STEPS, seed=0)
    reference = train_steps(reference_data, tokenizer, steps=TRAIN_STEPS, seed=1)
    return Undertrained(
        _held(target, tokenizer),
        _held(reference, tokenizer),
        members,
        nonmembers,
        texts[3 * N_PER_SET :],
    )


def _membership(lm: Undertrained, records: list[dict]) -> dict:
    return audit_texts(
        lm.target,
        records,
        [{"kind": "membership", "params": {"bootstrap": 0}}],
        reference_model=lm.reference,
        batch_size=64,
    )["membership"]


@pytest.mark.slow
def test_near_chance_records_add_up_to_a_clear_dataset_verdict(undertrained) -> None:
    records = [{"text": t, "member": True} for t in undertrained.members] + [
        {"text": t, "member": False} for t in undertrained.nonmembers
    ]
    membership = _membership(undertrained, records)
    aurocs = {k: membership["summary"]["scores"][k]["auroc"]["value"] for k in KEYS}
    # No single score tells one record apart, in either direction.
    assert max(max(a, 1 - a) for a in aurocs.values()) <= 0.6, aurocs

    result = dataset_inference(membership["samples"], KEYS, seed=0)
    print(f"\nAUROCs {aurocs}; dataset inference p={result['p_value']:.2e}, {result['power']}")
    assert result["p_value"] < 0.01, (result, aurocs)
    assert result["t"] > 0 and result["n_suspect"] == result["n_validation"] == N_PER_SET
    assert result["features"] == KEYS and result["n_left_out"] == 0


@pytest.mark.slow
def test_non_members_against_non_members_reject_at_the_nominal_rate(undertrained) -> None:
    fresh = _membership(undertrained, [{"text": t} for t in undertrained.fresh])["samples"]
    size = CALIBRATION_SET_SIZE
    p_values = []
    for i in range(CALIBRATION_SETS):
        pair = fresh[2 * i * size : 2 * (i + 1) * size]  # two independently drawn sets
        rows = [{**row, "member": n < size} for n, row in enumerate(pair)]
        result = dataset_inference(rows, KEYS, seed=i)
        assert "skipped" not in result, result
        p_values.append(result["p_value"])
    share = float(np.mean(np.asarray(p_values) < 0.05))
    print(f"\nnull tests with p < 0.05: {share:.3f} of {CALIBRATION_SETS}")
    assert 0.02 <= share <= 0.09, share


# ---- the procedure on synthetic scores -------------------------------------------------------


def _rows(n: int, shift: float, seed: int, keys: list[str] = KEYS) -> list[dict]:
    """n members and n non-members; members' scores shifted up by `shift` standard deviations,
    the features correlated as membership scores of one model are."""
    rng = np.random.default_rng(seed)
    cov = 0.6 + 0.4 * np.eye(len(keys))
    rows = []
    for member in (True, False):
        draws = rng.multivariate_normal(np.full(len(keys), shift if member else 0.0), cov, n)
        rows += [{**dict(zip(keys, x.tolist(), strict=True)), "member": member} for x in draws]
    return rows


def test_too_few_records_are_refused_with_the_counts() -> None:
    rows = _rows(MIN_PER_SET - 1, 1.0, seed=0)
    result = dataset_inference(rows, KEYS)
    assert "too few records" in result["skipped"]
    assert (result["n_suspect"], result["n_validation"]) == (MIN_PER_SET - 1, MIN_PER_SET - 1)
    assert "p_value" not in result
    assert "skipped" in dataset_inference(_rows(50, 1.0, seed=0), [])


def test_unusable_rows_are_left_out_and_counted() -> None:
    clean = _rows(100, 0.3, seed=1)
    broken = [
        {**clean[0], "loss": math.nan},
        {**clean[1], "zlib": None},
        {**clean[2], "ref": math.inf},
        {"skipped": True, "reason": "no_scored_tokens", "member": True},
        {**clean[3], "member": None},
        {**clean[4], "member": 1},  # a label must be a boolean
        {k: v for k, v in clean[5].items() if k != "lowercase"},
    ]
    mixed = clean[:50] + broken + clean[50:]
    result = dataset_inference(mixed, KEYS, seed=3)
    assert result["n_left_out"] == len(broken)
    assert result == {**dataset_inference(clean, KEYS, seed=3), "n_left_out": len(broken)}


def test_a_constant_feature_is_dropped_and_the_test_runs_on_the_rest() -> None:
    rows = [{**row, "ref": 0.25} for row in _rows(200, 0.4, seed=2)]
    result = dataset_inference(rows, KEYS)
    assert result["dropped_features"] == ["ref"]
    assert result["features"] == [k for k in KEYS if k != "ref"]
    assert result["p_value"] < 0.01
    only_constant = dataset_inference(rows, ["ref"])
    assert only_constant["skipped"] == "no feature varies across the fitting halves"


def test_separable_sets_give_a_finite_combiner_and_a_tiny_p() -> None:
    rows = [
        {**row, "loss": row["loss"] + (100.0 if row["member"] else 0.0)} for row in _rows(60, 0, 3)
    ]
    result = dataset_inference(rows, KEYS)
    assert all(math.isfinite(w) for w in result["weights"].values())
    assert result["p_value"] < 1e-6


def test_the_p_value_ignores_units_and_offsets() -> None:
    rows = _rows(150, 0.2, seed=4)
    rescaled = [{**r, **{k: 3.0 * r[k] - 7.0 for k in KEYS}} for r in rows]
    assert dataset_inference(rescaled, KEYS)["p_value"] == pytest.approx(
        dataset_inference(rows, KEYS)["p_value"], rel=1e-6
    )


def test_one_seed_gives_one_split() -> None:
    rows = _rows(150, 0.2, seed=5)
    first, again = dataset_inference(rows, KEYS, seed=7), dataset_inference(rows, KEYS, seed=7)
    assert first == again and first["split_seed"] == 7
    assert dataset_inference(rows, KEYS, seed=8)["p_value"] != first["p_value"]


def test_welch_agrees_with_scipy() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.normal(0.3, 1.0, 40), rng.normal(0.0, 2.5, 25)
    expected = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert welch_greater(a, b) == pytest.approx((expected.pvalue, expected.statistic, expected.df))
    assert all(math.isnan(x) for x in welch_greater(np.ones(5), np.ones(7)))


def test_an_outlier_cannot_carry_the_test() -> None:
    rows = _rows(100, 0.0, seed=6)
    rows[0]["loss"] = 1e9  # one absurd member score, clipped to the fitting halves' range
    assert dataset_inference(rows, KEYS, seed=0)["p_value"] > 0.01


# ---- the power estimate ----------------------------------------------------------------------


def test_power_falls_with_size_and_names_the_records_needed() -> None:
    suspect, validation, _ = usable_features(_rows(1000, 0.25, seed=7), KEYS)
    power = power_estimate(suspect, validation, seed=0)
    assert power["sizes"] == [10, 20, 50, 100, 200, 500, 1000]
    medians = power["median_p"]
    assert medians[-1] < 0.01 < medians[0]
    # Monotone-ish: 20 repeats leave noise between neighbouring sizes, not across the grid.
    assert stats.spearmanr(power["sizes"], medians).statistic < -0.8, medians
    needed = power["records_needed_for_p_0.01"]
    assert needed == next(n for n, p in zip(power["sizes"], medians, strict=True) if p < 0.01)


def test_power_is_never_the_test_s_p_value() -> None:
    rows = _rows(400, 0.15, seed=8)
    result = dataset_inference(rows, KEYS, seed=2)
    assert set(result["power"]) == {"sizes", "median_p", "repeats", "records_needed_for_p_0.01"}
    suspect, validation, _ = usable_features(rows, KEYS)
    alone = welch_test(suspect, validation, np.random.default_rng(2))
    # The p-value is one test on every record with the seeded split, whatever the power grid.
    assert result["p_value"] == alone.p_value


def test_power_without_a_real_difference_needs_no_size() -> None:
    suspect, validation, _ = usable_features(_rows(300, 0.0, seed=9), KEYS)
    power = power_estimate(suspect, validation, seed=1, repeats=10)
    assert power["records_needed_for_p_0.01"] is None and power["repeats"] == 10
    assert min(power["median_p"]) > 0.05
