"""Copy detection on held-out images: the bundled encoder against centred pixels, measured in
the same run on the same edited copies.

    .venv/bin/python -m bench.copy_encoder [--repeats 3]

For each held-out image (photo crops right of the training split, every fourth digit, procedural
shapes of other seeds) one random copy edit is made, at the training edits' full strength and at
half of it; top-1 is how often the copy's most similar
reference is its source. Also: encoder throughput on 64×64 images (CPU).
"""

from __future__ import annotations

import argparse
import time

import torch

from scripts.train_copy_encoder import EDIT_STRENGTHS, copy_figures, heldout, pixels
from worker.engine.diffusion import copy_encoder as ce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, _ = ce.bundled()
    sets = heldout()
    for strength in EDIT_STRENGTHS:
        print(f"edits at strength {strength}")
        for name, images in sets.items():
            encoder = [
                copy_figures(
                    model, images, torch.Generator().manual_seed(r), ce.threshold(), strength
                )
                for r in range(args.repeats)
            ]
            baseline = [
                copy_figures(pixels, images, torch.Generator().manual_seed(r), None, strength)
                for r in range(args.repeats)
            ]
            top1 = sum(e["top1"] for e in encoder) / args.repeats
            base = sum(b["top1"] for b in baseline) / args.repeats
            detected = sum(e["detected"] for e in encoder) / args.repeats
            false = sum(e["false_copies"] for e in encoder) / args.repeats
            print(
                f"  {name:7s} n={len(images):4d}  top-1 encoder {top1:.3f}  pixels {base:.3f}  "
                f"ratio {top1 / base:.2f}x  | at threshold {ce.threshold():.3f}: copies found "
                f"{detected:.3f}, distinct images called copies {false:.3f}"
            )
    batch = torch.cat(list(sets.values()))[:512]
    ce.embed(batch)
    started = time.perf_counter()
    ce.embed(batch)
    seconds = time.perf_counter() - started
    print(f"throughput: {len(batch) / seconds:,.0f} images/s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
