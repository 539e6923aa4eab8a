"""GPU bench of the LM engine (issue #31 item 5): throughput at 1B and 8B Llama shapes, and
whether the engine's bf16 greedy verdicts can be trusted.

    python3 bench/gpu_engine.py            # one H100/H200, under 4 minutes (bench/gpu_check.sh)
    python3 bench/gpu_engine.py --smoke    # every code path on CPU with tiny shapes, seconds

Models are random-initialised Llamas built on the device in bf16 (no download). For each
workload every variant runs in the same process, interleaved over 3 rounds after a warm-up, and
the median counts; the baseline is given in tok/s, the rest as a ratio to it (>1 is faster):

- baseline: HF batched `model(ids).logits`, `.float().log_softmax(-1)`, the targets gathered
  and copied to the host (as a user writes it);
- loss pass: `score_sequences` with plain ScoringRequests (log-probs: loss, zlib, Min-K%),
  through the fused Triton head where it applies (CUDA), and again with `fused=False` (the
  PyTorch head) so the kernel's own gain shows in the same run;
- + Min-K%++ moments (`moments=True`);
- + extraction statistics on the last 50 tokens, schemes greedy and top-k 40 at T=1;
- one text at a time: MIMIR's loop, a batch-1 HF forward and float log_softmax per text.

FLOPs count useful tokens only (no padding: every text of a workload has T tokens) and causal
attention. Per token:

    FLOPs/token = 2 * N_nonembedding + 2 * hidden * vocab + 2 * 2 * layers * hidden * (T + 1) / 2

N_nonembedding counts every parameter but the input embedding and the output head (a tied head
counted once, as the embedding): each is one multiply-add per token. The head matmul is
hidden * vocab multiply-adds, whether or not its weight is the embedding's. Attention adds two
matmuls (q·k over the context, then the weights times v), each 2 * hidden FLOPs per layer per
attended position; causal, token t attends to t positions, and the mean of 1..T is (T + 1) / 2.
TFLOP/s = FLOPs/token * tokens / seconds, against a bf16 matmul peak measured in the same run.

Then bench/gpu_verdicts.py checks the bf16 greedy verdicts of a model trained on canaries against
`generate()` and float32. Each section has a time budget and prints its elapsed time; a section
that would take the run past TOTAL_BUDGET_S is skipped with a message.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpu_verdicts import SMOKE_TASK, TASK, check_verdicts
from bench.lm_engine import sync
from worker.engine.schemes import GREEDY, Scheme
from worker.engine.scoring import ScoringRequest, score_sequences

# Llama 3.2 1B and Llama 3.1 8B, as the table.
SHAPES = {
    "1B": dict(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128_256,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    ),
    "8B": dict(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128_256,
        tie_word_embeddings=False,
        max_position_embeddings=4096,
    ),
}
# The same structure at a size a 2-core CPU runs in seconds (tied and untied heads both).
SMOKE_SHAPES = {
    "tiny 1B": SHAPES["1B"]
    | dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    | dict(intermediate_size=128, vocab_size=512, max_position_embeddings=256),
    "tiny 8B": SHAPES["8B"]
    | dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    | dict(intermediate_size=256, vocab_size=512, max_position_embeddings=256),
}

SUFFIX = 50  # extraction statistics over each text's last 50 tokens
EXTRACTION_SCHEMES = (GREEDY, Scheme(top_k=40))
COLUMNS = (
    "HF batched logits + float log_softmax (baseline)",
    "loss pass",
    "loss pass, PyTorch head (fused kernel off)",
    "+ Min-K%++ moments",
    "+ extraction stats (50-token suffix, greedy + top-k 40)",
    "one text at a time (MIMIR's loop)",
)
ROUNDS = 3
TOTAL_BUDGET_S = 225  # the whole script, imports and CUDA start included, stays under 4 minutes


@dataclass(frozen=True)
class Workload:
    shape: str
    n_texts: int
    length: int
    batch: int
    budget_s: float  # wall time allowed for the section, model build included

    @property
    def label(self) -> str:
        return f"{self.shape}, {self.n_texts} x {self.length:,}, batch {self.batch}"


WORKLOADS = (
    Workload("1B", 128, 512, 32, budget_s=45),
    Workload("1B", 16, 4096, 4, budget_s=35),
    Workload("8B", 64, 512, 16, budget_s=70),
)
SMOKE_WORKLOADS = (
    Workload("tiny 1B", 8, 64, 4, budget_s=10),
    Workload("tiny 1B", 2, 256, 1, budget_s=10),
    Workload("tiny 8B", 4, 64, 2, budget_s=10),
)


class Clock:
    """Elapsed time per section against a budget, so the whole run fits its time limit."""

    def __init__(self, total_s: float) -> None:
        self.start = time.perf_counter()
        self.total_s = total_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, budget_s: float) -> bool:
        return self.elapsed() + budget_s <= self.total_s

    @contextmanager
    def section(self, name: str, budget_s: float) -> Iterator[None]:
        begun = time.perf_counter()
        yield
        spent = time.perf_counter() - begun
        over = "  OVER BUDGET" if spent > budget_s else ""
        print(
            f"[time] {name}: {spent:.1f} s (budget {budget_s:.0f} s; "
            f"run so far {self.elapsed():.1f} s){over}",
            flush=True,
        )


def seconds(fn: Callable[[], object], device: str) -> float:
    sync(device)
    begun = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - begun


def build_llama(config: LlamaConfig, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    """Random-initialised, allocated and initialised directly on the device in `dtype`.

    Building under the device context skips a host copy; HF's own init then draws the weights
    there (meta + to_empty would leave the rotary buffers uninitialised).
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def llama_config(shape: dict) -> LlamaConfig:
    return LlamaConfig(**shape, attn_implementation="sdpa")


