"""Small class-conditional DDPMs on scikit-learn's 8×8 digits, trained in the test.

- The memorizer saw one image per class: it reproduces them, guided or not.
- The canary model saw every image with its digit, the generalist's data, and five extra
  conditions (10–14), the analogue of memorized captions: each names one image shown 40 times
  (its canary) and 30 other images of the same digit. Its unconditional model is broad, so how
  often a canary condition copies depends on the guidance, which is what Jain et al. measure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

N_CLASSES = 10
CANARY_DIGITS = (0, 2, 4, 6, 8)
CANARY_CLASSES = tuple(range(N_CLASSES, N_CLASSES + len(CANARY_DIGITS)))
CANARY_COPIES = 40
CANARY_SIBLINGS = 30  # other images of the canary's digit that share its condition


@dataclass(frozen=True)
class DigitModels:
    memorizer: Path
    canary_model: Path  # trained on every digit, plus the canary conditions
    few: Path  # .npz: the one image per class the memorizer saw (x, y)
    many: Path  # .npz: every digit once (x, y), the canary model's distinct training images
    canaries: tuple[int, ...]  # indices into `many` of the canaries, by condition
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
    images: np.ndarray, labels: np.ndarray, n_classes: int, steps: int, out: Path, seed: int = 0
) -> Path:
    """ε-prediction training with 10% label dropout to the null class `n_classes`
    (classifier-free guidance), saved as a diffusers pipeline directory."""
    import diffusers

    torch.manual_seed(seed)
    unet = small_unet(n_classes + 1)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    noise_schedule = diffusers.DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.as_tensor(images), torch.as_tensor(labels)
    for _ in range(steps):
        pick = torch.randint(len(x_all), (64,), generator=generator)
        x0, classes = x_all[pick], y_all[pick].clone()
        classes[torch.rand(64, generator=generator) < 0.1] = n_classes
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
        "memaudit_null_class": n_classes,
    }
    (out / "model_index.json").write_text(json.dumps(index))
    return out


def canary_data(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Every digit with its label, then per canary condition its canary 40× and 30 siblings."""
    xs, ys, canaries = [images], [labels], []
    for condition, digit in zip(CANARY_CLASSES, CANARY_DIGITS, strict=True):
        same = np.flatnonzero(labels == digit)
        canary, siblings = int(same[5]), same[10 : 10 + CANARY_SIBLINGS]
        canaries.append(canary)
        xs += [images[[canary] * CANARY_COPIES], images[siblings]]
        ys.append(np.full(CANARY_COPIES + len(siblings), condition))
    return np.concatenate(xs), np.concatenate(ys), canaries


def digit_models(root: Path) -> DigitModels:
    import time

    started = time.perf_counter()
    images, labels = digits()
    first = np.array([int(np.flatnonzero(labels == k)[0]) for k in range(N_CLASSES)])
    (root / "data").mkdir(parents=True, exist_ok=True)
    few, many = root / "data" / "few.npz", root / "data" / "many.npz"
    np.savez(few, x=images[first], y=labels[first])
    np.savez(many, x=images, y=labels)
    memorizer = train_ddpm(
        images[first], labels[first], N_CLASSES, 1500, root / "models" / "ddpm-few"
    )
    x, y, canaries = canary_data(images, labels)
    canary_model = train_ddpm(
        x, y, N_CLASSES + len(CANARY_CLASSES), 2000, root / "models" / "ddpm-canaries"
    )
    seconds = time.perf_counter() - started
    return DigitModels(memorizer, canary_model, few, many, tuple(canaries), seconds)
