"""Prompt alignment of a generation (METRICS.md §9): the CLIP score, the cosine of the
L2-normalized image and text embeddings, and the pixels CLIP's vision tower expects.

>>> import torch
>>> round(float(clip_score(torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]]))[0]), 4)
0.96
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

# OpenAI CLIP's normalization, used when a model directory has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_score(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """cos(image, text) per row: (B, D), (B, D) -> (B,)."""
    return (F.normalize(image_features, dim=-1) * F.normalize(text_features, dim=-1)).sum(-1)


def clip_pixels(
    images: torch.Tensor,
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """Generations in [-1, 1] (B, 1 or 3, H, W) -> CLIP's input (B, 3, size, size): to [0, 1],
    grey repeated to RGB, resized (bicubic, as CLIP's processor), normalized."""
    x = ((images.float() + 1) / 2).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    shape = (1, 3, 1, 1)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
