"""The validation facts of METRICS.md §5 (classifier proxies) and the proxies' definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worker.engine.classifier_ops import finetune_copy, input_curvature
from worker.engine.proxies import (
    HIGHER_IS_MORE_MEMORIZED,
    feldman_memorization,
    learning_event_proxies,
    mem_score,
    prediction_proxies,
    rum_levels,
    softmax,
    spearman,
    summarize_correlations,
    symmetric_kl,
)


def test_prediction_proxies_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    values = prediction_proxies(probs, np.array([0, 2]))
    assert values["confidence"].tolist() == [0.7, 0.3]
    assert values["max_conf"].tolist() == [0.7, 0.5]
    assert values["bi_acc"].tolist() == [1.0, 0.0]
    assert values["margin"] == pytest.approx([0.5, -0.2])
    assert values["loss"] == pytest.approx([-math.log(0.7), -math.log(0.3)])
    entropy = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert values["neg_entropy"][0] == pytest.approx(-entropy)


def test_a_tie_goes_to_the_lowest_class() -> None:
    values = prediction_proxies(np.array([[0.5, 0.5]]), np.array([1]))
    assert values["bi_acc"][0] == 0.0 and values["margin"][0] == 0.0


def test_learning_events_average_the_logged_iterations() -> None:
    history = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])
    values = learning_event_proxies(history, 0)
    assert values["le_confidence"] == pytest.approx((0.2 + 0.6 + 0.9) / 3)
    assert values["le_bi_acc"] == pytest.approx(2 / 3)
    assert values["le_max_conf"] == pytest.approx((0.8 + 0.6 + 0.9) / 3)


def test_confidence_type_proxies_score_against_memorization() -> None:
    # Fact 4: mem_score = -raw for confidence-type proxies.
    for name in ("confidence", "max_conf", "neg_entropy", "bi_acc", "margin"):
        assert HIGHER_IS_MORE_MEMORIZED[name] is False
        assert mem_score(name, 0.9) == -0.9
    assert mem_score("loss", 2.0) == 2.0 and mem_score("heldout_kl", None) is None


def test_symmetric_kl_is_symmetric_and_clamped() -> None:
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.5, 0.5], [0.5, 0.5]])
    kl = symmetric_kl(p, q)
    assert kl[1] == 0.0
    assert kl.tolist() == symmetric_kl(q, p).tolist()
    a = np.array([1.0, 1e-10])
    b = np.array([0.5, 0.5])
    expected = 0.5 * ((a * np.log(a / b)).sum() + (b * np.log(b / a)).sum())
    assert kl[0] == pytest.approx(expected)


def test_feldman_estimator_example() -> None:
    # Fact 2: in-mask [1,0,1,0], correctness [1,1,1,0] -> mean(1,1) - mean(1,0) = 0.5.
    assert feldman_memorization([1, 0, 1, 0], [1, 1, 1, 0]) == 0.5
    assert feldman_memorization([1, 1], [1, 0]) is None  # never out
    assert feldman_memorization([0, 0], [1, 0]) is None  # never in
    with pytest.raises(ValueError):
        feldman_memorization([1, 0], [1])


def test_rum_order_on_true_scores() -> None:
    # Fact 3: low {0.0, 0.1} -> mid {0.5, 0.58} -> high {0.9, 1.0}.
    scores = [0.0, 0.1, 0.4, 0.5, 0.58, 0.9, 1.0]
    levels = rum_levels(scores, 2, mem_scores=False)
    assert list(levels) == ["low", "mid", "high"]
    assert [[scores[i] for i in levels[k]] for k in levels] == [[0.0, 0.1], [0.5, 0.58], [0.9, 1.0]]
    with pytest.raises(ValueError):
        rum_levels(scores, 3)


def test_rum_unlearns_the_most_confident_first() -> None:
    # Fact 4: with mem_score = -confidence, the low level holds the highest confidences.
    confidence = [0.99, 0.2, 0.6, 0.95, 0.5, 0.1, 0.7]
    levels = rum_levels([mem_score("confidence", c) for c in confidence], 2)
    assert sorted(confidence[i] for i in levels["low"]) == [0.95, 0.99]
    assert sorted(confidence[i] for i in levels["high"]) == [0.1, 0.2]


def test_spearman_with_ties_matches_the_rank_formula() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Average ranks for ties: x ranks [1.5, 1.5, 3, 4], y ranks [1, 2, 3, 4].
    rx, ry = np.array([1.5, 1.5, 3, 4]), np.array([1, 2, 3, 4.0])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def _plain_spearman(x: list[float], y: list[float]) -> float | None:
    """The definition, one pair at a time: Pearson's r of average ranks."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        found = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end < len(order) and values[order[end]] == values[order[start]]:
                end += 1
            for i in order[start:end]:
                found[i] = (start + 1 + end) / 2
            start = end
        return found

    rx, ry = ranks(x), ranks(y)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = math.fsum((a - mx) ** 2 for a in rx), math.fsum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def _plain_table(rows: list[dict], names: list[str]) -> dict[str, dict[str, float | None]]:
    """Every pair over the rows where both scores are there and not NaN."""
    table: dict[str, dict[str, float | None]] = {}
    for a in names:
        table[a] = {}
        for b in names:
            pairs = [
                (row["mem_score"][a], row["mem_score"][b])
                for row in rows
                if row["mem_score"].get(a) is not None
                and row["mem_score"].get(b) is not None
                and not math.isnan(row["mem_score"][a])
                and not math.isnan(row["mem_score"][b])
            ]
            xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
            table[a][b] = _plain_spearman(xs, ys) if len(pairs) >= 3 else None
    return table


