"""Information diversity of a layer's neurons (METRICS.md §4; Bansal et al., NeurIPS 2022).

Per neuron, the Shannon entropy of its binned activations (intra-neuron diversity); per pair
of neurons, their mutual information (inter-neuron diversity). Low entropy with high MI reads
as shortcut memorization (H1), high entropy with low MI as example-level memorization (H2);
the two are reported side by side, never merged into one score.

>>> import numpy as np
>>> bins = bin_activations(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]), 2)
>>> diversity = layer_diversity(bins, 2)
>>> round(float(diversity.entropy[0]), 6), round(float(diversity.mi[0, 1]), 6)
(0.693147, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("plugin", "miller_madow")
BINNINGS = ("equal_width", "equal_frequency")


def bin_activations(
    activations: np.ndarray, n_bins: int, binning: str = "equal_width"
) -> np.ndarray:
    """(S, N) activations to (S, N) bin indices in [0, n_bins).

    Equal width over each neuron's own [min, max], the last bin closed, so a constant neuron
    sits in one bin; equal frequency splits each neuron's ranks into n_bins runs.
    """
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}")
    values = np.asarray(activations, dtype=np.float64)  # (S, N)
    n_samples = values.shape[0]
    if binning == "equal_frequency":
        ranks = values.argsort(axis=0, kind="stable").argsort(axis=0, kind="stable")
        return (ranks * n_bins // n_samples).astype(np.int64)
    low, high = values.min(axis=0), values.max(axis=0)  # (N,)
    width = np.where(high > low, high - low, 1.0)
    bins = np.floor((values - low) / width * n_bins).astype(np.int64)
    return np.clip(bins, 0, n_bins - 1)


def _plogp_sum(counts: np.ndarray, n_samples: int, axis: tuple[int, ...]) -> np.ndarray:
    """-Σ p log p over `axis`, with 0 log 0 = 0."""
    p = counts / n_samples
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis)


@dataclass(frozen=True)
class LayerDiversity:
    entropy: np.ndarray  # (N,) nats
    occupied_bins: np.ndarray  # (N,)
    mi: np.ndarray  # (N, N) nats, symmetric, entropy on the diagonal
    estimator: str
    n_samples: int
    n_bins: int

    @property
    def independent_bias(self) -> float:
        """What plug-in MI averages for independent neurons: (B - 1)^2 / (2S) nats."""
        return (self.n_bins - 1) ** 2 / (2 * self.n_samples)

    def off_diagonal_mi(self) -> np.ndarray:
        upper = np.triu_indices(self.mi.shape[0], k=1)
        return self.mi[upper]


def layer_diversity(
    bins: np.ndarray, n_bins: int, estimator: str = "plugin", block_neurons: int = 64
) -> LayerDiversity:
    """Entropy per neuron and MI per pair from joint counts C = OᵀO, O the one-hot bins.

    C is built one block of neurons against another so memory stays at (block·B)² counts
    however wide the layer is.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"mi_estimator must be one of {ESTIMATORS}")
    n_samples, n_neurons = bins.shape
    one_hot = np.zeros((n_samples, n_neurons, n_bins), dtype=np.float32)  # O, (S, N, B)
    np.put_along_axis(one_hot, bins[:, :, None], 1.0, axis=2)
    marginal = one_hot.sum(axis=0, dtype=np.float64)  # (N, B)
    entropy = _plogp_sum(marginal, n_samples, axis=(1,))  # (N,)
    occupied = (marginal > 0).sum(axis=1)  # (N,)
    mi = np.zeros((n_neurons, n_neurons))
    for start_i in range(0, n_neurons, block_neurons):
        block_i = one_hot[:, start_i : start_i + block_neurons].reshape(n_samples, -1)
        for start_j in range(start_i, n_neurons, block_neurons):
            block_j = one_hot[:, start_j : start_j + block_neurons].reshape(n_samples, -1)
            joint = (block_i.T @ block_j).reshape(-1, n_bins, block_j.shape[1] // n_bins, n_bins)
            joint = joint.transpose(0, 2, 1, 3).astype(np.float64)  # (ni, nj, B, B) counts
            joint_entropy = _plogp_sum(joint, n_samples, axis=(2, 3))  # H_ij, (ni, nj)
            rows = slice(start_i, start_i + joint.shape[0])
            cols = slice(start_j, start_j + joint.shape[1])
            pair_mi = entropy[rows, None] + entropy[None, cols] - joint_entropy
            if estimator == "miller_madow":
                occupied_joint = (joint > 0).sum(axis=(2, 3))
                correction = occupied[rows, None] + occupied[None, cols] - occupied_joint - 1
                pair_mi = pair_mi + correction / (2 * n_samples)
            # A constant neuron shares nothing: exactly 0 (both estimators), not rounding noise.
            constant = (occupied[rows, None] == 1) | (occupied[None, cols] == 1)
            pair_mi = np.where(constant, 0.0, pair_mi)
            mi[rows, cols] = pair_mi
            mi[cols, rows] = pair_mi.T
    if estimator == "miller_madow":
        entropy = entropy + (occupied - 1) / (2 * n_samples)
    # I(A;A) = H(A) exactly, not up to rounding of H_i + H_i - H_ii.
    np.fill_diagonal(mi, entropy)
    return LayerDiversity(entropy, occupied, mi, estimator, n_samples, n_bins)


def neuron_entropy(bins: np.ndarray, n_bins: int, estimator: str = "plugin") -> np.ndarray:
    """Per-neuron entropy alone (no pairs): what a layer too wide for all its pairs still gets."""
    n_samples, n_neurons = bins.shape
    counts = np.zeros((n_neurons, n_bins))
    for neuron in range(n_neurons):
        counts[neuron] = np.bincount(bins[:, neuron], minlength=n_bins)
    entropy = _plogp_sum(counts, n_samples, axis=(1,))
    if estimator == "miller_madow":
        entropy = entropy + ((counts > 0).sum(axis=1) - 1) / (2 * n_samples)
    return entropy


def neurons_for_pairs(n_neurons: int, max_pairs: int | None, seed: int) -> np.ndarray:
    """All neurons, or the largest seeded random subset whose pairs fit in `max_pairs`."""
    if max_pairs is None or n_neurons * (n_neurons - 1) // 2 <= max_pairs:
        return np.arange(n_neurons)
    size = int((1 + np.sqrt(1 + 8 * max_pairs)) // 2)
    while size * (size - 1) // 2 > max_pairs:
        size -= 1
    chosen = np.random.default_rng(seed).choice(n_neurons, size=max(size, 2), replace=False)
    return np.sort(chosen)
