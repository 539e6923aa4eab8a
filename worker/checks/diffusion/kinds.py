"""The diffusion check kinds (METRICS.md §9): `cfg_basin`, `cfg_mitigation` and `lid`.

Each record asks for one generation condition: `class_label` (a class-conditional UNet) or
`prompt` (a text-conditional one), with optional `seed` and `memorized` flag. The model is
sampled with the guidance being studied, recording ε_c, ε_u and Δ_t at every step; each
generation is compared with its nearest training image by the cosine of an embedding: the bundled
copy-detection encoder (METRICS' SSCD stand-in) by default, centred pixels, or a classifier or
encoder of the user's. A CLIP model, when given, scores each generation against its prompt.

Declared here for the registry; computed by `basin.py` and `lid.py` in a worker."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from core.check_kinds import (
    CheckKind,
    CheckParams,
    Lazy,
    Metric,
    SubmitContext,
    TableColumn,
    known_names,
)
from worker.engine.diffusion.plans import DEFAULT_SCALE, METHODS, GuidancePlan

EMBEDDINGS = ("copy_encoder", "pixels")  # or a model URI
PIXEL_THRESHOLD = 0.9  # centred-pixel cosine: a near-exact copy at the digits' scale


class BasinParams(CheckParams):
    training_images: str = Field(
        description="dataset:<id> or path:<file>: an .npz whose `x` holds the training images "
        "(N, C, H, W) in the model's value range, `y` their class labels"
    )
    guidance_scale: float = Field(DEFAULT_SCALE, ge=-50, le=50)
    num_steps: int = Field(50, ge=2, le=1000)
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1, max_length=64)
    similarity_threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="nearest-training cosine from which a generation copies; default: the copy "
        "encoder's calibrated threshold, 0.9 for pixels (required for a model of your own)",
    )
    detection: str = Field("mean", pattern="^(mean|first)$")
    embedding: str = Field(
        "copy_encoder",
        description="what the similarity compares: 'copy_encoder' (bundled, SSCD-like), "
        "'pixels' (centred), or a classifier or encoder URI under the model roots",
    )
    embedding_layer: str | None = Field(None, description="a model's layer; default: its last")
    clip_model: str | None = Field(
        None,
        description="a CLIP model URI (under the model roots) scoring text-conditional "
        "generations against their prompts; class-conditional ones are scored by class",
    )

    @model_validator(mode="before")
    @classmethod
    def _stored_before_embedding(cls, data: Any) -> Any:
        """Audits stored before `embedding` existed name their model `embedding_model`, and
        None meant pixels: they keep reading as they were run."""
        if isinstance(data, dict) and "embedding_model" in data:
            data = dict(data)
            data.setdefault("embedding", data.pop("embedding_model") or "pixels")
        return data

    @model_validator(mode="after")
    def _threshold_for_a_model(self) -> BasinParams:
        if self.embedding not in EMBEDDINGS and self.similarity_threshold is None:
            raise ValueError(
                "similarity_threshold is required with an embedding model of your own: "
                "its cosine scale is not known"
            )
        return self

    def threshold(self) -> float:
        if self.similarity_threshold is not None:
            return self.similarity_threshold
        if self.embedding == "copy_encoder":
            # The bundled encoder's calibration lives beside its weights, read in a worker.
            from worker.engine.diffusion import copy_encoder

            return copy_encoder.threshold()
        return PIXEL_THRESHOLD


class MitigationParams(BasinParams):
    methods: list[str] = Field(default_factory=lambda: list(METHODS), min_length=1)
    tau: int = Field(500, ge=0, le=10_000, description="stp: s_before while t > tau")
    s_before_static: float = Field(0.0, ge=-50, le=50)
    s_before_dynamic: float = Field(1.0, ge=-50, le=50)

    @field_validator("methods")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        return known_names(values, METHODS, "methods")

    def plan(self, method: str) -> GuidancePlan:
        before = {"stp": self.s_before_static, "dtp": self.s_before_dynamic}.get(method)
        return GuidancePlan(method, self.guidance_scale, self.tau, before, self.num_steps)


def _validate_images(params: Any, context: SubmitContext) -> None:
    """The training images a check reads: the team's upload or a file in its data folders."""
    if context.resolve_dataset is not None:
        context.resolve_dataset(params.training_images)


def _validate_models(params: BasinParams, context: SubmitContext) -> None:
    _validate_images(params, context)
    if context.resolve_model is None:
        return
    if params.embedding not in EMBEDDINGS:
        kind = context.resolve_model(params.embedding)
        if kind not in (None, "classifier", "encoder"):
            raise ValueError(f"embedding is a {kind} model; give a classifier or encoder")
    if params.clip_model is not None:
        kind = context.resolve_model(params.clip_model)
        if kind not in (None, "encoder"):
            raise ValueError(f"clip_model is a {kind} model; give a CLIP model directory")