def nonembedding_params(model: torch.nn.Module) -> int:
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not embedding and p is not head)


def flop_terms(model: torch.nn.Module, length: int) -> dict[str, float]:
    """The docstring's formula, term by term: body, head matmul, causal attention."""
    config = model.config
    layers, hidden = config.num_hidden_layers, config.hidden_size
    return {
        "2 * N_nonembedding": 2 * nonembedding_params(model),
        "2 * hidden * vocab": 2 * hidden * config.vocab_size,
        "2 * 2 * layers * hidden * (T + 1) / 2": 2 * 2 * layers * hidden * (length + 1) / 2,
    }


def matmul_peak(device: str, dtype: torch.dtype, size: int) -> float:
    """TFLOP/s of a square matmul in `dtype`: median of 5 timings of 10 products each."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def ten_products() -> None:
        for _ in range(10):
            a @ b

    ten_products()  # warm-up: cuBLAS picks its kernel
    median = statistics.median(seconds(ten_products, device) for _ in range(5)) / 10
    return 2 * size**3 / median / 1e12


def random_texts(n: int, length: int, vocab: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (n, length), generator=generator)


def variants(model: torch.nn.Module, texts: torch.Tensor, batch: int, device: str) -> dict:
    """The columns, each a function that scores every text once."""
    ids = texts.to(device)
    rows = texts.tolist()
    length = texts.shape[1]
    detail = range(length - SUFFIX - 1, length - 1)  # TokenStats index j predicts token j + 1

    def target_logprobs(chunk: torch.Tensor) -> torch.Tensor:
        logprobs = model(chunk).logits.float().log_softmax(-1)  # (B, T, V)
        return logprobs[:, :-1].gather(-1, chunk[:, 1:, None]).squeeze(-1).cpu()

    def baseline() -> None:
        for start in range(0, len(ids), batch):
            target_logprobs(ids[start : start + batch])

    def one_text_at_a_time() -> None:
        for row in range(len(ids)):
            target_logprobs(ids[row : row + 1])

    def engine(
        requests: list[ScoringRequest], schemes: tuple[Scheme, ...] = (), fused: bool | None = None
    ) -> Callable:
        return lambda: score_sequences(
            model, requests, device, schemes=schemes, batch_size=batch, fused=fused
        )

    loss = [ScoringRequest(r) for r in rows]
    moments = [ScoringRequest(r, moments=True) for r in rows]
    extraction = [ScoringRequest(r, moments=True, detail_positions=detail) for r in rows]
    return dict(
        zip(
            COLUMNS,
            (
                baseline,
                engine(loss),
                engine(loss, fused=False),
                engine(moments),
                engine(extraction, EXTRACTION_SCHEMES),
                one_text_at_a_time,
            ),
            strict=True,
        )
    )


@torch.inference_mode()
def median_seconds(runs: dict[str, Callable], device: str) -> dict[str, float]:
    """One warm-up each, then ROUNDS interleaved rounds: drift hits every variant alike."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            times[name].append(seconds(run, device))
    return {name: statistics.median(values) for name, values in times.items()}


