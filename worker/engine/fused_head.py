"""Fused head statistics: METRICS.md §1-2 per position straight from hidden states, in Triton.

The output head is the costliest part of scoring a large-vocabulary model, mostly because
`head_stats.final_logits` materialises (N, V) float32 logits and then reads them several times.
Here the vocabulary is tiled as in cut-cross-entropy (Wijmans et al. 2024): a program takes a
block of positions and walks blocks of vocabulary, computing each (BLOCK_N, BLOCK_V) logit tile
with `tl.dot` in the inputs' dtype and float32 accumulation, and folds it into per-row state
(online max and sum-exp). Logits never leave the chip.

Why not depend on cut-cross-entropy (PyPI 25.1.1): its kernels return the loss / logsumexp (and
gradients) only. The audit needs more per row: Min-K%++ moments, the arg-max with its
lowest-id tie rule, the best other logit and its id, rank and tie counts, and the top-k
normaliser; each needs its own state inside the vocabulary loop, which its API does not expose.
We follow its tiling, not its code.

Two passes, both through `fused_head_kernels._logit_tile` with the same blocks, so the logits
of pass B are bitwise those of pass A:
- A, every row: target logit, max / sum-exp (hence ℓ_t and logsumexp), μ_t and σ_t (tiles
  merged with Chan's weighted combine, no E[y²] - E[y]² cancellation), the best logit other
  than the target with its lowest id (hence arg-max match and margin).
- B, only the row blocks holding detail rows: rank and ties against pass A's target logit and
  a running top-K buffer (K the next power of two above the largest k) of logits.
The vocabulary is cut into a few contiguous splits run as separate programs (parallelism when
N is small); the per-split states are merged here in float64, in split order, which keeps the
lowest-id rule. The top-k normaliser is then a float64 logsumexp over each row's K buffered
values, as `sampling._top_k_logprobs` does over its top-k.

Tolerances against `head_stats.final_logits` + `logprob_and_moments` + `detail_stats` +
`sampling.scheme_logprobs` (tests/worker/engine/test_fused_head.py, interpreter on CPU): float32
inputs: logprobs, logsumexp, mu, sigma and margins within 1e-5 abs, scheme log-probabilities
within 1e-5 abs; float16 inputs, against the float16 PyTorch head: 1e-3 abs.
Counts, ids and flags are exact where the logits are (the tests use exactly representable data).
A bf16 or fp16 head rounds its logits (and each post-processing step) to its dtype, and so does
the kernel (`_rounded`): both paths see the same logits up to the matmul's summation order, and
the same ties as `generate()`. The statistics over them are float32 (float64 across splits).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import torch

from worker.engine.schemes import Scheme

_KERNELS = "worker.engine.fused_head_kernels"


@dataclass(frozen=True)
class Tiles:
    """Block sizes (powers of two, >= 16 for `tl.dot`). Defaults are not tuned on a GPU yet."""

    block_n: int = 64  # positions per program
    block_v: int = 128  # vocabulary per tile; raised to the top-k buffer's K when smaller
    block_h: int = 64  # hidden size per `tl.dot`
    vocab_splits: int | None = None  # None: about 4 programs per SM on CUDA, 1 elsewhere
    num_warps: int = 8


def _kernels() -> ModuleType:
    return importlib.import_module(_KERNELS)


def fused_head_available(device: torch.device | str) -> bool:
    """Triton is importable and can run on `device`: CUDA, or anything in the interpreter."""
    if importlib.util.find_spec("triton") is None:
        return False
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available()
    # The interpreter is chosen when the kernels are decorated, i.e. at their import.
    module = sys.modules.get(_KERNELS)
    if module is not None:
        return module.INTERPRETED
    return os.environ.get("TRITON_INTERPRET") == "1"


def fusable(scheme: Scheme, vocab: int) -> bool:
    """A scheme the tiled pass decides: temperature then top-k, no nucleus."""
    return not scheme.greedy and 0 < scheme.top_k < vocab and scheme.top_p == 1


def _check_schemes(schemes: Sequence[Scheme], vocab: int) -> None:
    for scheme in schemes:
        if not fusable(scheme, vocab):
            raise ValueError(
                f"fused top-k needs T > 0, 0 < top_k < V and top_p == 1; got {scheme.name}"
            )


def _splits(tiles: Tiles, device: torch.device, n_row_blocks: int, n_vocab_tiles: int) -> int:
    if tiles.vocab_splits is not None:
        wanted = tiles.vocab_splits
    elif device.type == "cuda":
        programs = 4 * torch.cuda.get_device_properties(device).multi_processor_count
        wanted = math.ceil(programs / n_row_blocks)
    else:
        wanted = 1
    return max(1, min(wanted, n_vocab_tiles))


def fused_head_stats(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    logit_scale: float | None = None,
    softcap: float | None = None,
    moments: bool = False,
    detail: torch.Tensor | None = None,
    topk_schemes: Sequence[Scheme] = (),
    tiles: Tiles | None = None,
) -> dict[str, torch.Tensor]:
    """Per-position head statistics of z = post(scale·h·Wᵀ), without (N, V) logits.

    hidden (N, H) and weight (V, H) share a dtype; targets (N,) long; detail (N,) bool marks the
    rows that get ranks, ties and the top-k schemes. Returns float32 `logprobs`, `logsumexp`,
    `target_logit`, `margins`, bool `argmax_match`, long `best_other`; with `moments`, `mu` and
    `sigma`; and at
    detail rows (else -1 / NaN / False): int32 `ranks`, `ties`, and per scheme float64
    `scheme:<name>`, float32 `kth_margin:<name>`, bool `topk_ties:<name>`.
    """
    # Triton launches on the current CUDA device and its stream: make it the tensors' device
    # (a worker may own another GPU than cuda:0).
    on_device = torch.cuda.device(hidden.device) if hidden.is_cuda else contextlib.nullcontext()
    with on_device:
        return _stats(hidden, weight, targets, logit_scale, softcap, moments, detail,
                      topk_schemes, tiles or Tiles())  # fmt: skip


def _stats(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: float | None,
    softcap: float | None,
    moments: bool,
    detail: torch.Tensor | None,
    topk_schemes: Sequence[Scheme],
    tiles: Tiles,
) -> dict[str, torch.Tensor]:
    n, h_size = hidden.shape
    vocab = weight.shape[0]
    if weight.shape[1] != h_size or weight.dtype != hidden.dtype:
        raise ValueError("hidden (N, H) and weight (V, H) must share H and dtype")
    _check_schemes(topk_schemes, vocab)
    device = hidden.device
    kernels = _kernels()
    hidden = hidden.contiguous()
    weight = weight.contiguous()
    targets = targets.to(device=device, dtype=torch.long).contiguous()
    top_k = 1 << max((s.top_k for s in topk_schemes), default=1).bit_length()  # > every k
    block_v = max(tiles.block_v, top_k)
    n_blocks = math.ceil(n / tiles.block_n)
    n_vocab_tiles = math.ceil(vocab / block_v)
    splits = _splits(tiles, device, max(n_blocks, 1), n_vocab_tiles)
    split_size = math.ceil(n_vocab_tiles / splits) * block_v
    splits = math.ceil(vocab / split_size)  # every split holds at least one column
    common = dict(
        N=n,
        V=vocab,
        H=h_size,
        stride_hn=hidden.stride(0),
        stride_wv=weight.stride(0),
        split_size=split_size,
        scale=float(logit_scale or 1.0),
        softcap=float(softcap or 1.0),
        HAS_SCALE=logit_scale is not None and logit_scale != 1,
        HAS_SOFTCAP=bool(softcap),
        BLOCK_N=tiles.block_n,
        BLOCK_V=block_v,
        BLOCK_H=tiles.block_h,
        PRECISION="ieee" if hidden.dtype == torch.float32 else "tf32",
        ROUND=hidden.dtype != torch.float32,
        num_warps=tiles.num_warps,
    )

    stats = torch.empty((splits, 6, n), dtype=torch.float32, device=device)
    best_ids = torch.empty((splits, n), dtype=torch.int32, device=device)
    if n:
        kernels.head_stats_kernel[(n_blocks, splits)](
            hidden, weight, targets, stats, best_ids, MOMENTS=moments, **common
        )
    out = _merge_splits(stats, best_ids, targets, moments)

    if detail is not None:
        detail = detail.to(device=device, dtype=torch.bool)
        out.update(_detail(kernels, hidden, weight, targets, detail, out, topk_schemes, top_k,
                           splits, common))  # fmt: skip
    return out


def _merge_splits(
    stats: torch.Tensor, best_ids: torch.Tensor, targets: torch.Tensor, moments: bool
) -> dict[str, torch.Tensor]:
    """Combine the per-split states (S, ·, N) into per-row statistics, in float64."""
    run_max, run_sum, run_mean, run_var, target_split, best_split = stats.double().unbind(1)
    top = run_max.max(dim=0).values  # (N,)
    weights = run_sum * torch.exp(run_max - top)  # (S, N)
    total = weights.sum(dim=0)
    log_total = total.log()
    target_logit = target_split.max(dim=0).values
    best = best_split.max(dim=0).values
    # The first split reaching the best value holds its lowest id.
    first = (best_split == best).to(torch.int8).argmax(dim=0)
    best_other = best_ids.gather(0, first[None]).squeeze(0).long()
    out = {
        "logprobs": (target_logit - top - log_total).float(),
        "logsumexp": (top + log_total).float(),
        "target_logit": target_logit.float(),
        # arg-max = target iff it beats the best other, or ties it with a lower id (torch.argmax).
        "argmax_match": (target_logit > best) | ((target_logit == best) & (targets < best_other)),
        "margins": (target_logit - best).float(),
        "best_other": best_other,
    }
    if moments:
        mean_split = run_mean + (run_max - top)  # E_p[z] - max z, per split
        mean = (weights * mean_split).sum(dim=0) / total
        spread = run_var + (mean_split - mean).square()  # law of total variance
        out["mu"] = (mean - log_total).float()
        out["sigma"] = ((weights * spread).sum(dim=0) / total).sqrt().float()
    return out


def _detail(
    kernels: ModuleType,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    detail: torch.Tensor,
    base: dict[str, torch.Tensor],
    schemes: Sequence[Scheme],
    top_k: int,
    splits: int,
    common: dict,
) -> dict[str, torch.Tensor]:
    n = targets.shape[0]
    device = targets.device
    block_n = common["BLOCK_N"]
    rows = detail.nonzero().squeeze(-1)  # (D,)
    blocks = torch.unique(rows // block_n).to(torch.int32)  # (B,)
    out: dict[str, torch.Tensor] = {
        "ranks": torch.full((n,), -1, dtype=torch.int32, device=device),
        "ties": torch.full((n,), -1, dtype=torch.int32, device=device),
    }
    for scheme in schemes:
        out[f"scheme:{scheme.name}"] = torch.full(
            (n,), math.nan, dtype=torch.float64, device=device
        )
        out[f"kth_margin:{scheme.name}"] = torch.full((n,), math.nan, device=device)
        out[f"topk_ties:{scheme.name}"] = torch.zeros(n, dtype=torch.bool, device=device)
    if not rows.numel():
        return out

    n_out = blocks.numel() * block_n
    counts = torch.empty((splits, 2, n_out), dtype=torch.int32, device=device)
    top = torch.empty((splits, n_out, top_k) if schemes else (1,), device=device)
    kernels.detail_kernel[(blocks.numel(), splits)](
        hidden, weight, targets, base["target_logit"], blocks, counts, top,
        HAS_TOP=bool(schemes), TOP_K=top_k, **common,
    )  # fmt: skip
    # Row r sits at slot (position of its block in `blocks`) * block_n + r % block_n.
    slot_of_block = torch.searchsorted(blocks.long(), rows // block_n)
    out_rows = slot_of_block * block_n + rows % block_n
    counts = counts.sum(dim=0, dtype=torch.int32)[:, out_rows]  # (2, D)
    out["ranks"][rows] = 1 + counts[0]
    out["ties"][rows] = counts[1]
    if schemes:
        merged = top[:, out_rows].permute(1, 0, 2).reshape(rows.numel(), -1)
        buffer = merged.topk(top_k, dim=-1).values  # (D, K), descending
        target = base["target_logit"][rows]
        for scheme in schemes:
            logp, kth_margin, ties = _top_k_from_buffer(buffer, target, scheme)
            out[f"scheme:{scheme.name}"][rows] = logp
            out[f"kth_margin:{scheme.name}"][rows] = kth_margin
            out[f"topk_ties:{scheme.name}"][rows] = ties
    return out


def _top_k_from_buffer(
    buffer: torch.Tensor, target: torch.Tensor, scheme: Scheme
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p̃(target) under temperature then top-k (METRICS.md §2.3) from the K largest logits.

    Every logit tied with the k-th stays (HF). Those ties are all in the buffer unless its last
    value still equals the k-th; such kept targets get NaN and the `topk_ties` flag.
    """
    k = scheme.top_k
    kth = buffer[:, k - 1]
    kept = target >= kth
    incomplete = kept & (buffer[:, -1] == kth)
    scaled = (buffer.double() / scheme.temperature).masked_fill(buffer < kth[:, None], -math.inf)
    logp = target.double() / scheme.temperature - torch.logsumexp(scaled, dim=-1)
    logp = logp.masked_fill(~kept, -math.inf).masked_fill(incomplete, math.nan)
    kth_margin = target - torch.where(kept, buffer[:, k], kth)
    return logp, kth_margin, incomplete
