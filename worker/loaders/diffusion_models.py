"""Diffusion pipelines on local disk: a diffusers `save_pretrained` directory (`model_index.json`
with `unet/` and `scheduler/`, and `text_encoder/` + `tokenizer/` for a text-conditional model).

Only allow-listed component classes are built, from safetensors weights, with no custom code.
A class-conditional UNet (`num_class_embeds`) is guided against a null class: the one named by
`memaudit_null_class` in `model_index.json`, else the last embedding (the usual convention when
labels are dropped to train classifier-free guidance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.inspection.diffusion_index import NULL_CLASS_KEY
from core.inspection.errors import ModelError
from worker.loaders.models import ModelCache, explained_load, pick_device


@dataclass
class LoadedDiffusion:
    unet: Any
    scheduler: Any
    text_encoder: Any | None
    tokenizer: Any | None
    vae: Any | None
    null_class: int | None  # class-conditional models
    device: str
    dtype: str
    content_sha256: str = ""

    @property
    def class_conditional(self) -> bool:
        return self.null_class is not None


def load_pipeline(spec: Any) -> LoadedDiffusion:
    """The pipeline a resolved spec names (its `config` is the checked model_index.json)."""
    import diffusers
    import torch

    path, index = spec.path, spec.config
    device, dtype = pick_device()
    dtype = torch.float32 if device == "cpu" else dtype
    common = {"local_files_only": True}
    unet_class = getattr(diffusers, index["unet"][1])
    unet = unet_class.from_pretrained(
        path / "unet", use_safetensors=True, torch_dtype=dtype, **common
    )
    scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(
        path / "scheduler", **common
    )
    text_encoder = tokenizer = vae = None
    if index.get("text_encoder") and index["text_encoder"][1]:
        import transformers

        text_encoder = (
            transformers.CLIPTextModel.from_pretrained(
                path / "text_encoder", use_safetensors=True, torch_dtype=dtype, **common
            )
            .to(device)
            .eval()
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(path / "tokenizer", **common)
    if index.get("vae") and index["vae"][1]:
        vae = (
            diffusers.AutoencoderKL.from_pretrained(
                path / "vae", use_safetensors=True, torch_dtype=dtype, **common
            )
            .to(device)
            .eval()
        )
    null_class = None
    n_classes = getattr(unet.config, "num_class_embeds", None)
    if n_classes:
        null_class = int(index.get(NULL_CLASS_KEY, n_classes - 1))
        if not 0 <= null_class < n_classes:
            raise ModelError(f"{NULL_CLASS_KEY}={null_class} is not one of the {n_classes} classes")
    elif text_encoder is None:
        raise ModelError(
            "the UNet is neither class-conditional (num_class_embeds) nor paired with a text "
            "encoder: there is nothing to guide"
        )
    return LoadedDiffusion(
        unet.to(device).eval(),
        scheduler,
        text_encoder,
        tokenizer,
        vae,
        null_class,
        device,
        str(dtype),
        spec.content_sha256(),
    )


# One resident pipeline per worker process (reloaded when its files change).
_pipelines: ModelCache[LoadedDiffusion] = ModelCache(lambda s: explained_load(s, load_pipeline), 1)


def cached_pipeline(spec: Any) -> LoadedDiffusion:
    return _pipelines.get(spec)


def training_images(path: Path) -> tuple[Any, Any]:
    """`x` (N, C, H, W) or (N, H, W) and optional `y` from an .npz, never unpickled."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise ModelError(f"{path.name} has no array 'x' of training images")
            images = archive["x"].astype("float32")
            labels = archive["y"] if "y" in archive.files else None
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"{path.name} is not a readable .npz of images: {exc}") from None
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ModelError(f"training images must be (N, C, H, W) or (N, H, W), not {images.shape}")
    if labels is not None and len(labels) != len(images):
        raise ModelError(f"{path.name}: 'y' has {len(labels)} rows, 'x' {len(images)}")
    return images, labels
