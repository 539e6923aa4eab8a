"""Train the bundled copy-detection encoder (worker/engine/diffusion/copy_encoder.py) and write
its weights and card beside it:

    .venv/bin/python -m scripts.train_copy_encoder [--steps 1500]

Sources, all offline: crops of scikit-learn's two sample photographs (left three quarters; the
right quarter is held out), the 8×8 digits (three in four; every fourth is held out) and
procedural shapes (held out: other seeds). Each step edits every image twice (`copy_edit`) and
trains the two views to find each other (InfoNCE). The threshold is then calibrated on the
held-out digits and shapes: the 99th percentile of each edited copy's most similar *other* image.
Photo crops are left out of it: crops of one strip overlap, so they are not distinct images.
`--calibrate` re-reads the shipped weights and rewrites only the card.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from worker.engine.diffusion import copy_encoder as ce
from worker.engine.diffusion.sampling import pixel_embedding

PHOTO_SPLIT = 0.75  # columns left of this fraction train, right of it are held out
# Held-out figures are given for the training edits (1.0) and for half of each (0.5: crop to
# 82–100%, shift ≤ 6%, grid noise ≤ 0.35 std once enlarged, ...), nearer to a generated copy.
EDIT_STRENGTHS = (1.0, 0.5)


def photos() -> list[torch.Tensor]:
    from sklearn.datasets import load_sample_images

    return [torch.as_tensor(p).permute(2, 0, 1).float() / 255 for p in load_sample_images().images]


def digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held out) digits as (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    images = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16
    held = torch.arange(len(images)) % 4 == 0
    return images[~held], images[held]


def photo_crops(
    sources: list[torch.Tensor], n: int, generator: torch.Generator, held_out: bool
) -> torch.Tensor:
    """n square crops of 24–300 pixels from one side of the split, resized to 64×64."""
    crops = []
    for _ in range(n):
        photo = sources[int(torch.randint(len(sources), (1,), generator=generator))]
        _, h, w = photo.shape
        split = int(w * PHOTO_SPLIT)
        low, high = (split, w) if held_out else (0, split)
        side = int(torch.randint(24, min(300, h, high - low) + 1, (1,), generator=generator))
        top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
        left = low + int(torch.randint(0, high - low - side + 1, (1,), generator=generator))
        crops.append(ce.prepare(photo[None, :, top : top + side, left : left + side]))
    return torch.cat(crops)


def shapes(n: int, generator: torch.Generator) -> torch.Tensor:
    """Gradients with 3–8 coloured ellipses and rectangles: layouts no photo or digit has."""
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, ce.SIZE), torch.linspace(-1, 1, ce.SIZE), indexing="ij"
    )
    out = []
    for _ in range(n):
        a, b, c = torch.rand(3, 3, generator=generator)
        image = (a[:, None, None] + b[:, None, None] * xs + c[:, None, None] * ys) / 2
        for _ in range(int(torch.randint(3, 9, (1,), generator=generator))):
            cx, cy, rx, ry = torch.rand(4, generator=generator) * torch.tensor(
                [2, 2, 0.6, 0.6]
            ) - torch.tensor([1, 1, -0.08, -0.08])
            colour = torch.rand(3, generator=generator)
            if torch.rand(1, generator=generator) < 0.5:
                mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1
            else:
                mask = ((xs - cx).abs() <= rx) & ((ys - cy).abs() <= ry)
            image = torch.where(mask, colour[:, None, None], image)
        out.append(image)
    return ce.prepare(torch.stack(out))


def heldout(seed: int = 1234, n_photo: int = 300, n_shapes: int = 300) -> dict[str, torch.Tensor]:
    """The images no training step saw, prepared at 64×64, by source."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "photos": photo_crops(photos(), n_photo, generator, held_out=True),
        "digits": ce.prepare(digit_images()[1]),
        "shapes": shapes(n_shapes, generator),
    }


def copy_similarities(
    embed, references: torch.Tensor, generator: torch.Generator, strength: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Edit each reference once: each copy's similarity to its source, and to the most
    similar other reference."""
    queries = ce.prepare(ce.copy_edit(references, generator, strength))
    with torch.inference_mode():
        a, b = embed(queries), embed(references)
    sims = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    own = sims.diagonal().clone()
    sims.fill_diagonal_(-2)
    return own, sims.max(dim=1).values


def copy_figures(
    embed,
    references: torch.Tensor,
    generator: torch.Generator,
    threshold: float | None = None,
    strength: float = 1.0,
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """How often a copy's source is its nearest reference (top-1), and the similarity to the
    source against the most similar other reference."""
    own, other = copy_similarities(embed, references, generator, strength)
    found = {
        "top1": float((own > other).double().mean()),
        "own_median": float(own.median()),
        "other_p99": float(torch.quantile(other.double(), 0.99)),
    }
    if threshold is not None:
        found["detected"] = float((own >= threshold).double().mean())
        found["false_copies"] = float((other >= threshold).double().mean())
    return found


def pixels(images: torch.Tensor) -> torch.Tensor:
    """The baseline: the prepared image, grey, as the diffusion checks' pixel embedding."""
    return pixel_embedding(images.mean(dim=1))


def heldout_figures(
    model, sets: dict[str, torch.Tensor], threshold: float, seed: int
) -> dict[float, dict[str, dict[str, dict[str, float]]]]:  # type: ignore[no-untyped-def]
    """Per edit strength and held-out set: the encoder's figures at `threshold` and the
    pixels' on the same edited copies (both edit with a generator seeded `seed`)."""
    return {
        strength: {
            name: {
                "encoder": copy_figures(
                    model, images, torch.Generator().manual_seed(seed), threshold, strength
                ),
                "pixels": copy_figures(
                    pixels, images, torch.Generator().manual_seed(seed), None, strength
                ),
            }
            for name, images in sets.items()
        }
        for strength in EDIT_STRENGTHS
    }


def train(steps: int, batch: int, seed: int) -> ce.CopyEncoder:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sources, (digits, _) = photos(), digit_images()
    model = ce.CopyEncoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    third = batch // 3
    started = time.perf_counter()
    for step in range(steps):
        pick = torch.randint(len(digits), (third,), generator=generator)
        images = torch.cat(
            [
                photo_crops(sources, third, generator, held_out=False),
                ce.prepare(digits[pick]),
                shapes(batch - 2 * third, generator),
            ]
        )
        views = [model(ce.prepare(ce.copy_edit(images, generator))) for _ in range(2)]
        loss = ce.info_nce(*views)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - started:.0f}s)")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibrate", action="store_true", help="keep the weights, redo the card")
    args = parser.parse_args()
    if args.calibrate:
        model, card = ce.bundled()
        training = card["training"]
    else:
        model = train(args.steps, args.batch, args.seed)
        training = {"steps": args.steps, "batch": args.batch, "seed": args.seed}
    sets = heldout()
    distinct = torch.cat([sets["digits"], sets["shapes"]])
    _, other = copy_similarities(model, distinct, torch.Generator().manual_seed(7))
    threshold = float(torch.quantile(other.double(), 0.99))
    figures = {
        f"strength {strength}": found
        for strength, found in heldout_figures(model, sets, threshold, seed=11).items()
    }
    from safetensors.torch import save_file

    if not args.calibrate:
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, ce.WEIGHTS)
    card = {
        "widths": [32, 64, 96, 128],
        "dim": ce.DIM,
        "size": ce.SIZE,
        "threshold": round(threshold, 4),
        "training": training,
        "heldout": figures,
    }
    ce.CARD.write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