def table_row(workload: Workload, medians: dict[str, float], tflop: float, peak: float) -> str:
    """Baseline as tok/s, TFLOP/s and share of peak; every other column a ratio (share)."""
    tokens = workload.n_texts * workload.length
    base = medians[COLUMNS[0]]
    cells = [
        f"{tokens / base / 1e3:.1f}k tok/s, {tflop / base:.3g} TFLOP/s, "
        f"{tflop / base / peak:.0%} of peak"
    ]
    cells += [f"{base / medians[c]:.2f}x ({tflop / medians[c] / peak:.0%})" for c in COLUMNS[1:]]
    return "| " + " | ".join([workload.label, *cells]) + " |"


def bench_workload(model: torch.nn.Module, workload: Workload, device: str, peak: float) -> str:
    """The workload's table row; its FLOPs per token and raw medians printed on the way."""
    texts = random_texts(workload.n_texts, workload.length, model.config.vocab_size)
    medians = median_seconds(variants(model, texts, workload.batch, device), device)
    terms = flop_terms(model, workload.length)
    per_token = sum(terms.values())
    print(
        f"[{workload.label}] FLOPs/token = "
        + " + ".join(f"{value:.4g}" for value in terms.values())
        + f" = {per_token:.4g} ({' + '.join(terms)})",
        flush=True,
    )
    print(
        f"[{workload.label}] medians (s): "
        + ", ".join(f"{name.split(' (')[0]} {t:.3f}" for name, t in medians.items()),
        flush=True,
    )
    tflop = per_token * workload.n_texts * workload.length / 1e12
    return table_row(workload, medians, tflop, peak)


def check_heads_agree(model: torch.nn.Module, texts: torch.Tensor, batch: int, device: str) -> bool:
    """The fused head against the PyTorch head on one batch in the model's dtype: the
    differences of ℓ printed, and every greedy verdict outside both passes' fragile band
    (|margin| > tau, docs/numerics.md) must agree. Both round the logits to bf16; their
    matmuls sum in other orders, so a logit can land one bf16 step apart and ℓ with it;
    verdicts may differ only inside the band."""
    rows = texts[:batch].tolist()
    length = texts.shape[1]
    detail = range(length - SUFFIX - 1, length - 1)
    requests = [ScoringRequest(r, detail_positions=detail) for r in rows]
    try:
        fused = score_sequences(model, requests, device, schemes=EXTRACTION_SCHEMES, fused=True)
    except ValueError as exc:
        print(f"[heads] fused head not checked: {exc}", flush=True)
        return True
    plain = score_sequences(model, requests, device, schemes=EXTRACTION_SCHEMES, fused=False)
    gaps, disagree, outside = [], 0, 0
    for a, b in zip(fused, plain, strict=True):
        gaps.append(np.abs(a.logprobs - b.logprobs))
        span = slice(detail.start, detail.stop)
        differ = a.argmax_match[span] != b.argmax_match[span]
        clear = (np.abs(a.margins[span]) > a.margin_bounds[span]) & (
            np.abs(b.margins[span]) > b.margin_bounds[span]
        )
        disagree += int(differ.sum())
        outside += int((differ & clear).sum())
    gap = np.concatenate(gaps)
    print(
        f"[heads] fused vs PyTorch head: |Δℓ| max {gap.max():.3g}, mean {gap.mean():.3g}; "
        f"greedy verdicts differing {disagree}, outside the fragile band {outside}: "
        + ("PASS" if outside == 0 else "FAIL"),
        flush=True,
    )
    return outside == 0


