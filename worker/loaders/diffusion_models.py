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

from app.confinement import Pinned
from worker.loaders.errors import ModelError
from worker.loaders.weight_files import read_json_file

INDEX = "model_index.json"
UNETS = {"UNet2DModel", "UNet2DConditionModel"}
SCHEDULERS = {"DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler"}
TEXT_ENCODERS = {"CLIPTextModel"}
VAES = {"AutoencoderKL"}
NULL_CLASS_KEY = "memaudit_null_class"


def read_index(pinned: Pinned) -> dict[str, Any]:
    """model_index.json, checked: a UNet and a scheduler of allowed classes, safetensors only."""
    name = pinned.located.path.name
    index = read_json_file(pinned, INDEX)
    if not isinstance(index, dict):
        raise ModelError(f"{INDEX} in {name} is not a JSON object")
    allowed = {"unet": UNETS, "scheduler": SCHEDULERS, "text_encoder": TEXT_ENCODERS, "vae": VAES}
    for component in ("unet", "scheduler"):
        if component not in index:
            raise ModelError(f"{name}: the pipeline has no {component}")
    for component, entry in index.items():
        if (
            component.startswith("_")
            or component == NULL_CLASS_KEY
            or component in ("tokenizer", "safety_checker", "feature_extractor")
        ):
            continue
        if entry is None or (isinstance(entry, list) and len(entry) == 2 and entry[1] is None):
            continue
        if (
            component not in allowed
            or not isinstance(entry, list)
            or len(entry) != 2
            or entry[1] not in allowed[component]
        ):
            raise ModelError(f"{name}: pipeline component {component}={entry} is not supported")
        weights = [n for n in pinned.names(component) if n.endswith(".safetensors")]
        if component != "scheduler" and not weights:
            raise ModelError(f"{name}/{component} has no .safetensors weights")
    return index


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

    from worker.loaders.models import pick_device

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


_pipelines: Any = None


def cached_pipeline(spec: Any) -> LoadedDiffusion:
    """One resident pipeline per worker process (reloaded when its files change)."""
    global _pipelines
    from worker.loaders.models import ModelCache, explained_load

    if _pipelines is None:
        _pipelines = ModelCache(lambda s: explained_load(s, load_pipeline), 1)
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
