"""The diffusion check kinds (METRICS.md §9): `cfg_basin`, `cfg_mitigation` and `lid`.

Each record asks for one generation condition: `class_label` (a class-conditional UNet) or
`prompt` (a text-conditional one), with optional `seed` and `memorized` flag. The model is
sampled with the guidance being studied, recording ε_c, ε_u and Δ_t at every step; each
generation is compared with its nearest training image by the cosine of an embedding: the bundled
copy-detection encoder (METRICS' SSCD stand-in) by default, centred pixels, or a classifier or
encoder of the user's. A CLIP model, when given, scores each generation against its prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from worker.check_types import (
    CheckKind,
    CheckParams,
    Metric,
    SubmitContext,
    TableColumn,
    known_names,
    no_lm_plan,
)
from worker.engine.diffusion import copy_encoder
from worker.engine.diffusion.flipd import flipd_from_eps
from worker.engine.diffusion.guidance import (
    DEFAULT_SCALE,
    combine,
    detection_score,
    dynamic_transition,
)
from worker.engine.diffusion.lpca import lpca
from worker.engine.diffusion.sampling import (
    METHODS,
    GuidancePlan,
    guided_sample,
    nearest_similarity,
    per_step_mean,
    pixel_embedding,
)
from worker.loaders.datasets import DatasetError, Record
from worker.loaders.diffusion_models import LoadedDiffusion

THUMBNAIL = 32  # generations and their nearest training images are kept at most this wide
EXEMPLARS = 12
EMBEDDINGS = ("copy_encoder", "pixels")  # or a model URI
PIXEL_THRESHOLD = 0.9  # centred-pixel cosine: a near-exact copy at the digits' scale


@dataclass
class DiffusionContext:
    pipeline: LoadedDiffusion
    batch_size: int
    # A dataset URI -> (images (N, C, H, W) as float32, labels or None)
    load_images: Callable[[str], tuple[np.ndarray, np.ndarray | None]]
    _images: dict[str, tuple[torch.Tensor, np.ndarray | None]] = field(default_factory=dict)
    _lpca: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    # A classifier or encoder URI -> the loaded model, to embed images with (`embedding`)
    load_embedder: Callable[[str], Any] | None = None
    # A CLIP model URI -> LoadedClip, to score generations against their prompts
    load_clip: Callable[[str], Any] | None = None
    _references: dict[tuple[str, str, str | None], torch.Tensor] = field(default_factory=dict)

    def embed(self, images: torch.Tensor, embedding: str, layer: str | None) -> torch.Tensor:
        """The copy encoder, centred pixels, or a model's activations at `layer` (default: its
        last probed layer)."""
        if embedding == "copy_encoder":
            return copy_encoder.embed(images)
        if embedding == "pixels":
            return pixel_embedding(images)
        if self.load_embedder is None:
            raise ValueError("this context cannot load an embedding model")
        embedder = self.load_embedder(embedding)
        name = layer or embedder.default_layers()[-1]
        found = embedder.activations(embedder.batch(images.numpy()), [name], "mean")[name]
        return torch.as_tensor(found, dtype=torch.float64)

    def reference_embeddings(self, uri: str, embedding: str, layer: str | None) -> torch.Tensor:
        key = (uri, embedding, layer)
        if key not in self._references:
            images = self.training_images(uri)[0]
            parts = [
                self.embed(images[i : i + 256], embedding, layer)
                for i in range(0, len(images), 256)
            ]
            self._references[key] = torch.cat(parts)
        return self._references[key]

    def lpca(self, uri: str, n_neighbors: int) -> np.ndarray:
        """The data's LID at every training image, once per worker and dataset."""
        if (uri, n_neighbors) not in self._lpca:
            images = pixel_embedding(self.training_images(uri)[0]).numpy()
            self._lpca[(uri, n_neighbors)] = lpca(images, n_neighbors)
        return self._lpca[(uri, n_neighbors)]

    def training_images(self, uri: str) -> tuple[torch.Tensor, np.ndarray | None]:
        if uri not in self._images:
            images, labels = self.load_images(uri)
            self._images[uri] = (torch.as_tensor(images, dtype=torch.float32), labels)
        return self._images[uri]


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
        return copy_encoder.threshold() if self.embedding == "copy_encoder" else PIXEL_THRESHOLD


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