def print_table(rows: list[str], peak: float, dtype: torch.dtype) -> None:
    dtype_name = str(dtype).removeprefix("torch.")
    print(f"\nthroughput ({dtype_name}; measured {dtype_name} matmul peak {peak:.3g} TFLOP/s;")
    print(f"medians of {ROUNDS} interleaved rounds; ratio to the baseline, share of peak):")
    print("| shape, texts x tokens | " + " | ".join(COLUMNS) + " |")
    print("| --- " * (len(COLUMNS) + 1) + "|")
    for row in rows:
        print(row)
    print(
        "FLOPs/token = 2 * N_nonembedding + 2 * hidden * vocab "
        "+ 2 * 2 * layers * hidden * (T + 1) / 2 (useful tokens, causal attention)\n",
        flush=True,
    )


def run_throughput(clock: Clock, smoke: bool, device: str, dtype: torch.dtype) -> bool:
    with clock.section("matmul peak", budget_s=10):
        peak = matmul_peak(device, dtype, size=256 if smoke else 8192)
    print(f"measured {dtype} matmul peak: {peak:.3g} TFLOP/s", flush=True)
    shapes, workloads = (SMOKE_SHAPES, SMOKE_WORKLOADS) if smoke else (SHAPES, WORKLOADS)
    rows: list[str] = []
    model, built = None, None
    checked: set[str] = set()
    agree = True
    for workload in workloads:
        if not clock.allows(workload.budget_s):
            print(f"[{workload.label}] skipped: it would pass the run's time budget", flush=True)
            continue
        with clock.section(workload.label, workload.budget_s):
            if built != workload.shape:
                model = None  # free the previous shape before allocating the next
                if device == "cuda":
                    torch.cuda.empty_cache()
                begun = time.perf_counter()
                model = build_llama(llama_config(shapes[workload.shape]), device, dtype)
                sync(device)
                built = workload.shape
                params = sum(p.numel() for p in model.parameters())
                print(
                    f"[{workload.shape}] random Llama, {params:,} parameters "
                    f"({nonembedding_params(model):,} non-embedding), built on {device} in "
                    f"{dtype} in {time.perf_counter() - begun:.1f} s",
                    flush=True,
                )
            rows.append(bench_workload(model, workload, device, peak))
            if workload.shape not in checked:
                checked.add(workload.shape)
                texts = random_texts(workload.batch, workload.length, model.config.vocab_size)
                agree = check_heads_agree(model, texts, workload.batch, device) and agree
    print_table(rows, peak, dtype)
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    if (
        args.smoke
    ):  # tiny shapes gain nothing from threads, and spin-waiting ones lose on a busy CPU
        torch.set_num_threads(1)
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible: run with --smoke for the CPU smoke run")
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}", flush=True)
    clock = Clock(TOTAL_BUDGET_S)
    ok = run_throughput(clock, args.smoke, device, torch.bfloat16)
    task = SMOKE_TASK if args.smoke else TASK
    if clock.allows(task.budget_s):
        with clock.section("verdicts", task.budget_s):
            ok = check_verdicts(task, device) and ok
    else:
        print("[verdicts] skipped: it would pass the run's time budget")
    print(f"total {clock.elapsed():.1f} s", flush=True)
    if not ok:
        sys.exit("FAILED: a verdict check above did not hold")


if __name__ == "__main__":
    main()
