"""The bundled copy-detection encoder: a small CNN that stands in for SSCD (METRICS.md §9) when
nothing better is configured, trained by `scripts/train_copy_encoder.py` on data that ships with
scikit-learn (two photographs, the 8×8 digits) and on procedural shapes.

Like SSCD it is trained contrastively so that an edited copy (cropped, shifted, flipped, recoloured,
blurred, noised, also with noise on a coarse grid: what a generated 8×8 reproduction differs by
once enlarged) lands next to its source and apart from other images; the cosine of two L2-normed
embeddings is the copy score. The weights (safetensors, float16) and a card with the calibrated
threshold and held-out figures sit beside this file.

Any image enters the same way: 1 or 3 channels, any size and value range; it is standardized per
image (so brightness and contrast edits do not count), grey images are repeated to RGB, and it is
resized to 64×64.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

SIZE = 64  # every image is compared at 64×64: enough for layout, small enough for a CPU
DIM = 128
# Noise grids, 8 (the side of scikit-learn's digits) three times as likely as the others.
COARSE_CELLS = (4, 8, 8, 8, 16, 32)
COARSE_AMPLITUDE = 1.0  # at most, before enlarging (which leaves ~0.7 of it), in image stds
COARSE_SHARE = 0.8  # of images that get coarse noise
WEIGHTS = Path(__file__).with_name("copy_encoder.safetensors")
CARD = Path(__file__).with_name("copy_encoder.json")


class CopyEncoder(nn.Module):
    """Four stride-2 convolutions (64 → 4 pixels) and a linear map of the 4×4 grid, so the
    embedding keeps where things are, which is what separates two images of similar texture."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128), dim: int = DIM) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 3
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, 3, stride=2, padding=1),
                nn.GroupNorm(8, width),
                nn.ReLU(),
            ]
            previous = width
        self.features = nn.Sequential(*layers)
        side = SIZE // 2 ** len(widths)
        self.project = nn.Linear(previous * side * side, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, 64, 64) -> (B, dim)
        return F.normalize(self.project(self.features(images).flatten(1)), dim=1)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), C ∈ {1, 3}, any range → (B, 3, 64, 64), standardized per image."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"the copy encoder takes (B, 1 or 3, H, W) images, not {tuple(images.shape)}; "
            "use the 'pixels' embedding for other layouts"
        )
    x = images.float()
    flat = x.flatten(1)
    x = (x - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + 1e-6)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (SIZE, SIZE):
        # Area averaging when shrinking (no aliasing), bilinear when growing a small image.
        shrink = x.shape[-1] > SIZE or x.shape[-2] > SIZE
        x = F.interpolate(x, size=(SIZE, SIZE), mode="area" if shrink else "bilinear")
    return x


@cache
def bundled() -> tuple[CopyEncoder, dict[str, Any]]:
    """The shipped weights and card, read once per process (safetensors: never unpickled)."""
    from safetensors.torch import load_file

    card = json.loads(CARD.read_text())
    # Built outside inference mode even when `embed` asks first: cached parameters made there
    # could never take part in a computation with gradients (a training script, a FLIPD pass).
    with torch.inference_mode(False):
        model = CopyEncoder(tuple(card["widths"]), card["dim"])
        model.load_state_dict({k: v.float() for k, v in load_file(WEIGHTS).items()})
    return model.eval(), card


@torch.inference_mode()
def embed(images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(B, C, H, W) → (B, 128) unit vectors from the bundled encoder, on the CPU."""
    model, _ = bundled()
    parts = [model(prepare(images[i : i + batch])) for i in range(0, len(images), batch)]
    return torch.cat(parts).double() if parts else torch.zeros(0, DIM, dtype=torch.float64)


def threshold() -> float:
    """The cosine above which two images count as copies: calibrated on held-out images so
    that about 1% of distinct pairs' nearest neighbours reach it (see the card)."""
    return float(bundled()[1]["threshold"])


# ---- what counts as a copy: the edits training teaches the encoder to see through ------------


def copy_edit(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0):  # type: ignore[no-untyped-def]
    """A random copy edit of each (B, 3, S, S) image: crop to 65–100% of the side, shift,
    horizontal flip, brightness/contrast/saturation, sometimes grey, blur, fine and coarse
    noise."""
    b = images.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, generator=generator)

    scale = 1 - strength * uniform(0.0, 0.35)
    shift_x, shift_y = (strength * uniform(-0.12, 0.12) for _ in range(2))
    flip = torch.where(torch.rand(b, generator=generator) < 0.5 * strength, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, 0, 2], theta[:, 1, 2] = shift_x, shift_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + strength * uniform(-0.3, 0.3)).view(-1, 1, 1, 1) + mean
    x = x + strength * uniform(-0.3, 0.3).view(-1, 1, 1, 1)
    grey = x.mean(dim=1, keepdim=True)
    saturation = 1 + strength * uniform(-0.5, 0.5)
    saturation[torch.rand(b, generator=generator) < 0.2 * strength] = 0.0
    x = grey + (x - grey) * saturation.view(-1, 1, 1, 1)
    sigma = strength * uniform(0.0, 1.2)
    x = _blur(x, sigma)
    noise = torch.randn(x.shape, generator=generator)
    x = x + strength * uniform(0.0, 0.08).view(-1, 1, 1, 1) * noise
    return x + strength * _coarse_noise(x, generator)


def _coarse_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noise drawn on a coarse grid (4–32 cells a side) and enlarged, for most images: a small
    image's copy that differs pixel by pixel (a sampler's leftover noise on 8×8 digits) reaches
    the encoder as blotches, not as the fine grain of the noise above."""
    b, c, h, w = images.shape
    out = torch.zeros_like(images)
    cells = torch.tensor(COARSE_CELLS)[torch.randint(len(COARSE_CELLS), (b,), generator=generator)]
    amplitude = torch.rand(b, generator=generator) * COARSE_AMPLITUDE
    amplitude[torch.rand(b, generator=generator) >= COARSE_SHARE] = 0.0
    for side in sorted(set(COARSE_CELLS)):
        chosen = (cells == side).nonzero().flatten()
        if len(chosen):
            grid = torch.randn(len(chosen), c, side, side, generator=generator)
            noise = F.interpolate(grid, size=(h, w), mode="bilinear")
            out[chosen] = amplitude[chosen].view(-1, 1, 1, 1) * noise
    return out


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of each image with its own σ (pixels; 0 leaves it as it is)."""
    radius = 3
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernels = torch.exp(-(offsets**2)[None] / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)  # (B, 7)
    b, c, h, w = images.shape
    x = F.pad(images.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    per_channel = kernels.repeat_interleave(c, 0)
    x = F.conv2d(x, per_channel.view(b * c, 1, 1, -1), groups=b * c)
    x = F.conv2d(x, per_channel.view(b * c, 1, -1, 1), groups=b * c)
    return x.view(b, c, h, w)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's loss on two views: each embedding must pick its partner among the 2B − 1 others."""
    z = torch.cat([a, b])  # (2B, D), unit rows
    logits = z @ z.T / temperature
    logits.fill_diagonal_(-math.inf)
    n = a.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, partner)