def test_correlations_are_pairwise_complete_and_match_the_definition() -> None:
    rng = np.random.default_rng(0)
    n = 400
    base = rng.normal(size=n)
    columns = {
        "loss": np.round(base + rng.normal(size=n), 1),  # many ties
        "margin": np.round(-base + rng.normal(size=n), 0),  # more ties
        "confidence": base + rng.normal(scale=0.5, size=n),
        "curvature": rng.integers(0, 3, n).astype(float),  # three values only
        "heldout_kl": np.full(n, 0.25),  # constant: no ρ with anything
        "feldman_mem": np.round(base, 2),
        "le_confidence": base,
    }
    rows = [{"mem_score": {name: float(v[i]) for name, v in columns.items()}} for i in range(n)]
    for i, row in enumerate(rows):
        if i % 5 == 0:
            row["mem_score"]["confidence"] = None
        if i % 3 == 1:
            row["mem_score"]["curvature"] = math.nan
        if i % 4 == 2:
            del row["mem_score"]["feldman_mem"]
        if i % 7 == 3:
            row["mem_score"]["feldman_mem"] = None
        if i >= 2:  # two rows only: below the three a ρ needs
            del row["mem_score"]["le_confidence"]
    names = list(columns)
    found = summarize_correlations(rows, names)
    expected = _plain_table(rows, names)
    for a in names:
        for b in names:
            if expected[a][b] is None:
                assert found[a][b] is None, (a, b)
            else:
                assert found[a][b] == pytest.approx(expected[a][b], abs=1e-12), (a, b)
    assert found["heldout_kl"]["loss"] is None and found["le_confidence"]["loss"] is None
    assert found["loss"]["confidence"] > 0.3  # the table is not all None


def test_softmax_is_shift_invariant() -> None:
    logits = np.array([[1000.0, 1001.0], [0.0, 1.0]])
    probs = softmax(logits)
    assert probs[0] == pytest.approx(probs[1])


def test_curvature_of_a_linear_model_is_zero_and_of_a_quadratic_is_not() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 3)
    y = torch.tensor([0, 1, 0, 1, 0])
    linear = torch.nn.Linear(3, 2)
    # Cross-entropy of a linear model is not linear in x, but a model whose logits do not
    # depend on x has zero gradient and zero curvature.
    constant = torch.nn.Linear(3, 2)
    with torch.no_grad():
        constant.weight.zero_()
    flat = input_curvature(constant, lambda m, b: m(b), x, y)
    assert np.all(flat == 0.0)
    curved = input_curvature(linear, lambda m, b: m(b) ** 2, x, y)
    assert np.all(curved > 0)


def test_finetune_keeps_the_original_and_stops_early() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(32, 2)
    y = (x[:, 0] > 0).long()
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
    result = finetune_copy(model, lambda m, b: m(b), batches, lr=0.5, max_epochs=30, patience=4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.losses[result.best_epoch - 1] == min(result.losses)
    assert result.epochs_run <= 30
    assert result.losses[-1] < 0.69 or result.epochs_run < 30
