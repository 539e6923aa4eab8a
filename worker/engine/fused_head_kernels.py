"""Triton kernels behind `fused_head`: the head matmul tile by tile, reduced to per-row state.

Imported lazily by `fused_head` (Triton is optional on CPU workers). `TRITON_INTERPRET=1` must be
set before this module is imported for the kernels to run on CPU in Triton's interpreter.

Both kernels get their logits from the one helper `_logit_tile`, with the same block sizes and
row blocks, so the detail pass compares the very float32 values the statistics pass reduced.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # From exp, which every backend (and the interpreter) has; exp(-2|x|) cannot overflow.
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _logit_tile(
    h_ptr,
    w_ptr,
    rows,
    row_ok,
    v0,
    V,
    H,
    stride_hn,
    stride_wv,
    scale,
    softcap,
    HAS_SCALE: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    ROUND: tl.constexpr,
):
    """z = softcap·tanh(scale·(h·Wᵀ)/softcap) for one (BLOCK_N, BLOCK_V) tile; -inf past V.

    The products accumulate in float32; with ROUND (bf16 and fp16 inputs) every step's result
    is rounded to the inputs' dtype as the PyTorch head computes it, so both paths see the same
    logits (up to the matmul's summation order) and the same ties as `generate()`."""
    cols = v0 + tl.arange(0, BLOCK_V)
    col_ok = cols < V
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_H):
        ks = k0 + tl.arange(0, BLOCK_H)
        k_ok = ks < H
        h = tl.load(
            h_ptr + rows.to(tl.int64)[:, None] * stride_hn + ks[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )  # (BLOCK_N, BLOCK_H), the inputs' dtype
        w = tl.load(
            w_ptr + cols.to(tl.int64)[:, None] * stride_wv + ks[None, :],
            mask=col_ok[:, None] & k_ok[None, :],
            other=0.0,
        )  # (BLOCK_V, BLOCK_H)
        acc = tl.dot(h, tl.trans(w), acc, input_precision=PRECISION)  # float32 accumulation
    if HAS_SCALE:
        acc = _rounded(_rounded(acc, h_ptr, ROUND) * scale, h_ptr, ROUND)
    if HAS_SOFTCAP:
        capped = _rounded(_tanh(_rounded(acc / softcap, h_ptr, ROUND)), h_ptr, ROUND)
        acc = softcap * capped
    acc = _rounded(acc, h_ptr, ROUND)
    return tl.where(col_ok[None, :], acc, float("-inf")), cols


@triton.jit
def _rounded(x, h_ptr, ROUND: tl.constexpr):
    """x rounded to the inputs' dtype and back, where the model's head would round it: a bf16 or
    fp16 head returns logits in its dtype, and its post-processing computes in that dtype."""
    if ROUND:
        x = x.to(h_ptr.dtype.element_ty).to(tl.float32)
    return x


@triton.jit
def head_stats_kernel(
    h_ptr,
    w_ptr,
    targets_ptr,
    stats_ptr,  # (S, 6, N) float32: max, sum-exp, mean, variance, target logit, best other
    best_id_ptr,  # (S, N) int32: id of the best other logit
    N,
    V,
    H,
    stride_hn,
    stride_wv,
    split_size,
    scale,
    softcap,
    HAS_SCALE: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    MOMENTS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    ROUND: tl.constexpr,
):
    """Pass A: per row and vocabulary split, the online max / sum-exp, the moments of
    y = z - max under p, the target logit and the best other logit with its lowest id."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    split = tl.program_id(1)
    row_ok = rows < N
    targets = tl.load(targets_ptr + rows, mask=row_ok, other=-1)
    run_max = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_N,), tl.float32)
    run_mean = tl.zeros((BLOCK_N,), tl.float32)  # E_p[z] - run_max
    run_var = tl.zeros((BLOCK_N,), tl.float32)
    target_logit = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    best = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    best_id = tl.full((BLOCK_N,), -1, tl.int32)
    v_start = split * split_size
    v_stop = tl.minimum(v_start + split_size, V)
    for v0 in range(v_start, v_stop, BLOCK_V):
        z, cols = _logit_tile(
            h_ptr, w_ptr, rows, row_ok, v0, V, H, stride_hn, stride_wv, scale, softcap,
            HAS_SCALE, HAS_SOFTCAP, BLOCK_N, BLOCK_V, BLOCK_H, PRECISION, ROUND,
        )  # fmt: skip
        is_target = cols[None, :] == targets[:, None]
        target_logit = tl.maximum(target_logit, tl.max(tl.where(is_target, z, float("-inf")), 1))
        # Tiles arrive in increasing id order: a strict > keeps the lowest id among ties.
        tile_best, tile_arg = tl.max(
            tl.where(is_target, float("-inf"), z),
            axis=1,
            return_indices=True,
            return_indices_tie_break_left=True,
        )
        better = tile_best > best
        best_id = tl.where(better, v0 + tile_arg, best_id)
        best = tl.where(better, tile_best, best)

        new_max = tl.maximum(run_max, tl.max(z, 1))
        weights = tl.exp(z - new_max[:, None])  # 0 past V
        tile_sum = tl.sum(weights, 1)
        old_sum = run_sum * tl.exp(run_max - new_max)
        if MOMENTS:
            # Chan's weighted combine of (weight, mean, variance): no E[y²] - E[y]² anywhere.
            # Both shares are divided out directly: 1 - share rounds to 0 when a tile raises
            # the max far above the old one, and would drop the old part's spread.
            col_ok = (cols < V)[None, :]
            y = tl.where(col_ok, z - new_max[:, None], 0.0)
            tile_mean = tl.sum(weights * y, 1) / tile_sum
            centred = tl.where(col_ok, y - tile_mean[:, None], 0.0)
            tile_var = tl.sum(weights * centred * centred, 1) / tile_sum
            old_mean = tl.where(old_sum > 0, run_mean + (run_max - new_max), 0.0)
            old_share = old_sum / (old_sum + tile_sum)
            share = tile_sum / (old_sum + tile_sum)
            delta = tile_mean - old_mean
            run_mean = old_share * old_mean + share * tile_mean
            run_var = old_share * run_var + share * tile_var + old_share * share * delta * delta
        run_sum = old_sum + tile_sum
        run_max = new_max

    out = stats_ptr + split * 6 * N + rows
    tl.store(out, run_max, mask=row_ok)
    tl.store(out + N, run_sum, mask=row_ok)
    tl.store(out + 2 * N, run_mean, mask=row_ok)
    tl.store(out + 3 * N, run_var, mask=row_ok)
    tl.store(out + 4 * N, target_logit, mask=row_ok)
    tl.store(out + 5 * N, best, mask=row_ok)
    tl.store(best_id_ptr + split * N + rows, best_id, mask=row_ok)


@triton.jit
def detail_kernel(
    h_ptr,
    w_ptr,
    targets_ptr,
    target_logit_ptr,  # (N,) float32 from pass A
    blocks_ptr,  # (B,) int32: the row blocks holding a detail row
    counts_ptr,  # (S, 2, B * BLOCK_N) int32: #{z > z_t}, #{v != t: z == z_t}
    top_ptr,  # (S, B * BLOCK_N, TOP_K) float32, descending
    N,
    V,
    H,
    stride_hn,
    stride_wv,
    split_size,
    scale,
    softcap,
    HAS_SCALE: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    HAS_TOP: tl.constexpr,  # whether any scheme needs the top-k buffer
    TOP_K: tl.constexpr,  # a power of two <= BLOCK_V
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_H: tl.constexpr,
    PRECISION: tl.constexpr,
    ROUND: tl.constexpr,
):
    """Pass B, over the row blocks of pass A that hold detail rows: rank and tie counts
    against pass A's target logit, and each row's TOP_K largest logits."""
    slot = tl.program_id(0)
    split = tl.program_id(1)
    n_out = tl.num_programs(0) * BLOCK_N
    rows = tl.load(blocks_ptr + slot) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    targets = tl.load(targets_ptr + rows, mask=row_ok, other=-1)
    target_logit = tl.load(target_logit_ptr + rows, mask=row_ok, other=0.0)
    n_above = tl.zeros((BLOCK_N,), tl.int32)
    n_tied = tl.zeros((BLOCK_N,), tl.int32)
    top = tl.full((BLOCK_N, TOP_K), float("-inf"), tl.float32)
    v_start = split * split_size
    v_stop = tl.minimum(v_start + split_size, V)
    for v0 in range(v_start, v_stop, BLOCK_V):
        z, cols = _logit_tile(
            h_ptr, w_ptr, rows, row_ok, v0, V, H, stride_hn, stride_wv, scale, softcap,
            HAS_SCALE, HAS_SOFTCAP, BLOCK_N, BLOCK_V, BLOCK_H, PRECISION, ROUND,
        )  # fmt: skip
        n_above += tl.sum((z > target_logit[:, None]).to(tl.int32), 1)
        tied = (z == target_logit[:, None]) & (cols[None, :] != targets[:, None])
        n_tied += tl.sum(tied.to(tl.int32), 1)
        if HAS_TOP:
            # One sort per tile: the buffer against the tile itself, or against its top K.
            if BLOCK_V == TOP_K:  # noqa: SIM108 (a static if, resolved at compile time)
                candidates = z
            else:
                candidates = tl.topk(z, TOP_K)
            top = tl.topk(tl.reshape(tl.join(top, candidates), (BLOCK_N, 2 * TOP_K)), TOP_K)

    out_rows = slot * BLOCK_N + tl.arange(0, BLOCK_N)
    counts = counts_ptr + split * 2 * n_out + out_rows
    tl.store(counts, n_above)
    tl.store(counts + n_out, n_tied)
    if HAS_TOP:
        ks = tl.arange(0, TOP_K)
        tl.store(top_ptr + (split * n_out + out_rows)[:, None] * TOP_K + ks[None, :], top)


# Whether `triton.jit` above chose the interpreter (it reads TRITON_INTERPRET at decoration).
INTERPRETED = type(head_stats_kernel).__name__ == "InterpretedFunction"
