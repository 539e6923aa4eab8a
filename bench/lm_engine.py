"""Benchmark of the LM engine, each figure a ratio against a baseline measured in this run.

    python bench/lm_engine.py            # CPU (and the GPU too when one is visible)
    python bench/lm_engine.py --quick    # fewer sequences, for a smoke run

Prints:
  1. scoring-pass throughput / bare model(input_ids) forward throughput (target >= 0.85);
  2. greedy extraction: generate()-based time / teacher-forced time, verdicts compared;
  3. (n,p)-extraction: Monte Carlo (1000 samples per sequence) time / exact time;
  4. peak RSS streaming 1k vs 100k sequences (must stay within 10%).
Models are random-initialised GPT-2s built here (no download); >= 10M parameters.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.engine.extraction import window_values
from worker.engine.schemes import GREEDY, Scheme
from worker.engine.scoring import ScoringRequest, score_sequences

VOCAB = 32000


def build_model(
    device: str, n_layer: int = 6, n_embd: int = 512, vocab: int = VOCAB
) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=512, n_embd=n_embd, n_layer=n_layer, n_head=8)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int = 3, warm_up: bool = True) -> float:  # type: ignore[no-untyped-def]
    if warm_up:
        fn()
        sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def random_sequences(n: int, length: int, seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, length), generator=generator).tolist()


def bench_throughput(model, device: str, n: int, length: int, batch: int) -> None:  # type: ignore[no-untyped-def]
    sequences = random_sequences(n, length)
    tokens = n * (length - 1)

    @torch.inference_mode()
    def bare() -> None:
        for i in range(0, n, batch):
            ids = torch.tensor(sequences[i : i + batch], device=device)
            model(input_ids=ids).logits.float()

    loss_pass = [ScoringRequest(seq) for seq in sequences]
    membership_pass = [ScoringRequest(seq, moments=True) for seq in sequences]
    extraction_pass = [
        ScoringRequest(seq, detail_positions=range(length - 51, length - 1), moments=True)
        for seq in sequences
    ]
    schemes = [GREEDY, Scheme(top_k=40)]
    variants = {
        "loss, zlib, Min-K% (log-probs)": (loss_pass, []),
        "+ Min-K%++ (full-vocabulary moments)": (membership_pass, []),
        "+ extraction (rank, greedy, top-k 40 on a 50-token suffix)": (extraction_pass, schemes),
    }
    runs = {"bare": bare} | {
        label: (
            lambda r=requests, s=used: score_sequences(
                model, r, device, schemes=s, batch_size=batch
            )
        )
        for label, (requests, used) in variants.items()
    }
    # Interleaved rounds and medians: this machine's speed drifts, and drift hits every
    # variant alike instead of whichever happened to run during a slow spell.
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(5):
        for name, run in runs.items():
            times[name].append(timed(run, device, repeats=1))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"[{device}] bare forward: {tokens / median['bare']:,.0f} tok/s ({n} x {length} tokens)")
    for label in variants:
        print(
            f"[{device}] scoring pass, {label}: {tokens / median[label]:,.0f} tok/s -> ratio "
            f"{median['bare'] / median[label]:.3f} (target >= 0.85)"
        )


@torch.inference_mode()
def bench_greedy(model, device: str, n: int, batch: int) -> None:  # type: ignore[no-untyped-def]
    prefix, suffix = 50, 50
    sequences = random_sequences(n, prefix + suffix, seed=2)

    def greedy(prefixes: list[list[int]]) -> torch.Tensor:
        ids = torch.tensor(prefixes, device=device)
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=suffix,
            min_new_tokens=suffix,
            pad_token_id=0,
        )

    # Make half the sequences the model's own greedy continuation, so both verdicts occur.
    for i in range(0, n, 2):
        sequences[i] = greedy([sequences[i][:prefix]])[0].tolist()

    def by_generate() -> list[bool]:
        verdicts = []
        for i in range(0, n, batch):
            out = greedy([s[:prefix] for s in sequences[i : i + batch]])
            truth = torch.tensor([s[prefix:] for s in sequences[i : i + batch]], device=device)
            verdicts += (out[:, prefix:] == truth).all(dim=1).tolist()
        return verdicts

    def by_forward() -> list[bool]:
        requests = [
            ScoringRequest(s, detail_positions=range(prefix - 1, prefix + suffix - 1))
            for s in sequences
        ]
        stats = score_sequences(model, requests, device, schemes=[GREEDY], batch_size=batch)
        return [window_values(s, prefix - 1, suffix, ["greedy"])["greedy_extracted"] for s in stats]

    same = by_generate() == by_forward()
    t_gen, t_ours = timed(by_generate, device, 1, False), timed(by_forward, device, 1)
    print(
        f"[{device}] greedy extraction, {n} sequences: generate() {t_gen:.2f}s vs one pass "
        f"{t_ours:.2f}s -> {t_gen / t_ours:.1f}x faster; identical verdicts: {same}"
    )


@torch.inference_mode()
def bench_sampling(model, device: str, n: int, samples: int = 1000) -> None:  # type: ignore[no-untyped-def]
    prefix, suffix = 50, 50
    sequences = random_sequences(n, prefix + suffix, seed=3)
    scheme = Scheme(top_k=40)

    def monte_carlo() -> None:
        for s in sequences:
            ids = torch.tensor([s[:prefix]], device=device)
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=40,
                temperature=1.0,
                max_new_tokens=suffix,
                min_new_tokens=suffix,
                num_return_sequences=samples,
                pad_token_id=0,
            )

    def exact() -> None:
        requests = [
            ScoringRequest(s, detail_positions=range(prefix - 1, prefix + suffix - 1))
            for s in sequences
        ]
        score_sequences(model, requests, device, schemes=[scheme], batch_size=8)

    t_mc, t_ours = timed(monte_carlo, device, 1, False), timed(exact, device, 1)
    print(
        f"[{device}] (n,p)-extraction, {n} sequences: Monte Carlo with {samples} samples each "
        f"{t_mc:.2f}s vs exact {t_ours:.3f}s -> {t_mc / t_ours:.0f}x faster (and exact)"
    )


def matmul_peak(device: str, size: int = 8192) -> float:
    """Measured bf16 matrix-product throughput (TFLOP/s): the ceiling to compare against."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    seconds = timed(lambda: [a @ b for _ in range(10)], device) / 10
    return 2 * size**3 / seconds / 1e12


