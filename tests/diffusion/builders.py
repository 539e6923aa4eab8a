"""Small class-conditional DDPMs on scikit-learn's 8×8 digits, trained in the test: one on a
single image per class (it memorizes them), one on every image (it cannot)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

N_CLASSES = 10
NULL_CLASS = N_CLASSES  # the extra embedding that label dropout trains as "no class"


@dataclass(frozen=True)
class DigitModels:
    memorizer: Path
    generalist: Path
    few: Path  # .npz: the one image per class the memorizer saw (x, y)
    many: Path  # .npz: every image (x, y)
    seconds: float


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    found = load_digits()
    images = (found.images / 16.0 * 2 - 1).astype("float32")[:, None]  # [-1, 1], (N, 1, 8, 8)
    return images, found.target.astype("int64")


def small_unet(num_class_embeds: int | None = N_CLASSES + 1, width: int = 16):  # type: ignore[no-untyped-def]
    """A two-level UNet for 8×8 one-channel images, class-conditional unless told otherwise."""
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(width, 2 * width),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    )


def train_ddpm(
    images: np.ndarray, labels: np.ndarray, steps: int, out: Path, seed: int = 0
) -> Path:
    """ε-prediction training with 10% label dropout (classifier-free guidance), saved as a
    diffusers pipeline directory."""
    import diffusers

    torch.manual_seed(seed)
    unet = small_unet()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    noise_schedule = diffusers.DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.as_tensor(images), torch.as_tensor(labels)
    for _ in range(steps):
        pick = torch.randint(len(x_all), (64,), generator=generator)
        x0, classes = x_all[pick], y_all[pick].clone()
        classes[torch.rand(64, generator=generator) < 0.1] = NULL_CLASS
        t = torch.randint(1000, (64,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        predicted = unet(noise_schedule.add_noise(x0, noise, t), t, class_labels=classes).sample
        loss = (predicted - noise).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    unet.eval().save_pretrained(out / "unet")
    diffusers.DDIMScheduler(num_train_timesteps=1000).save_pretrained(out / "scheduler")
    index = {
        "_class_name": "MemauditClassConditionalPipeline",
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "memaudit_null_class": NULL_CLASS,
    }
    (out / "model_index.json").write_text(json.dumps(index))
    return out


def digit_models(root: Path, steps: int = 1500) -> DigitModels:
    import time

    started = time.perf_counter()
    images, labels = digits()
    first = np.array([int(np.flatnonzero(labels == k)[0]) for k in range(N_CLASSES)])
    (root / "data").mkdir(parents=True, exist_ok=True)
    few, many = root / "data" / "few.npz", root / "data" / "many.npz"
    np.savez(few, x=images[first], y=labels[first])
    np.savez(many, x=images, y=labels)
    memorizer = train_ddpm(images[first], labels[first], steps, root / "models" / "ddpm-few")
    generalist = train_ddpm(images, labels, steps, root / "models" / "ddpm-many")
    return DigitModels(memorizer, generalist, few, many, time.perf_counter() - started)