CFG_BASIN = CheckKind(
    name="cfg_basin",
    description="Classifier-free guidance inside the attraction basin (Jain et al. 2025): the "
    "Δ_t = ‖ε_c − ε_u‖ curve, Wen et al.'s detection score, the dynamic transition point, and "
    "each generation's similarity to its nearest training image.",
    params_model=BasinParams,
    model_kinds=("diffusion",),
    required_fields=(),
    metrics=(
        Metric(
            "detection_score",
            True,
            "",
            "Mean Δ_t over the steps (or Δ at the first).",
            "Wen et al. 2024",
        ),
        Metric(
            "similarity_max", True, "ratio", "Cosine to the nearest training image, max over seeds."
        ),
        Metric("copies", True, "bool", "similarity_max reaches the threshold."),
    ),
    compute=Lazy("worker.checks.diffusion.basin:compute_basin"),
    summarize=Lazy("worker.checks.diffusion.basin:summarize_basin"),
    rank_score=lambda values, _p: values["similarity_max"],
    rank_description="closest to a training image first",
    table_columns=lambda _p: [
        TableColumn("similarity_max", "nearest training", "number"),
        TableColumn("detection_score", "mean Δ", "number"),
        TableColumn("copies", "copies", "bool"),
    ],
    validate=_validate_models,
    exemplars=lambda summary: [entry["id"] for entry in summary.get("most_similar", [])],
)


CFG_MITIGATION = CheckKind(
    name="cfg_mitigation",
    description="Mitigations of guidance-driven copying (Jain et al. 2025): plain CFG, static "
    "and dynamic transition points, and opposite guidance, compared on nearest-training "
    "similarity and alignment.",
    params_model=MitigationParams,
    model_kinds=("diffusion",),
    required_fields=(),
    metrics=(
        Metric("similarity", True, "ratio", "Cosine to the nearest training image, per method."),
        Metric("similarity_reduction", None, "ratio", "Plain CFG's similarity minus the lowest."),
    ),
    compute=Lazy("worker.checks.diffusion.basin:compute_mitigation"),
    summarize=Lazy("worker.checks.diffusion.basin:summarize_mitigation"),
    rank_score=lambda values, _p: values["similarity"].get("cfg"),
    rank_description="closest to a training image under plain CFG first",
    table_columns=lambda p: [
        TableColumn(f"similarity.{m}", f"similarity · {m}", "number") for m in p.methods
    ],
    validate=_validate_models,
)


# ---- lid ---------------------------------------------------------------------------------


class LidParams(CheckParams):
    training_images: str = Field(
        description="dataset:<id> or path:<file>: the .npz of training images (`x`, `y`); "
        "records with `image_index` are scored on those, the others on their generation"
    )
    t0: int = Field(ge=1, le=10_000, description="the timestep FLIPD is read at")
    t0_grid: list[int] = Field(default_factory=lambda: [10, 50, 100, 200], max_length=32)
    guidance_scale: float = Field(DEFAULT_SCALE, ge=-50, le=50)
    flipd_guidance: float | None = Field(
        None, ge=-50, le=50, description="the guided ε̂ differentiated; default: guidance_scale"
    )
    num_steps: int = Field(50, ge=2, le=1000)
    hutchinson_samples: int | None = Field(
        None, ge=1, le=1000, description="None: the exact trace up to 3,500 dimensions"
    )
    lpca_neighbors: int = Field(1000, ge=2, le=100_000)
    od_margin: float = Field(1.0, ge=0, description="OD-Mem: FLIPD below LPCA by more than this")
    dd_max: float = Field(2.0, ge=0, description="DD-Mem: LPCA at most this, FLIPD close to it")


LID = CheckKind(
    name="lid",
    description="Local intrinsic dimension (Ross et al. 2025): FLIPD of the model at t₀ and along "
    "a t₀ grid, against LPCA of the training data; low LID marks memorization, read as "
    "overfitting-driven or data-driven.",
    params_model=LidParams,
    model_kinds=("diffusion",),
    required_fields=(),
    metrics=(
        Metric(
            "flipd", False, "", "FLIPD at t₀: the model's local dimension here.", "Kamkari 2024"
        ),
        Metric("lpca", None, "", "The data's local dimension (local PCA of neighbours)."),
    ),
    compute=Lazy("worker.checks.diffusion.lid:compute"),
    summarize=Lazy("worker.checks.diffusion.lid:summarize"),
    rank_score=lambda values, _p: -values["flipd"],
    rank_description="lowest model LID first",
    table_columns=lambda _p: [
        TableColumn("flipd", "FLIPD", "number"),
        TableColumn("lpca", "LPCA", "number"),
    ],
    validate=_validate_images,
)
