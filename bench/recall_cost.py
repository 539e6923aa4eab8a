"""What ReCaLL costs beside a plain pass, both measured in this run on the same records.

    python bench/recall_cost.py            # GPT-2-sized (124M) random model, CPU
    python bench/recall_cost.py --smoke    # toy shapes, for the smoke test

ReCaLL needs LL(x) (the plain teacher-forced pass the membership check runs anyway) and
LL(x|P), P its default prefix: 3 shots cut to 256 tokens. The prefix runs once
(prefix_scoring.encode_prefix) and every batch continues from its copied cache, so the
conditioned pass costs about one plain pass plus attention over P. Printed: the plain pass's
time, the prefix pass's, and ReCaLL's total over the plain pass (target <= 2.1x).
The model is a random-initialised GPT-2 built here (no download).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.random_gpt2 import random_gpt2
from worker.engine.prefix_scoring import encode_prefix, prefix_logprobs
from worker.engine.scoring import ScoringRequest, score_sequences

TARGET = 2.1
SHAPES = {
    # GPT-2 small: 12 layers, 768 wide, its vocabulary; records of 256 tokens, 3 x 256 shots.
    "full": {"n_layer": 12, "n_embd": 768, "vocab": 50257, "records": 32, "length": 256},
    "smoke": {"n_layer": 2, "n_embd": 64, "vocab": 500, "records": 8, "length": 32},
}
PREFIX_TOKENS = 256
BATCH = 16


def best_of(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = SHAPES["smoke" if args.smoke else "full"]
    model = random_gpt2(
        shape["n_layer"], shape["n_embd"], shape["vocab"], max(1, shape["n_embd"] // 64)
    )
    generator = torch.Generator().manual_seed(1)
    records = torch.randint(
        0, shape["vocab"], (shape["records"], shape["length"]), generator=generator
    )
    texts = records.tolist()
    shots = torch.randint(0, shape["vocab"], (3 * PREFIX_TOKENS,), generator=generator).tolist()
    prefix = shots[:PREFIX_TOKENS]  # 3 shots joined, cut to the default budget

    def plain() -> None:
        score_sequences(model, [ScoringRequest(t) for t in texts], "cpu", batch_size=BATCH)

    def conditioned() -> None:  # the prefix run once per call, as once per shard in the check
        state = encode_prefix(model, prefix, "cpu")
        prefix_logprobs(model, state, texts, "cpu", batch_size=BATCH)

    t_plain = best_of(plain, args.repeats)
    t_prefix = best_of(conditioned, args.repeats)
    ratio = (t_plain + t_prefix) / t_plain
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"model: GPT-2 {shape['n_layer']}x{shape['n_embd']}, vocab {shape['vocab']}, "
        f"{params:.0f}M params, CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"records: {shape['records']} x {shape['length']} tokens; prefix: 3 shots, "
        f"{PREFIX_TOKENS} tokens; batch {BATCH}; best of {args.repeats}"
    )
    print(f"plain pass            {t_plain:8.3f} s")
    print(f"prefix-conditioned    {t_prefix:8.3f} s")
    verdict = "ok" if ratio <= TARGET else "over target"
    print(f"recall_cost_ratio {ratio:.3f} (ReCaLL / plain pass; target <= {TARGET}) {verdict}")


if __name__ == "__main__":
    main()
