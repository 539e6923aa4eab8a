"""What the diffusion kinds compute from: the pipeline, the training images and embedders a
shard reads, and guided generation with ε_c, ε_u and Δ_t recorded at every step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.inspection.datasets import DatasetError, Record
from worker.checks.diffusion.kinds import BasinParams
from worker.checks.shard_pass import ShardInput, ShardPass, loaded_info
from worker.engine.diffusion import copy_encoder
from worker.engine.diffusion.lpca import lpca
from worker.engine.diffusion.plans import GuidancePlan
from worker.engine.diffusion.sampling import guided_sample, nearest_similarity, pixel_embedding
from worker.loaders.clip_models import cached_clip
from worker.loaders.diffusion_models import LoadedDiffusion, training_images

THUMBNAIL = 32  # generations and their nearest training images are kept at most this wide


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


def conditions_of(records: Sequence[Record], pipeline: LoadedDiffusion) -> list[Any]:
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


def eps_pair(pipeline: LoadedDiffusion, conditions: Sequence[Any]):  # type: ignore[no-untyped-def]
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


def initial_noise(pipeline: LoadedDiffusion, seed: int) -> torch.Tensor:
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
def generate(
    context: DiffusionContext,
    records: Sequence[Record],
    params: BasinParams,
    plan: GuidancePlan,
) -> list[list[dict[str, Any]]]:
    """Per record, per seed: Δ curve, scales, transition, nearest training image and cosine."""
    pipeline = context.pipeline
    conditions = conditions_of(records, pipeline)
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
        seeds = [seed for _, seed in chunk]
        noise = torch.stack([initial_noise(pipeline, seed) for seed in seeds]).to(pipeline.device)
        pair = eps_pair(pipeline, [conditions[i] for i, _ in chunk])
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


def open_pass(shard: ShardInput) -> ShardPass:
    """A whole sampling trajectory per record: progress after every batch of them."""
    pipeline = shard.target.pipeline()
    access = shard.access
    painter = DiffusionContext(
        pipeline,
        shard.batch_size,
        lambda uri: training_images(access.open_dataset(uri)),
        load_embedder=access.classifier,
        load_clip=lambda uri: cached_clip(access.spec(uri)),
    )
    records = shard.records

    def compute(batch: Sequence[int]) -> tuple[list[list[dict[str, Any]]], int]:
        chunk = [records[i] for i in batch]
        return [kind.compute(painter, chunk, params) for kind, params in shard.checks], 0

    return ShardPass(compute, loaded_info(pipeline), chunk=shard.batch_size)
