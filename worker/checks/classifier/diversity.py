"""How `diversity` computes: pooled activations per record (stored as float16), then binned
entropy per neuron and mutual information between neurons, by layer, at finalize."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.checks.classifier.kinds import DiversityParams
from worker.checks.classifier.passes import ClassifierContext, LabelledRecord
from worker.engine.distributions import quantile_summary, shared_histogram
from worker.engine.diversity import (
    bin_activations,
    layer_diversity,
    neuron_entropy,
    neurons_for_pairs,
)

READINGS = {
    "H1": "heuristic (shortcut) memorization shows as LOW neuron entropy and HIGH inter-neuron "
    "MI (Bansal et al. 2022)",
    "H2": "example-level memorization (e.g. of noisy labels) shows as HIGH neuron entropy and "
    "LOW inter-neuron MI (Bansal et al. 2022)",
    "comparison": "entropy and MI are read side by side and never merged into one score; values "
    "compare only between models measured with the same dataset, layers, pooling, bins, "
    "binning and estimator",
}


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f2").tobytes()).decode()


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)


def compute(
    context: ClassifierContext, records: Sequence[LabelledRecord], params: DiversityParams
) -> list[dict[str, Any]]:
    model = context.model
    layers = params.layers or model.default_layers()
    # Causal LMs see only the left context at the first token: mean over the text instead.
    pooling = params.pooling or ("mean" if model.spec.kind == "causal_lm" else "cls")
    kept = [r for r in records if r.index < params.max_samples]
    found: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    order: list[int] = []
    for chunk, inputs in context.batches(kept):
        order += chunk
        for name, values in model.activations(inputs, layers, pooling).items():
            found[name].append(values)
    stacked = {name: np.concatenate(parts) for name, parts in found.items() if parts}
    positions = {kept[i].index: row for row, i in enumerate(order)}
    rows = []
    for record in records:
        if record.index >= params.max_samples:
            rows.append({"id": record.sample_id, "skipped": True, "reason": "over_max_samples"})
            continue
        position = positions[record.index]
        rows.append(
            {
                "id": record.sample_id,
                "pooling": pooling,
                "detail": {
                    "activations": {
                        name: _encode(values[position]) for name, values in stacked.items()
                    }
                },
            }
        )
    return rows


def _mixture(values: np.ndarray, seed: int) -> dict[str, Any] | None:
    """A 1-3 component Gaussian mixture over the MI values, chosen by BIC (METRICS.md §4)."""
    from sklearn.mixture import GaussianMixture

    if len(values) < 10 or float(values.std()) == 0.0:
        return None
    sample = np.random.default_rng(seed).choice(
        values, size=min(len(values), 20_000), replace=False
    )
    best, best_bic = None, math.inf
    for components in (1, 2, 3):
        fit = GaussianMixture(components, random_state=seed).fit(sample.reshape(-1, 1))
        bic = fit.bic(sample.reshape(-1, 1))
        if bic < best_bic:
            best, best_bic = fit, bic
    order = np.argsort(best.means_.ravel())
    return {
        "weights": best.weights_[order].tolist(),
        "means": best.means_.ravel()[order].tolist(),
        "stds": np.sqrt(best.covariances_.ravel()[order]).tolist(),
    }


def _layer_summary(activations: np.ndarray, params: DiversityParams) -> dict[str, Any]:
    bins = bin_activations(activations, params.n_bins, params.binning)
    n_samples, n_neurons = bins.shape
    entropy = neuron_entropy(bins, params.n_bins, params.mi_estimator)
    subset = neurons_for_pairs(n_neurons, params.max_pairs, params.seed)
    pairs = layer_diversity(bins[:, subset], params.n_bins, params.mi_estimator)
    mi = pairs.off_diagonal_mi()
    iqr = float(np.quantile(entropy, 0.75) - np.quantile(entropy, 0.25))
    notch = 1.57 * iqr / math.sqrt(n_neurons)
    median = float(np.median(entropy))
    return {
        "n_neurons": n_neurons,
        "entropy": {
            **quantile_summary(entropy),
            "notch": [median - notch, median + notch],
            "values": np.round(entropy, 5).tolist(),
            "occupied_bins_mean": float(
                np.mean([len(np.unique(bins[:, i])) for i in range(n_neurons)])
            ),
        },
        "mi": {
            **(quantile_summary(mi) if len(mi) else {}),
            "n_pairs": len(mi),
            "n_neurons_sampled": len(subset),
            "sampled": len(subset) < n_neurons,
            "histogram": shared_histogram({"all": mi.tolist()}, bins=40),
            "mixture": _mixture(mi, params.seed),
            "independent_bias": (params.n_bins - 1) ** 2 / (2 * n_samples),
        },
    }


def summarize(values: Sequence[dict[str, Any]], params: DiversityParams) -> dict[str, Any]:
    used = [v for v in values if not v.get("skipped") and v.get("detail")]
    summary: dict[str, Any] = {
        "n_samples": len(used),
        "n_skipped": len(values) - len(used),
        "settings": {
            "n_bins": params.n_bins,
            "binning": params.binning,
            "mi_estimator": params.mi_estimator,
            "pooling": used[0].get("pooling") if used else params.pooling,
            "max_pairs": params.max_pairs,
            "seed": params.seed,
            "activations_stored_as": "float16",
        },
        "readings": READINGS,
        "layers": {},
    }
    if len(used) < 2:
        summary["warnings"] = ["fewer than 2 records: entropy and MI are undefined"]
        return summary
    for name in used[0]["detail"]["activations"]:
        matrix = np.stack([_decode(v["detail"]["activations"][name]) for v in used])
        summary["layers"][name] = _layer_summary(matrix, params)
    bias = (params.n_bins - 1) ** 2 / (2 * len(used))
    # Below B² records the bias of plug-in MI for independent neurons is a sizeable fraction
    # of a nat: say so rather than let it read as shared information.
    summary["warnings"] = (
        [
            f"only {len(used)} records for {params.n_bins} bins: plug-in MI of independent "
            f"neurons averages about (B-1)²/(2S) = {bias:.3f} nats"
        ]
        if len(used) < params.n_bins**2
        else []
    )
    return summary
