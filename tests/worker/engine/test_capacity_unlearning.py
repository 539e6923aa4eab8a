"""The validation facts of METRICS.md §8 (capacity) and §5 (Tug-of-War)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.engine.capacity import attention_capacity, separation_bound, width_flag
from worker.engine.unlearning import mia_features, svc_mia, tug_of_war


@pytest.mark.parametrize(("heads", "phi"), [(1, 0.02784), (21, 0.10624), (31, 0.14544)])
def test_attention_bound_values(heads: int, phi: float) -> None:
    bound = attention_capacity(n_tokens=50, d=10, d_head=10, heads=heads, associations=2500)
    assert bound.phi == pytest.approx(phi, abs=5e-6)


def test_previous_bound_at_21_heads() -> None:
    bound = attention_capacity(n_tokens=50, d=10, d_head=10, heads=21, associations=2500)
    assert bound.previous_capacity == 21 * 9 + 1
    assert bound.previous_phi == pytest.approx(0.09448, abs=5e-6)
    assert bound.previous_applies  # S = 2 <= d


def test_a_capacity_above_the_associations_bounds_accuracy_at_one() -> None:
    bound = attention_capacity(n_tokens=10, d=2, d_head=5, heads=20, associations=100)
    assert bound.capacity == 102 and bound.phi == 1.0
    # Theorem 1 with d = 2: 2(S + 2N + 4(T0 - 2)) parameters for T0 = H d_h + 2.
    assert bound.construction_params == 2 * (2 + 2 * 10 + 4 * (102 - 2))


def test_measured_accuracies_stay_above_the_bound() -> None:
    measured = {1: 0.130, 6: 0.324, 11: 0.506, 16: 0.685, 21: 0.861, 26: 0.963, 31: 0.997}
    for heads, accuracy in measured.items():
        phi = attention_capacity(n_tokens=50, d=10, d_head=10, heads=heads, associations=2500).phi
        assert accuracy > phi
    phi21 = attention_capacity(n_tokens=50, d=10, d_head=10, heads=21, associations=2500).phi
    assert 7.5 < measured[21] / phi21 < 8.5


def test_separation_bound_toy_case() -> None:
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    y = np.array([1, -1, 1])
    found = separation_bound(x, y)
    assert found["separation_bound"] == 1.0
    assert (
        found["nearest_cross_class"][2]
        == pytest.approx(math.sqrt(10))
        == pytest.approx(3.1623, abs=1e-4)
    )
    assert found["contradictory_pairs"] == []
    contradictory = separation_bound(np.vstack([x, [1.0, 0.0]]), np.append(y, 1))
    assert contradictory["separation_bound"] == 0.0
    assert contradictory["contradictory_pairs"] == [[1, 3]]


def test_width_flag() -> None:
    assert width_flag([63, 128], 64)["width_flag"] is True
    assert "width ≥ n" in width_flag([63], 64)["text"]
    assert width_flag([64, 128], 64) == {
        "min_hidden_width": 64,
        "input_dim": 64,
        "width_flag": False,
        "text": None,
    }


def test_tug_of_war_example_and_identity() -> None:
    unlearned = {"forget": 90.0, "retain": 99.0, "test": 88.0}
    retrained = {"forget": 85.0, "retain": 98.0, "test": 90.0}
    assert tug_of_war(unlearned, retrained) == pytest.approx(0.95 * 0.99 * 0.98)
    assert tug_of_war(unlearned, retrained) == pytest.approx(0.92169, abs=5e-6)
    assert tug_of_war(unlearned, unlearned) == 1.0


def test_modified_entropy_by_hand() -> None:
    probs = np.array([[0.7, 0.2, 0.1]])
    conf, entropy, modified = mia_features(probs, np.array([0]))[0]
    assert conf == pytest.approx(0.7)
    assert entropy == pytest.approx(-sum(p * math.log(p) for p in (0.7, 0.2, 0.1)))
    expected = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    assert modified == pytest.approx(expected)


def test_the_svc_attack_separates_confident_members() -> None:
    rng = np.random.default_rng(0)
    members = np.column_stack(
        [rng.uniform(0.9, 1.0, 200), rng.uniform(0, 0.1, 200), rng.uniform(0, 0.1, 200)]
    )
    others = np.column_stack(
        [rng.uniform(0.3, 0.6, 200), rng.uniform(0.6, 1.0, 200), rng.uniform(0.6, 1.0, 200)]
    )
    assert svc_mia(members, others, members[:50]) > 0.9
    assert svc_mia(members, others, others[:50]) < 0.1