@torch.inference_mode()
def bench_gpu_fraction(device: str) -> None:
    """Model FLOP/s of the bare forward and of the scoring pass, as a fraction of bf16 peak."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50304, n_positions=1024, n_embd=1024, n_layer=24, n_head=16)
    model = GPT2LMHeadModel(config).to(device=device, dtype=torch.bfloat16).eval()
    n, length, batch = 64, 512, 16
    sequences = random_sequences(n, length, seed=5)
    params = sum(p.numel() for p in model.parameters())
    # Dense FLOPs per token: 2 per weight (the tied head counted once more) + attention scores.
    per_token = 2 * (params + 50304 * 1024) + 4 * 24 * length * 1024
    flops = per_token * n * length

    def bare() -> None:
        for i in range(0, n, batch):
            ids = torch.tensor(sequences[i : i + batch], device=device)
            model(input_ids=ids).logits.float()

    requests = [ScoringRequest(seq, moments=True) for seq in sequences]
    peak = matmul_peak(device)
    t_bare = timed(bare, device)
    t_ours = timed(lambda: score_sequences(model, requests, device, batch_size=batch), device)
    print(f"[{device}] bf16 matmul peak measured: {peak:.0f} TFLOP/s")
    print(
        f"[{device}] {params / 1e6:.0f}M-parameter GPT-2, {n} x {length} tokens: bare forward "
        f"{flops / t_bare / 1e12:.0f} TFLOP/s ({flops / t_bare / 1e12 / peak:.1%} of peak); "
        f"scoring pass {flops / t_ours / 1e12:.0f} TFLOP/s "
        f"({flops / t_ours / 1e12 / peak:.1%} of peak); ratio {t_bare / t_ours:.3f}"
    )


def rss_child(n: int, path: str) -> None:
    """Stream n records from a JSONL file through loader and engine; keep nothing."""
    from core.inspection.datasets import iter_records
    from worker.engine.batching import plan_batches

    model = build_model("cpu", n_layer=2, n_embd=128, vocab=1000)
    pending: list[list[int]] = []
    for record in iter_records(Path(path), 0, n):
        pending.append(record.data["ids"])
        if len(pending) == 256:
            for batch in plan_batches([len(p) for p in pending], 64):
                score_sequences(
                    model, [ScoringRequest(pending[i]) for i in batch], "cpu", batch_size=64
                )
            pending.clear()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def bench_rss(quick: bool) -> None:
    sizes = (1_000, 10_000) if quick else (1_000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.jsonl"
        generator = torch.Generator().manual_seed(4)
        with path.open("w") as out:
            for _ in range(sizes[1]):
                ids = torch.randint(0, 1000, (24,), generator=generator).tolist()
                out.write(json.dumps({"ids": ids}) + "\n")
        peaks = []
        for n in sizes:
            result = subprocess.run(
                [sys.executable, __file__, "--rss-child", str(n), str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks.append(int(result.stdout.strip().splitlines()[-1]))
    growth = peaks[1] / peaks[0] - 1
    print(
        f"[cpu] peak RSS streaming {sizes[0]:,} vs {sizes[1]:,} sequences: "
        f"{peaks[0] / 1024:.0f} MiB vs {peaks[1] / 1024:.0f} MiB -> {growth:+.1%} "
        f"(must stay within 10%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rss-child", nargs=2, metavar=("N", "PATH"))
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument(
        "--gpu-peak",
        action="store_true",
        help="also report the fraction of the GPU's bf16 matmul peak",
    )
    args = parser.parse_args()
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1])
        return
    torch.set_grad_enabled(False)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.device != "all":
        devices = [args.device]
    for device in devices:
        model = build_model(device)
        params = sum(p.numel() for p in model.parameters())
        print(f"[{device}] random GPT-2: {params / 1e6:.1f}M parameters, vocabulary {VOCAB}")
        big = device == "cuda"
        bench_throughput(
            model,
            device,
            n=64 if big else (8 if args.quick else 32),
            length=256,
            batch=32 if big else 8,
        )
        bench_greedy(
            model, device, n=64 if big else (8 if args.quick else 32), batch=32 if big else 8
        )
        bench_sampling(model, device, n=4 if big else (1 if args.quick else 2))
        if device == "cpu":
            bench_rss(args.quick)
        elif args.gpu_peak:
            bench_gpu_fraction(device)


if __name__ == "__main__":
    main()
