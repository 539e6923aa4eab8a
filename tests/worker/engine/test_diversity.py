"""The validation facts of METRICS.md §4 (information diversity), items 1-5."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker.engine.diversity import bin_activations, layer_diversity


def test_a_constant_neuron_and_equal_mass_bins() -> None:
    rng = np.random.default_rng(0)
    uniform = np.repeat(np.arange(30), 10).astype(float)  # 30 equal-mass bins
    activations = np.stack([np.full(300, 7.0), uniform, rng.normal(size=300)], axis=1)
    diversity = layer_diversity(bin_activations(activations, 30), 30)
    assert diversity.entropy[0] == 0.0 and diversity.occupied_bins[0] == 1
    assert np.all(diversity.mi[0, 1:] == 0.0)
    assert diversity.entropy[1] == pytest.approx(math.log(30)) == pytest.approx(3.401197)


def test_self_information_symmetry_and_bounds() -> None:
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(500, 1))
    activations = latent + 0.5 * rng.normal(size=(500, 12))  # correlated neurons
    diversity = layer_diversity(bin_activations(activations, 10), 10, block_neurons=5)
    assert np.array_equal(np.diag(diversity.mi), diversity.entropy)
    assert np.allclose(diversity.mi, diversity.mi.T)
    off = ~np.eye(12, dtype=bool)
    bound = np.minimum.outer(diversity.entropy, diversity.entropy)
    assert np.all(diversity.mi[off] >= -1e-12) and np.all(diversity.mi[off] <= bound[off] + 1e-12)
    assert diversity.off_diagonal_mi().mean() > 0.1  # shared latent: well above the bias


def test_the_four_sample_example() -> None:
    bins = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    plugin = layer_diversity(bins, 2)
    assert plugin.mi[0, 1] == pytest.approx(0.0, abs=1e-15)
    assert plugin.entropy[0] == plugin.mi[0, 0] == pytest.approx(0.693147, abs=1e-6)
    corrected = layer_diversity(bins, 2, estimator="miller_madow")
    assert corrected.entropy[0] == pytest.approx(0.818147, abs=1e-6)
    assert corrected.mi[0, 1] == pytest.approx(-0.125, abs=1e-12)  # reported unclipped


def test_independent_neurons_carry_the_known_bias() -> None:
    rng = np.random.default_rng(2)
    activations = rng.uniform(size=(1000, 64))  # 2016 independent pairs
    diversity = layer_diversity(bin_activations(activations, 10), 10)
    assert diversity.independent_bias == pytest.approx(0.0405)
    assert diversity.off_diagonal_mi().mean() == pytest.approx(0.041, abs=0.003)


def test_blocked_joint_counts_equal_a_per_pair_histogram_loop() -> None:
    rng = np.random.default_rng(3)
    bins = bin_activations(rng.normal(size=(200, 9)) @ rng.normal(size=(9, 9)), 6)
    fast = layer_diversity(bins, 6, block_neurons=4)
    for i in range(9):
        for j in range(9):
            joint = np.zeros((6, 6))
            np.add.at(joint, (bins[:, i], bins[:, j]), 1)
            p = joint / 200
            pa, pb = p.sum(axis=1), p.sum(axis=0)
            nz = p > 0
            expected = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
            assert fast.mi[i, j] == pytest.approx(expected, abs=1e-9)


def test_equal_frequency_bins_hold_equal_counts() -> None:
    values = np.random.default_rng(4).normal(size=(300, 2))
    bins = bin_activations(values, 30, binning="equal_frequency")
    assert np.all(np.bincount(bins[:, 0], minlength=30) == 10)
    with pytest.raises(ValueError, match="binning"):
        bin_activations(values, 30, binning="adaptive")