def _conditions(records: Sequence[Record], pipeline: LoadedDiffusion) -> list[Any]:
    found = []
    for record in records:
        data = record.data
        if pipeline.class_conditional:
            label = data.get("class_label")
            if not isinstance(label, int) or isinstance(label, bool) or label < 0:
                raise DatasetError(record.line_no, "field 'class_label' must be a class index")
            if label == pipeline.null_class or label >= pipeline.unet.config.num_class_embeds:
                raise DatasetError(record.line_no, f"class_label {label} is not a real class")
            found.append(label)
        else:
            if not isinstance(data.get("prompt"), str):
                raise DatasetError(record.line_no, "field 'prompt' must be a string")
            found.append(data["prompt"])
    return found


def _text_embeddings(pipeline: LoadedDiffusion, prompts: Sequence[str]) -> torch.Tensor:
    tokens = pipeline.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=pipeline.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return pipeline.text_encoder(tokens.input_ids.to(pipeline.device))[0]


def _eps_pair(pipeline: LoadedDiffusion, conditions: Sequence[Any]):  # type: ignore[no-untyped-def]
    """ε_c and ε_u of a batch in one forward pass of 2B."""
    unet, n = pipeline.unet, len(conditions)
    if pipeline.class_conditional:
        labels = torch.tensor([*conditions, *([pipeline.null_class] * n)], device=pipeline.device)

        def pair(x: torch.Tensor, t: torch.Tensor):  # type: ignore[no-untyped-def]
            out = unet(torch.cat([x, x]), t, class_labels=labels).sample
            return out[:n], out[n:]

        return pair
    context = torch.cat(
        [_text_embeddings(pipeline, conditions), _text_embeddings(pipeline, [""] * n)]
    )

    def text_pair(x: torch.Tensor, t: torch.Tensor):  # type: ignore[no-untyped-def]
        out = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample
        return out[:n], out[n:]

    return text_pair


def _decode(pipeline: LoadedDiffusion, samples: torch.Tensor) -> torch.Tensor:
    if pipeline.vae is None:
        return samples
    return pipeline.vae.decode(samples / pipeline.vae.config.scaling_factor).sample


