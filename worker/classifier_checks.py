"""The check kinds that look inside classifiers and encoders: `diversity`, `proxies`, `capacity`.

Each computes per record over a chunk of a shard (`compute(context, records, params)`) and
summarizes at finalize from the stored rows, like the LM kinds; what concerns the model as a
whole (bounds from its config, the held-out copy's training) is `model_facts`, stored with the
shard and put in the summary under "model".
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from worker.check_types import (
    CheckKind,
    CheckParams,
    Metric,
    TableColumn,
    known_names,
    no_lm_plan,
)
from worker.classifier_passes import HELDOUT, ClassifierContext, LabelledRecord
from worker.engine.capacity import attention_capacity, nearest_cross_class, width_flag
from worker.engine.classifier_ops import input_curvature
from worker.engine.distributions import shared_histogram
from worker.engine.diversity import (
    BINNINGS,
    ESTIMATORS,
    bin_activations,
    layer_diversity,
    neuron_entropy,
    neurons_for_pairs,
)
from worker.engine.proxies import (
    HIGHER_IS_MORE_MEMORIZED,
    feldman_memorization,
    learning_event_proxies,
    mem_score,
    prediction_proxies,
    summarize_correlations,
    symmetric_kl,
)
from worker.loaders.datasets import DatasetError

CLASSIFIER_KINDS = ("classifier", "encoder")


def _quantiles(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    return {
        "min": float(q[0]),
        "q05": float(q[1]),
        "q25": float(q[2]),
        "median": float(q[3]),
        "q75": float(q[4]),
        "q95": float(q[5]),
        "max": float(q[6]),
        "mean": float(values.mean()),
    }


# ---- diversity ---------------------------------------------------------------------------

READINGS = {
    "H1": "heuristic (shortcut) memorization shows as LOW neuron entropy and HIGH inter-neuron "
    "MI (Bansal et al. 2022)",
    "H2": "example-level memorization (e.g. of noisy labels) shows as HIGH neuron entropy and "
    "LOW inter-neuron MI (Bansal et al. 2022)",
    "comparison": "entropy and MI are read side by side and never merged into one score; values "
    "compare only between models measured with the same dataset, layers, pooling, bins, "
    "binning and estimator",
}


class DiversityParams(CheckParams):
    layers: list[str] | None = Field(
        None,
        max_length=256,
        description="Hugging Face models: `hidden_states.<i>`; other modules: module names "
        "(forward hooks). Default: every hidden state, or every hidden activation",
    )
    pooling: Literal["cls", "mean"] | None = Field(
        None,
        description="Token models: one vector per example; default cls for encoders "
        "and classifiers",
    )
    n_bins: int = Field(30, ge=2, le=256)
    binning: str = Field("equal_width", description=f"one of {list(BINNINGS)}")
    mi_estimator: str = Field("plugin", description=f"one of {list(ESTIMATORS)}")
    max_pairs: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Neuron pairs per layer for MI; a wider layer gets a seeded random subset "
        "of neurons whose pairs fit (all neurons keep their entropy)",
    )
    max_samples: int = Field(
        5000, ge=10, le=50_000, description="Records read (the first ones); activations are kept"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("binning")
    @classmethod
    def _binning(cls, value: str) -> str:
        if value not in BINNINGS:
            raise ValueError(f"binning must be one of {list(BINNINGS)}")
        return value

    @field_validator("mi_estimator")
    @classmethod
    def _estimator(cls, value: str) -> str:
        if value not in ESTIMATORS:
            raise ValueError(f"mi_estimator must be one of {list(ESTIMATORS)}")
        return value


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f2").tobytes()).decode()


def _decode(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)


def _compute_diversity(
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
            **_quantiles(entropy),
            "notch": [median - notch, median + notch],
            "values": np.round(entropy, 5).tolist(),
            "occupied_bins_mean": float(
                np.mean([len(np.unique(bins[:, i])) for i in range(n_neurons)])
            ),
        },
        "mi": {
            **(_quantiles(mi) if len(mi) else {}),
            "n_pairs": len(mi),
            "n_neurons_sampled": len(subset),
            "sampled": len(subset) < n_neurons,
            "histogram": shared_histogram({"all": mi.tolist()}, bins=40),
            "mixture": _mixture(mi, params.seed),
            "independent_bias": (params.n_bins - 1) ** 2 / (2 * n_samples),
        },
    }


def _summarize_diversity(
    values: Sequence[dict[str, Any]], params: DiversityParams
) -> dict[str, Any]:
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


DIVERSITY = CheckKind(
    name="diversity",
    description="Information diversity by layer: binned entropy of each neuron and the mutual "
    "information between neurons (Bansal et al., NeurIPS 2022).",
    params_model=DiversityParams,
    model_kinds=(*CLASSIFIER_KINDS, "causal_lm"),
    required_fields=(),
    metrics=(
        Metric(
            "entropy",
            None,
            "nats",
            "Shannon entropy of a neuron's binned activations.",
            "Bansal et al. 2022",
        ),
        Metric(
            "mi",
            None,
            "nats",
            "Mutual information between two neurons' binned activations.",
            "Bansal et al. 2022",
        ),
    ),
    plan=no_lm_plan,
    compute=_compute_diversity,
    summarize=_summarize_diversity,
    rank_score=lambda _values, _p: None,
    rank_description="none: diversity describes layers, not records",
    table_columns=lambda _p: [],
    family="classifier",
    summarize_reads_detail=True,
)

# ---- proxies -----------------------------------------------------------------------------

FINAL_MODEL = ("confidence", "max_conf", "neg_entropy", "bi_acc", "margin", "loss")
LEARNING_EVENTS = ("le_confidence", "le_max_conf", "le_neg_entropy", "le_bi_acc")
ALL_PROXIES = (*FINAL_MODEL, *LEARNING_EVENTS, "heldout_kl", "curvature", "feldman_mem")


class ProxyParams(CheckParams):
    proxies: list[str] = Field(
        default_factory=lambda: list(ALL_PROXIES),
        min_length=1,
        description="Computed where the data allows: learning events need `epoch_probs`, "
        "Feldman needs `subset_in` and `subset_correct`, heldout_kl records with "
        "`split: heldout`, curvature feature inputs",
    )
    rank_by: str = Field("loss", description="The proxy that orders records, most memorized first")
    ft_lr: float = Field(0.1, gt=0, le=10)
    ft_epochs: int = Field(30, ge=1, le=200)
    patience: int = Field(4, ge=1, le=50)
    clamp: float = Field(1e-10, gt=0, lt=1e-3)
    h: float = Field(0.01, gt=0, le=1)
    top_n: int = Field(20, ge=1, le=200)
    image_shape: list[int] | None = Field(
        None,
        min_length=2,
        max_length=3,
        description="[h, w] or [c, h, w] of flat image features, so the most memorized "
        "records are shown as images; found by itself for image models",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("proxies")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        return known_names(values, ALL_PROXIES, "proxies")

    @field_validator("rank_by")
    @classmethod
    def _rank(cls, value: str) -> str:
        if value not in ALL_PROXIES:
            raise ValueError(f"rank_by must be one of {list(ALL_PROXIES)}")
        return value


def _history(record: LabelledRecord) -> list[dict[str, Any]] | None:
    history = record.data.get("epoch_probs")
    if history is None:
        return None
    array = np.asarray(history, dtype=np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise DatasetError(record.line_no, "field 'epoch_probs' must be a list of probability rows")
    return learning_event_proxies(array, record.label)


def _feldman(record: LabelledRecord) -> dict[str, Any] | None:
    if "subset_in" not in record.data:
        return None
    mask, correct = record.data["subset_in"], record.data.get("subset_correct")
    try:
        value = feldman_memorization(mask, correct)
    except (ValueError, TypeError):
        raise DatasetError(
            record.line_no,
            "fields 'subset_in' and 'subset_correct' must be 0/1 lists of one length",
        ) from None
    inside = int(np.sum(np.asarray(mask, dtype=bool)))
    return {"feldman_mem": value, "n_in": inside, "n_out": len(mask) - inside}


def _compute_proxies(
    context: ClassifierContext, records: Sequence[LabelledRecord], params: ProxyParams
) -> list[dict[str, Any]]:
    wanted = set(params.proxies)
    train = [r for r in records if r.split != HELDOUT]
    probs = context.probs(train) if train else np.zeros((0, 0))
    labels = np.asarray([r.label for r in train])
    final = prediction_proxies(probs, labels) if train else {}
    kl = None
    if "heldout_kl" in wanted and train:
        tuned = context.heldout_copy(params.ft_lr, params.ft_epochs, params.patience)
        if tuned is not None:
            kl = symmetric_kl(probs, context.probs(train, tuned.module), params.clamp)
    curvature = None
    if "curvature" in wanted and train and context.model.input_kind == "features":
        parts = []
        for start in range(0, len(train), context.batch_size):
            chunk = train[start : start + context.batch_size]
            x = context.model.batch([r.input for r in chunk])
            y = torch.tensor([r.label for r in chunk], device=context.model.device)
            parts.append(
                input_curvature(context.model.module, context.model.logits, x, y, params.h)
            )
        curvature = np.concatenate(parts)
    rows, position = [], {id(r): i for i, r in enumerate(train)}
    for record in records:
        if record.split == HELDOUT:
            rows.append(
                {"id": record.sample_id, "split": HELDOUT, "skipped": True, "reason": "heldout"}
            )
            continue
        i = position[id(record)]
        values: dict[str, Any] = {
            "id": record.sample_id,
            "label": record.label,
            "predicted": int(probs[i].argmax()),
        }
        if record.split:
            values["split"] = record.split
        raw: dict[str, float | None] = {n: float(final[n][i]) for n in FINAL_MODEL if n in wanted}
        if wanted & set(LEARNING_EVENTS):
            events = _history(record)
            if events is not None:
                raw.update({n: events[n] for n in LEARNING_EVENTS if n in wanted})
        if kl is not None:
            raw["heldout_kl"] = float(kl[i])
        if curvature is not None:
            raw["curvature"] = float(curvature[i])
        if "feldman_mem" in wanted:
            found = _feldman(record)
            if found is not None:
                raw["feldman_mem"] = found.pop("feldman_mem")
                values.update(found)
        values.update(raw)
        values["mem_score"] = {name: mem_score(name, value) for name, value in raw.items()}
        image = _thumbnail(record.input, params.image_shape or _image_shape(context))
        if image is not None:
            values["detail"] = {"image": image}
        rows.append(values)
    return rows


THUMBNAIL_SIDE = 32


def _image_shape(context: ClassifierContext) -> list[int] | None:
    shape = context.model.input_shape
    return list(shape) if shape is not None and len(shape) == 3 else None


def _thumbnail(features: Any, shape: list[int] | None) -> list[list[float]] | None:
    """A grey-scale picture of an image input, at most 32 pixels a side, min-max scaled."""
    if shape is None or not isinstance(features, list):
        return None
    array = np.asarray(features, dtype=np.float64)
    if array.size != int(np.prod(shape)):
        return None
    array = array.reshape(shape)
    if array.ndim == 3:
        array = array.mean(axis=0) if array.shape[0] <= 4 else array.mean(axis=2)
    step = max(1, math.ceil(max(array.shape) / THUMBNAIL_SIDE))
    array = array[::step, ::step]
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return np.round(scaled, 3).tolist()


def _proxy_facts(context: ClassifierContext, params: ProxyParams) -> dict[str, Any]:
    if "heldout_kl" not in params.proxies:
        return {}
    tuned = context.heldout_copy(params.ft_lr, params.ft_epochs, params.patience)
    if tuned is None:
        return {"heldout_kl": {"reason": "no records with split: heldout"}}
    return {
        "heldout_kl": {
            "epochs_run": tuned.epochs_run,
            "best_epoch": tuned.best_epoch,
            "heldout_losses": [round(v, 6) for v in tuned.losses],
            "lr": params.ft_lr,
            "seed": params.seed,
        }
    }


def _rank(values: Mapping[str, Any], params: ProxyParams) -> float | None:
    scores = values.get("mem_score") or {}
    return scores.get(params.rank_by, scores.get("loss"))


def _summarize_proxies(values: Sequence[dict[str, Any]], params: ProxyParams) -> dict[str, Any]:
    scored = [v for v in values if not v.get("skipped")]
    present = [n for n in ALL_PROXIES if any(v.get(n) is not None for v in scored)]
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_scored": len(scored),
        "n_heldout": sum(1 for v in values if v.get("split") == HELDOUT),
        "rank_by": params.rank_by,
        "proxies": {},
        "missing": sorted(set(params.proxies) - set(present)),
    }
    for name in present:
        raw = np.asarray([v[name] for v in scored if v.get(name) is not None], dtype=np.float64)
        summary["proxies"][name] = {
            "higher_is_more_memorized": HIGHER_IS_MORE_MEMORIZED[name],
            "n": len(raw),
            **_quantiles(raw),
            "histogram": shared_histogram({"all": raw.tolist()}),
        }
    ranked = sorted(
        (v for v in scored if _rank(v, params) is not None),
        key=lambda v: -_rank(v, params),
    )
    summary["most_memorized"] = [
        {
            "id": v["id"],
            "label": v.get("label"),
            "predicted": v.get("predicted"),
            "score": _rank(v, params),
            **{n: v.get(n) for n in present},
        }
        for v in ranked[: params.top_n]
    ]
    summary["spearman"] = summarize_correlations(scored, present)
    if "feldman_mem" in present:
        summary["against_feldman"] = {
            n: summary["spearman"][n]["feldman_mem"] for n in present if n != "feldman_mem"
        }
    return summary


PROXY_DESCRIPTIONS = {
    "confidence": "p(y|x) of the final model",
    "max_conf": "max_k p(k|x) of the final model",
    "neg_entropy": "Σ p log p of the final model (negative entropy)",
    "bi_acc": "1 when the final model's argmax is the label",
    "margin": "p_y − max_{k≠y} p_k of the final model",
    "loss": "−log p(y|x) of the final model",
    "le_confidence": "mean p(y|x) over the logged training iterations",
    "le_max_conf": "mean max_k p(k|x) over the logged training iterations",
    "le_neg_entropy": "mean Σ p log p over the logged training iterations",
    "le_bi_acc": "share of logged iterations whose argmax was the label",
    "heldout_kl": "½[KL(p‖q)+KL(q‖p)], q a copy fine-tuned on the held-out records",
    "curvature": "‖∇ₓ[ℓ(x+z) − ℓ(x)]‖₂ with z = h·sign(∇ₓℓ)/‖sign(∇ₓℓ)‖",
    "feldman_mem": "subset-model estimate of leave-one-out memorization (Feldman & Zhang)",
}

PROXIES = CheckKind(
    name="proxies",
    description="Per-example memorization proxies for classifiers (confidence, margin, loss, "
    "entropy, learning events, held-out KL, curvature, Feldman estimator).",
    params_model=ProxyParams,
    model_kinds=("classifier",),
    required_fields=("label",),
    metrics=tuple(
        Metric(
            name,
            HIGHER_IS_MORE_MEMORIZED[name],
            "",
            PROXY_DESCRIPTIONS[name],
            "Zhao & Triantafillou 2024",
        )
        for name in ALL_PROXIES
    ),
    plan=no_lm_plan,
    compute=_compute_proxies,
    summarize=_summarize_proxies,
    rank_score=_rank,
    rank_description="mem_score of rank_by (higher = more memorized)",
    table_columns=lambda _p: [
        TableColumn("loss", "loss", "number"),
        TableColumn("confidence", "confidence", "number"),
        TableColumn("margin", "margin", "number"),
        TableColumn("heldout_kl", "held-out KL", "number"),
    ],
    family="classifier",
    model_facts=_proxy_facts,
    exemplars=lambda summary: [entry["id"] for entry in summary.get("most_memorized", [])],
)

# ---- capacity ----------------------------------------------------------------------------


class CapacityParams(CheckParams):
    associations: int | None = Field(
        None, ge=1, le=10**15, description="T₀; default: the dataset's records"
    )
    context_length: int | None = Field(
        None, ge=1, le=1_000_000, description="S; default: the model's position limit"
    )
    exact_pairwise_max_n: int = Field(20_000, ge=10, le=200_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)


def _compute_capacity(
    context: ClassifierContext, records: Sequence[LabelledRecord], params: CapacityParams
) -> list[dict[str, Any]]:
    model = context.model
    probs = context.probs(records) if model.n_classes else None
    distances = nearest = None
    if model.input_kind == "features" and all(r.label is not None for r in records):
        x, y, ids = context.all_features
        reference = np.arange(len(x))
        if len(x) > params.exact_pairwise_max_n:
            rng = np.random.default_rng(params.seed)
            reference = np.sort(rng.choice(len(x), params.exact_pairwise_max_n, replace=False))
        queries = np.asarray([np.ravel(np.asarray(r.input, dtype=np.float64)) for r in records])
        distances, nearest = nearest_cross_class(
            x[reference], y[reference], queries, np.asarray([r.label for r in records])
        )
        nearest = np.where(nearest >= 0, reference[np.maximum(nearest, 0)], -1)
    rows = []
    for i, record in enumerate(records):
        values: dict[str, Any] = {"id": record.sample_id, "label": record.label}
        if probs is not None and record.label is not None:
            values["correct"] = bool(int(probs[i].argmax()) == record.label)
        if distances is not None:
            finite = math.isfinite(distances[i])
            values["nearest_cross_class"] = float(distances[i]) if finite else None
            values["nearest_id"] = ids[nearest[i]] if finite else None
        rows.append(values)
    return rows


def _capacity_facts(context: ClassifierContext, params: CapacityParams) -> dict[str, Any]:
    model = context.model
    details = dict(model.details)
    facts: dict[str, Any] = {
        "architecture": details.get("architecture"),
        "param_count": int(sum(p.numel() for p in model.module.parameters())),
    }
    heads, width = details.get("num_attention_heads"), details.get("hidden_size")
    if heads and width and details.get("vocab_size"):
        d_head = width // heads
        bound = attention_capacity(
            n_tokens=details["vocab_size"],
            d=width,
            d_head=d_head,
            heads=heads,
            associations=params.associations or max(context.n_records, 1),
            context=params.context_length or details.get("max_position_embeddings") or 2,
        )
        facts["attention"] = {
            **bound.to_json(),
            "scope": "one attention layer of this width and head count (Dana et al., AISTATS "
            "2025); it bounds what one such layer can store, not the whole model",
        }
    if details.get("hidden_widths"):
        facts["width"] = width_flag(details["hidden_widths"], details["input_dim"])
    return facts


def _summarize_capacity(values: Sequence[dict[str, Any]], params: CapacityParams) -> dict[str, Any]:
    correct = [v["correct"] for v in values if v.get("correct") is not None]
    summary: dict[str, Any] = {"n_samples": len(values)}
    if correct:
        accuracy = float(np.mean(correct))
        summary["training_accuracy"] = accuracy
        summary["interpolates"] = accuracy == 1.0
    distances = [
        v["nearest_cross_class"] for v in values if v.get("nearest_cross_class") is not None
    ]
    if distances:
        summary["separation_bound"] = float(min(distances))
        summary["contradictory_pairs"] = sorted(
            {
                tuple(sorted((v["id"], v["nearest_id"])))
                for v in values
                if v.get("nearest_cross_class") == 0.0
            }
        )
        summary["nearest_cross_class_histogram"] = shared_histogram({"all": distances})
        summary["separation_note"] = (
            "c(D) = 0: identical inputs carry different labels, which no function can memorize"
            if summary["separation_bound"] == 0.0
            else "c(D) > 0: every differently labelled pair is at least c(D) apart"
        )
    return summary


CAPACITY = CheckKind(
    name="capacity",
    description="Capacity and theory checks: the attention-only capacity bound from the model "
    "config, the MLP width flag, and (for labelled feature records) the dataset's separation "
    "bound (METRICS.md §8). Cheap: it joins any audit of a supported model.",
    params_model=CapacityParams,
    model_kinds=(*CLASSIFIER_KINDS, "causal_lm"),
    required_fields=(),
    metrics=(
        Metric(
            "nearest_cross_class",
            None,
            "L2",
            "Distance to the nearest point of another class.",
            "Yu et al. 2024",
        ),
        Metric("correct", None, "bool", "The model predicts the record's label."),
    ),
    plan=no_lm_plan,
    compute=_compute_capacity,
    summarize=_summarize_capacity,
    rank_score=lambda values, _p: (
        -values["nearest_cross_class"] if values.get("nearest_cross_class") is not None else None
    ),
    rank_description="closest to another class first",
    table_columns=lambda _p: [
        TableColumn("nearest_cross_class", "nearest other class", "number"),
        TableColumn("correct", "correct", "bool"),
    ],
    family="classifier",
    model_facts=_capacity_facts,
)
