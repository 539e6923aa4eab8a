"""Benchmark of the whole-work scan (the `coverage` kind), a ratio against a baseline measured
in this run.

    python bench/whole_work.py            # GPT-2-sized random model (124M) on CPU
    python bench/whole_work.py --smoke    # toy sizes, for tests/bench

Prints: the scan's time over every window of a long random text (each window scored alone,
exact log10 p_z under greedy and top-k 40, reduced to the per-window series) / the time of the
plain batched loss pass (`score_sequences`, log-probs at every position) over the same window
sequences. Target: <= 1.1. Rounds are interleaved and medians taken, as bench/lm_engine.py
does, so drift in this machine's speed hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_gpt2 import random_gpt2
from worker.engine.coverage import coverage_offsets
from worker.engine.coverage_scan import ScanSetup, scan_windows
from worker.engine.schemes import GREEDY, Scheme
from worker.engine.scoring import ScoringRequest, score_sequences

SIZES = {
    # GPT-2 small: 12 layers, 768 wide, 50,257 tokens; windows of 50 + 50 every 10 tokens.
    "gpt2": {"n_layer": 12, "n_embd": 768, "vocab": 50257, "tokens": 1_000, "batch": 16},
    "smoke": {"n_layer": 2, "n_embd": 96, "vocab": 1000, "tokens": 400, "batch": 16},
}
PREFIX, SUFFIX, STRIDE = 50, 50, 10
SCHEMES = (GREEDY, Scheme(top_k=40))
TARGET = 1.1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="toy sizes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = SIZES["smoke" if args.smoke else "gpt2"]
    model = random_gpt2(
        size["n_layer"],
        size["n_embd"],
        size["vocab"],
        12,
        bos_token_id=size["vocab"] - 1,
        eos_token_id=size["vocab"] - 1,
    )
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(0, size["vocab"], (size["tokens"],), generator=generator).tolist()
    specials = [size["vocab"] - 1]
    offsets = coverage_offsets(len(text), PREFIX, SUFFIX, STRIDE)
    windows = [specials + text[o : o + PREFIX + SUFFIX] for o in offsets]
    batch = size["batch"]
    setup = ScanSetup.of(model, "cpu", SCHEMES)

    def loss_pass() -> None:
        score_sequences(model, [ScoringRequest(w) for w in windows], "cpu", batch_size=batch)

    def scan() -> None:
        scan_windows(setup, text, specials, offsets, PREFIX, SUFFIX, batch_size=batch)

    runs = {"loss pass": loss_pass, "coverage scan": scan}
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    tokens = len(windows) * len(windows[0])
    print(
        f"[cpu] {len(windows)} windows of {PREFIX}+{SUFFIX} (+{len(specials)} special) every "
        f"{STRIDE} tokens over a {len(text):,}-token text; {tokens:,} window tokens; model "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params"
    )
    for name, value in median.items():
        print(f"[cpu] {name}: {value:.3f} s ({tokens / value:,.0f} tok/s)")
    ratio = median["coverage scan"] / median["loss pass"]
    print(f"[cpu] coverage scan / plain loss pass: ratio {ratio:.3f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
