"""A CLIP model on local disk (a transformers `CLIPModel` save_pretrained directory with its
tokenizer), loaded from safetensors without remote code, to score how well a generation matches
its prompt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.inspection.errors import ModelError
from core.inspection.models import ModelSpec
from worker.engine.diffusion.alignment import CLIP_MEAN, CLIP_STD, clip_pixels, clip_score
from worker.loaders.models import ModelCache, explained_load

PREPROCESSOR = "preprocessor_config.json"


@dataclass
class LoadedClip:
    model: Any
    tokenizer: Any
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @torch.inference_mode()
    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> list[float]:
        """CLIP score of each generation (B, C, H, W) in [-1, 1] against its prompt."""
        device = next(self.model.parameters()).device
        pixels = clip_pixels(images, self.image_size, self.mean, self.std).to(device)
        image_features = _features(self.model.get_image_features(pixel_values=pixels))
        # One prompt at a time: CLIP pools at the end-of-text token, and padding a batch with
        # it would make a prompt's score depend on the prompts beside it.
        texts = {}
        for prompt in dict.fromkeys(prompts):
            tokens = self.tokenizer([prompt], truncation=True, return_tensors="pt").to(device)
            texts[prompt] = _features(self.model.get_text_features(**tokens))[0]
        text_features = torch.stack([texts[p] for p in prompts])
        return [float(v) for v in clip_score(image_features, text_features).float().cpu()]


def _features(output: Any) -> torch.Tensor:
    """The projected embedding, whether transformers returns it bare or in an output object."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _load(spec: ModelSpec) -> LoadedClip:
    import transformers

    from worker.loaders.models import pick_device

    if (spec.config or {}).get("model_type") != "clip":
        raise ModelError(f"{spec.path.name} is not a CLIP model (config.json model_type 'clip')")
    device, _ = pick_device()
    common = {"local_files_only": True, "trust_remote_code": False}
    model = transformers.CLIPModel.from_pretrained(spec.path, use_safetensors=True, **common)
    tokenizer = transformers.AutoTokenizer.from_pretrained(spec.path, **common)
    mean, std = CLIP_MEAN, CLIP_STD
    if (spec.path / PREPROCESSOR).is_file():
        found = json.loads((spec.path / PREPROCESSOR).read_text())
        mean = tuple(found.get("image_mean", mean))
        std = tuple(found.get("image_std", std))
    size = int(model.config.vision_config.image_size)
    return LoadedClip(model.to(device).eval(), tokenizer, size, mean, std)


_clips = ModelCache(lambda spec: explained_load(spec, _load), 1)


def cached_clip(spec: ModelSpec) -> LoadedClip:
    return _clips.get(spec)