def _noise(pipeline: LoadedDiffusion, seed: int) -> torch.Tensor:
    config = pipeline.unet.config
    size = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
    shape = (config.in_channels, size, size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _thumbnail(image: torch.Tensor) -> list:
    if image.shape[-1] > THUMBNAIL:
        image = torch.nn.functional.interpolate(
            image[None], size=(THUMBNAIL, THUMBNAIL), mode="area"
        )[0]
    return [[[round(float(v), 3) for v in row] for row in channel] for channel in image]


@torch.inference_mode()
def _generate(
    context: DiffusionContext,
    records: Sequence[Record],
    params: BasinParams,
    plan: GuidancePlan,
) -> list[list[dict[str, Any]]]:
    """Per record, per seed: Δ curve, scales, transition, nearest training image and cosine."""
    pipeline = context.pipeline
    conditions = _conditions(records, pipeline)
    training, labels = context.training_images(params.training_images)
    reference = context.reference_embeddings(
        params.training_images, params.embedding, params.embedding_layer
    )
    clip = None
    if params.clip_model is not None:
        if pipeline.class_conditional:
            raise ValueError(
                "clip_model scores prompts, and this model is class-conditional: its alignment "
                "is the class of each generation's nearest training image"
            )
        if context.load_clip is None:
            raise ValueError("this context cannot load a CLIP model")
        clip = context.load_clip(params.clip_model)
    jobs = [
        (i, int(records[i].data.get("seed", seed)))
        for i in range(len(records))
        for seed in (params.seeds if "seed" not in records[i].data else [None])
    ]
    results: list[list[dict[str, Any]]] = [[] for _ in records]
    for start in range(0, len(jobs), context.batch_size):
        chunk = jobs[start : start + context.batch_size]
        noise = torch.stack([_noise(pipeline, seed) for _, seed in chunk]).to(pipeline.device)
        pair = _eps_pair(pipeline, [conditions[i] for i, _ in chunk])
        found = guided_sample(pair, pipeline.scheduler, noise, plan)
        images = _decode(pipeline, found.samples).float().cpu()
        if images.shape[1:] != training.shape[1:]:
            raise ValueError(
                f"generated images are {tuple(images.shape[1:])}, training images "
                f"{tuple(training.shape[1:])}: give training images at the model's resolution"
            )
        embedded = context.embed(images, params.embedding, params.embedding_layer)
        similarity, nearest = nearest_similarity(embedded, reference)
        prompts = [conditions[i] for i, _ in chunk]
        clip_scores = clip.score(images, prompts) if clip is not None else [None] * len(chunk)
        for k, (i, seed) in enumerate(chunk):
            index = int(nearest[k])
            results[i].append(
                {
                    "seed": seed,
                    "deltas": found.deltas[k],
                    "scales": found.scales[k],
                    "transition": found.transition[k],
                    "similarity": float(similarity[k]),
                    "nearest": index,
                    "nearest_label": None if labels is None else int(labels[index]),
                    "clip": clip_scores[k],
                    "image": _thumbnail(images[k]),
                    "nearest_image": _thumbnail(training[index]),
                }
            )
    return results


# ---- cfg_basin ---------------------------------------------------------------------------


def _compute_basin(
    context: DiffusionContext, records: Sequence[Record], params: BasinParams
) -> list[dict[str, Any]]:
    plan = GuidancePlan("cfg", params.guidance_scale, num_steps=params.num_steps)
    per_record = _generate(context, records, params, plan)
    rows = []
    for record, runs in zip(records, per_record, strict=True):
        best = max(runs, key=lambda r: r["similarity"])
        rows.append(
            {
                "id": record.sample_id,
                "memorized": record.data.get("memorized"),
                "condition": record.data.get("class_label", record.data.get("prompt")),
                "detection_score": float(
                    np.mean([detection_score(r["deltas"], params.detection) for r in runs])
                ),
                "similarity_max": best["similarity"],
                "copies": best["similarity"] >= params.threshold(),
                "nearest": best["nearest"],
                "nearest_label": best["nearest_label"],
                # Δ per step, averaged over the seeds: what the summary's curves are made of.
                "delta_curve": [round(d, 5) for d in per_step_mean([r["deltas"] for r in runs])],
                # Where DTP would switch guidance on: the official local-minimum rule on Δ.
                "transition": [dynamic_transition(r["deltas"]) for r in runs],
                "detail": {"runs": runs},
            }
        )
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _group(value: dict[str, Any]) -> str:
    return {True: "memorized", False: "not_memorized"}.get(value.get("memorized"), "unlabelled")


def _median_transitions(values: Sequence[dict[str, Any]]) -> dict[str, float]:
    steps: dict[str, list[int]] = {}
    for v in values:
        steps.setdefault(_group(v), []).extend(t for t in v["transition"] if t is not None)
    return {k: float(np.median(s)) for k, s in steps.items() if s}


def _group_curves(values: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    groups: dict[str, list[list[float]]] = {}
    for v in values:
        groups.setdefault(_group(v), []).append(v["delta_curve"])
    return {k: per_step_mean(c) for k, c in groups.items()}


def _summarize_basin(values: Sequence[dict[str, Any]], params: BasinParams) -> dict[str, Any]:
    scores = [v["detection_score"] for v in values]
    summary: dict[str, Any] = {
        "n": len(values),
        "guidance_scale": params.guidance_scale,
        "embedding": params.embedding,
        "threshold": params.threshold(),
        "copy_rate": float(np.mean([v["copies"] for v in values])) if values else None,
        "mean_similarity": float(np.mean([v["similarity_max"] for v in values]))
        if values
        else None,
        "mean_detection_score": float(np.mean(scores)) if scores else None,
        "delta_curves": _group_curves(values),
        "median_transition": _median_transitions(values),
        "by_flag": {},
        "most_similar": [
            {"id": v["id"], "similarity": v["similarity_max"]}
            for v in sorted(values, key=lambda v: -v["similarity_max"])[:EXEMPLARS]
        ],
    }
    for flag, name in ((True, "memorized"), (False, "not_memorized")):
        group = [v for v in values if v.get("memorized") is flag]
        if group:
            summary["by_flag"][name] = {
                "n": len(group),
                "detection_score": float(np.mean([v["detection_score"] for v in group])),
                "similarity": float(np.mean([v["similarity_max"] for v in group])),
                "copy_rate": float(np.mean([v["copies"] for v in group])),
            }
    return summary


# ---- cfg_mitigation ----------------------------------------------------------------------


def _compute_mitigation(
    context: DiffusionContext, records: Sequence[Record], params: MitigationParams
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "memorized": r.data.get("memorized"),
            "condition": r.data.get("class_label", r.data.get("prompt")),
            "similarity": {},
            "copies": {},
            "aligned": {},
            "detail": {"runs": {}},
        }
        for r in records
    ]
    for method in params.methods:
        per_record = _generate(context, records, params, params.plan(method))
        for record, row, runs in zip(records, rows, per_record, strict=True):
            best = max(runs, key=lambda r: r["similarity"])
            row["similarity"][method] = best["similarity"]
            row["copies"][method] = best["similarity"] >= params.threshold()
            row["aligned"][method] = _alignment(record, runs)
            row["detail"]["runs"][method] = runs
    for row in rows:
        row["similarity_reduction"] = row["similarity"].get("cfg", 0) - min(
            row["similarity"].values()
        )
    return rows


def _alignment(record: Record, runs: Sequence[dict[str, Any]]) -> float | None:
    """How well a record's generations match what was asked: the mean CLIP score against the
    prompt, or for a class-conditional model the share whose nearest training image is of the
    class asked for; None when neither can be read."""
    clips = [r["clip"] for r in runs if r["clip"] is not None]
    if clips:
        return float(np.mean(clips))
    label = record.data.get("class_label")
    agree = [r["nearest_label"] == label for r in runs if r["nearest_label"] is not None]
    return float(np.mean(agree)) if agree and label is not None else None


def _summarize_mitigation(
    values: Sequence[dict[str, Any]], params: MitigationParams
) -> dict[str, Any]:
    methods: dict[str, Any] = {}
    for method in params.methods:
        sims = [v["similarity"][method] for v in values]
        aligned = [v["aligned"][method] for v in values if v["aligned"][method] is not None]
        methods[method] = {
            "mean_similarity": float(np.mean(sims)) if sims else None,
            "copy_rate": float(np.mean([v["copies"][method] for v in values])) if values else None,
            "similarities": [round(s, 4) for s in sims][:2000],
            "alignment": float(np.mean(aligned)) if aligned else None,
        }
    plain = methods.get("cfg", {}).get("alignment")
    for entry in methods.values():
        # What a mitigation costs in alignment, against plain CFG.
        known = plain is not None and entry["alignment"] is not None
        entry["alignment_cost"] = plain - entry["alignment"] if known else None
    return {
        "n": len(values),
        "embedding": params.embedding,
        "threshold": params.threshold(),
        "alignment_measure": "clip" if params.clip_model else "class_agreement",
        "methods": methods,
    }


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
    plan=no_lm_plan,
    compute=_compute_basin,
    summarize=_summarize_basin,
    rank_score=lambda values, _p: values["similarity_max"],
    rank_description="closest to a training image first",
    table_columns=lambda _p: [
        TableColumn("similarity_max", "nearest training", "number"),
        TableColumn("detection_score", "mean Δ", "number"),
        TableColumn("copies", "copies", "bool"),
    ],
    family="diffusion",
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
    plan=no_lm_plan,
    compute=_compute_mitigation,
    summarize=_summarize_mitigation,
    rank_score=lambda values, _p: values["similarity"].get("cfg"),
    rank_description="closest to a training image under plain CFG first",
    table_columns=lambda p: [
        TableColumn(f"similarity.{m}", f"similarity · {m}", "number") for m in p.methods
    ],
    validate=_validate_models,
    family="diffusion",
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


def _flipd(
    pipeline: LoadedDiffusion,
    conditions: Sequence[Any],
    x: torch.Tensor,
    timestep: int,
    scale: float,
    probes: int | None,
) -> list[float]:
    alpha_bar = float(pipeline.scheduler.alphas_cumprod[timestep])
    pair = _eps_pair(pipeline, conditions)
    t = torch.tensor(timestep, device=pipeline.device)

    def eps(y: torch.Tensor) -> torch.Tensor:
        eps_c, eps_u = pair(y, t)
        return combine(eps_u, eps_c, scale)

    generator = torch.Generator(device=pipeline.device).manual_seed(0)
    with torch.enable_grad():
        found = flipd_from_eps(eps, x, alpha_bar**0.5, (1 - alpha_bar) ** 0.5, probes, generator)
    return [float(v) for v in found.detach().cpu()]


def _reading(flipd: float, lpca_value: float, params: LidParams) -> str:
    """Ross et al.: overfitting-driven below the data's LID, data-driven when both are small."""
    if flipd < lpca_value - params.od_margin:
        return "od_mem"
    if abs(flipd - lpca_value) <= params.od_margin and lpca_value <= params.dd_max:
        return "dd_mem"
    return "none"


def _compute_lid(
    context: DiffusionContext, records: Sequence[Record], params: LidParams
) -> list[dict[str, Any]]:
    pipeline = context.pipeline
    conditions = _conditions(records, pipeline)
    training, _labels = context.training_images(params.training_images)
    samples = []
    for record in records:
        index = record.data.get("image_index")
        if index is None:
            samples.append(None)
        elif not isinstance(index, int) or not 0 <= index < len(training):
            raise DatasetError(record.line_no, f"image_index must be 0..{len(training) - 1}")
        else:
            samples.append(training[index])
    missing = [i for i, s in enumerate(samples) if s is None]
    if missing:  # generated, then scored where they landed
        plan = GuidancePlan("cfg", params.guidance_scale, num_steps=params.num_steps)
        noise = torch.stack(
            [_noise(pipeline, int(records[i].data.get("seed", 42))) for i in missing]
        ).to(pipeline.device)
        pair = _eps_pair(pipeline, [conditions[i] for i in missing])
        with torch.inference_mode():
            made = guided_sample(pair, pipeline.scheduler, noise, plan).samples
        for k, i in enumerate(missing):
            samples[i] = made[k].clone()
    x = torch.stack([torch.as_tensor(s) for s in samples]).to(pipeline.device)
    scale = params.guidance_scale if params.flipd_guidance is None else params.flipd_guidance
    probes = params.hutchinson_samples
    at_t0 = _flipd(pipeline, conditions, x, params.t0, scale, probes)
    curve = {
        t: _flipd(pipeline, conditions, x, t, scale, probes) for t in sorted(set(params.t0_grid))
    }
    data_lid = context.lpca(params.training_images, params.lpca_neighbors)
    queries = pixel_embedding(x.float().cpu()).numpy()
    nearest = nearest_similarity(torch.as_tensor(queries), pixel_embedding(training))[1]
    rows = []
    for i, record in enumerate(records):
        lpca_value = float(data_lid[int(nearest[i])])
        rows.append(
            {
                "id": record.sample_id,
                "memorized": record.data.get("memorized"),
                "source": "training" if record.data.get("image_index") is not None else "generated",
                "flipd": at_t0[i],
                "flipd_curve": {str(t): values[i] for t, values in curve.items()},
                "lpca": lpca_value,
                "reading": _reading(at_t0[i], lpca_value, params),
            }
        )
    return rows


def _summarize_lid(values: Sequence[dict[str, Any]], params: LidParams) -> dict[str, Any]:
    readings: dict[str, int] = {}
    for v in values:
        readings[v["reading"]] = readings.get(v["reading"], 0) + 1
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in values:
        groups.setdefault(_group(v), []).append(v)
    grid = sorted({t for v in values for t in v["flipd_curve"]}, key=int)
    return {
        "n": len(values),
        "t0": params.t0,
        "mean_flipd": _mean([v["flipd"] for v in values]),
        "mean_lpca": _mean([v["lpca"] for v in values]),
        "readings": readings,
        "by_group": {
            name: {
                "n": len(group),
                "mean_flipd": _mean([v["flipd"] for v in group]),
                "flipd": [round(v["flipd"], 4) for v in group][:5000],
                "curve": {t: _mean([v["flipd_curve"][t] for v in group]) for t in grid},
            }
            for name, group in groups.items()
        },
    }


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
    plan=no_lm_plan,
    compute=_compute_lid,
    summarize=_summarize_lid,
    rank_score=lambda values, _p: -values["flipd"],
    rank_description="lowest model LID first",
    table_columns=lambda _p: [
        TableColumn("flipd", "FLIPD", "number"),
        TableColumn("lpca", "LPCA", "number"),
    ],
    family="diffusion",
    validate=_validate_images,
)
