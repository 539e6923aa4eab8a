"""The classifier kinds, declared for the registry: `diversity`, `proxies`, `capacity`.

Each computes per record over a chunk of a shard and summarizes at finalize from the stored
rows; what concerns the model as a whole (bounds from its config, the held-out copy's
training) is `model_facts`, stored with the shard and put in the summary under "model".
Their computation is `diversity.py`, `proxies.py` and `capacity.py`, run in a worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from core.check_kinds import CheckKind, CheckParams, Lazy, Metric, TableColumn, known_names
from core.inspection.datasets import Record, require_label
from worker.engine.diversity import BINNINGS, ESTIMATORS
from worker.engine.proxies import HIGHER_IS_MORE_MEMORIZED

CLASSIFIER_KINDS = ("classifier", "encoder")


# ---- diversity ---------------------------------------------------------------------------


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


def read_label(record: Record) -> int | None:
    """The classifier pass reads a record's label wherever it has one: a class index, or the
    audit fails on it."""
    return require_label(record) if "label" in record.data else None


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
    compute=Lazy("worker.checks.classifier.diversity:compute"),
    summarize=Lazy("worker.checks.classifier.diversity:summarize"),
    rank_score=lambda _values, _p: None,
    rank_description="none: diversity describes layers, not records",
    table_columns=lambda _p: [],
    summarize_reads_detail=True,
    check_record=read_label,
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


def proxy_rank(values: Mapping[str, Any], params: ProxyParams) -> float | None:
    scores = values.get("mem_score") or {}
    return scores.get(params.rank_by, scores.get("loss"))


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
    compute=Lazy("worker.checks.classifier.proxies:compute"),
    summarize=Lazy("worker.checks.classifier.proxies:summarize"),
    rank_score=proxy_rank,
    rank_description="mem_score of rank_by (higher = more memorized)",
    table_columns=lambda _p: [
        TableColumn("loss", "loss", "number"),
        TableColumn("confidence", "confidence", "number"),
        TableColumn("margin", "margin", "number"),
        TableColumn("heldout_kl", "held-out KL", "number"),
    ],
    model_facts=Lazy("worker.checks.classifier.proxies:model_facts"),
    exemplars=lambda summary: [entry["id"] for entry in summary.get("most_memorized", [])],
    check_record=read_label,
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
    compute=Lazy("worker.checks.classifier.capacity:compute"),
    summarize=Lazy("worker.checks.classifier.capacity:summarize"),
    rank_score=lambda values, _p: (
        -values["nearest_cross_class"] if values.get("nearest_cross_class") is not None else None
    ),
    rank_description="closest to another class first",
    table_columns=lambda _p: [
        TableColumn("nearest_cross_class", "nearest other class", "number"),
        TableColumn("correct", "correct", "bool"),
    ],
    model_facts=Lazy("worker.checks.classifier.capacity:model_facts"),
    check_record=read_label,
)
