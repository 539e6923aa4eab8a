"""Benchmark of the `approximate` kind's suffix generation, each figure a ratio against a
baseline measured in this run.

    python bench/approximate_generation.py            # CPU (and the GPU when one is visible)
    python bench/approximate_generation.py --quick    # tiny shapes, for a smoke run

Prints, per device:
  1. greedy: one-prompt-at-a-time HF generate() time / batched KV-cache time, and whether the
     generated ids agree;
  2. sampled (top-k 40): batch_size=1 time / batched time, and whether the seeded samples agree;
  3. the similarity metrics per generation (rapidfuzz) against a plain-Python LCS table.
The model is a random-initialised GPT-2 built here (no download).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.engine.schemes import Scheme
from worker.engine.similarity import lcs_length, similarity
from worker.engine.suffix_generation import generate_suffixes, row_seed


def build_model(device: str, quick: bool) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    layers, width, vocab = (2, 64, 1000) if quick else (6, 512, 32000)
    config = GPT2Config(vocab_size=vocab, n_positions=256, n_embd=width, n_layer=layers, n_head=8)
    return GPT2LMHeadModel(config).to(device).eval()


def timed(fn, device: str):  # type: ignore[no-untyped-def]
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def hf_one_by_one(model, prefixes: list[list[int]], new: int, device: str) -> list[list[int]]:  # type: ignore[no-untyped-def]
    found = []
    for prefix in prefixes:
        ids = torch.tensor([prefix], device=device)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
        found.append(out[0, len(prefix) :].tolist())
    return found


def plain_lcs(a: list[int], b: list[int]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            same = a[i - 1] == b[j - 1]
            table[i][j] = table[i - 1][j - 1] + 1 if same else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def run(device: str, quick: bool) -> None:
    model = build_model(device, quick)
    vocab = model.config.vocab_size
    n, prefix_len, new, batch = (8, 12, 8, 4) if quick else (64, 50, 50, 32)
    rng = random.Random(0)
    prefixes = [[rng.randrange(1, vocab) for _ in range(prefix_len)] for _ in range(n)]
    kwargs = {"new_tokens": new, "device": device}

    baseline, expected = timed(lambda: hf_one_by_one(model, prefixes, new, device), device)
    batched_time, batched = timed(
        lambda: generate_suffixes(model, prefixes, scheme=Scheme(0), batch_size=batch, **kwargs),
        device,
    )
    agree = sum(a == b for a, b in zip(expected, batched, strict=True))
    print(
        f"[{device}] greedy, {n} prefixes x {new} new tokens: HF generate() one by one "
        f"{baseline:.2f}s / batched KV cache {batched_time:.2f}s = {baseline / batched_time:.2f}x; "
        f"ids agree on {agree}/{n}"
    )

    scheme = Scheme(1.0, 40)
    seeds = [row_seed(0, i, scheme.name) for i in range(n)]
    single_time, single = timed(
        lambda: generate_suffixes(
            model, prefixes, scheme=scheme, seeds=seeds, batch_size=1, **kwargs
        ),
        device,
    )
    sampled_time, sampled = timed(
        lambda: generate_suffixes(
            model, prefixes, scheme=scheme, seeds=seeds, batch_size=batch, **kwargs
        ),
        device,
    )
    agree = sum(a == b for a, b in zip(single, sampled, strict=True))
    print(
        f"[{device}] {scheme.name}: batch_size=1 {single_time:.2f}s / batched {sampled_time:.2f}s "
        f"= {single_time / sampled_time:.2f}x; seeded samples agree on {agree}/{n}"
    )

    pairs = list(zip(sampled, expected, strict=True)) * (2 if quick else 20)
    plain_time, plain = timed(lambda: [plain_lcs(a, b) for a, b in pairs], "cpu")
    fast_time, fast = timed(lambda: [lcs_length(a, b) for a, b in pairs], "cpu")
    all_time, _ = timed(lambda: [similarity(a, b) for a, b in pairs], "cpu")
    print(
        f"[{device}] LCS of {len(pairs)} pairs: plain Python table {plain_time * 1e3:.1f} ms / "
        f"rapidfuzz {fast_time * 1e3:.2f} ms = {plain_time / max(fast_time, 1e-9):.0f}x; "
        f"agree: {plain == fast}; all metrics {all_time * 1e3:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        run(device, args.quick)


if __name__ == "__main__":
    main()
