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

from scripts.train_copy_encoder import heldout, heldout_figures
from worker.engine.diffusion import copy_encoder as ce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, _ = ce.bundled()
    sets = heldout()
    runs = [heldout_figures(model, sets, ce.threshold(), seed=r) for r in range(args.repeats)]

    def mean(strength: float, name: str, side: str, figure: str) -> float:
        return sum(run[strength][name][side][figure] for run in runs) / args.repeats

    for strength in runs[0]:
        print(f"edits at strength {strength}")
        for name, images in sets.items():
            top1, base = (
                mean(strength, name, "encoder", "top1"),
                mean(strength, name, "pixels", "top1"),
            )
            print(
                f"  {name:7s} n={len(images):4d}  top-1 encoder {top1:.3f}  pixels {base:.3f}  "
                f"ratio {top1 / base:.2f}x  | at threshold {ce.threshold():.3f}: copies found "
                f"{mean(strength, name, 'encoder', 'detected'):.3f}, distinct images called "
                f"copies {mean(strength, name, 'encoder', 'false_copies'):.3f}"
            )
    batch = torch.cat(list(sets.values()))[:512]
    ce.embed(batch)
    started = time.perf_counter()
    ce.embed(batch)
    seconds = time.perf_counter() - started
    print(f"throughput: {len(batch) / seconds:,.0f} images/s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
