"""The output head's statistics per scored position (METRICS.md §1-2), by one of two paths.

- PyTorch, the CPU path and the reference: float32 logits for a chunk of positions at a
  time, within a memory budget, read by a few vectorised passes.
- Fused, on CUDA (`fused_head.py`): the vocabulary tiled in Triton, no (N, V) logits. The rows
  a tiled pass cannot decide (top-p and temperature-only schemes; top-k ties beyond its buffer)
  then go through the PyTorch path, their logits materialised for those rows only.

Both fill the same columns, kept on the head's device until the batch is done, so a batch
costs one copy to the host rather than one per chunk. Rank, ties, arg-max match, margin, its
rounding bound (docs/numerics.md) and the schemes' p̃ are filled at detail rows only.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worker.engine.fused_head import fusable, fused_head_available, fused_head_stats
from worker.engine.numeric_error import margin_bound
from worker.engine.sampling import scheme_logprobs
from worker.engine.schemes import Scheme


@dataclass(frozen=True)
class HeadInput:
    hidden: torch.Tensor  # (N, H) on the head's device, as the head reads it
    targets: torch.Tensor  # (N,) long, same device
    moments: np.ndarray  # (N,) bool: rows whose μ and σ are wanted
    detail: np.ndarray  # (N,) bool: rows that get rank, margin and the schemes
    schemes: Sequence[Scheme]
    compute_dtype: torch.dtype | None  # the dtype the logits are formed in (bounds)


def final_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The output head, with the logit post-processing some architectures apply."""
    logits = model.get_output_embeddings()(hidden)
    scale, cap = _post_processing(model)
    if scale is not None:
        logits = logits * scale
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()  # fp32 softmax even when the model runs in bf16


def _post_processing(model: torch.nn.Module) -> tuple[float | None, float | None]:
    """(logit scale or None, final soft-cap or None) from the model's config."""
    config = model.config
    scale = getattr(config, "logit_scale", None)
    cap = getattr(config, "final_logit_softcapping", None)
    keep_scale = isinstance(scale, int | float) and scale != 1
    return (float(scale) if keep_scale else None), (float(cap) if cap else None)


def logprob_and_moments(
    logits: torch.Tensor, targets: torch.Tensor, moments: bool
) -> dict[str, torch.Tensor]:
    """ℓ_t, and optionally μ_t = Σ p log p and σ_t, in few passes over (C, V) logits.

    Works in place on `logits` (the caller's copy is consumed): on CPU, fresh (C, V) buffers
    cost as much as the arithmetic. With y = z - max z: log p = y - log Σe^y, so
    μ = E_p[y] - log Σe^y and σ² = E_p[(y - E_p y)²]; the centred second pass avoids the
    cancellation of E[y²] - E[y]² in float32. Sums along the vocabulary use float32 pairwise
    summation; sums along a text use float64.
    """
    shifted = logits.sub_(logits.max(dim=-1, keepdim=True).values)  # y <= 0, (C, V)
    target_shifted = shifted.gather(-1, targets[:, None]).squeeze(-1)
    if not moments:
        log_total = shifted.exp_().sum(dim=-1).log()
        return {"logprobs": target_shifted - log_total}
    weights = shifted.exp()  # unnormalized p
    total = weights.sum(dim=-1)
    log_total = total.log()
    mean_shifted = (weights * shifted).sum(dim=-1) / total
    variance = shifted.sub_(mean_shifted[:, None]).square_().mul_(weights).sum(dim=-1) / total
    return {
        "logprobs": target_shifted - log_total,
        "mu": mean_shifted - log_total,
        "sigma": variance.sqrt(),
    }


def detail_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rank, ties, arg-max match and margin of the true token, and the best other token's id.
    logits (C, V)."""
    target_logit = logits.gather(-1, targets[:, None])  # (C, 1)
    top2 = torch.topk(logits, 2, dim=-1)
    target_first = top2.indices[:, 0] == targets
    best_other = torch.where(target_first, top2.values[:, 1], top2.values[:, 0])
    return {
        "ranks": 1 + (logits > target_logit).sum(dim=-1, dtype=torch.int32),
        "ties": (logits == target_logit).sum(dim=-1, dtype=torch.int32) - 1,
        # torch.argmax picks the lowest id among tied maxima, as HF greedy decoding does.
        "argmax_match": logits.argmax(dim=-1) == targets,
        "margins": target_logit.squeeze(-1) - best_other,
        "best_other": torch.where(target_first, top2.indices[:, 1], top2.indices[:, 0]),
    }


def kth_other(
    logits: torch.Tensor, targets: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Id of the k-th largest logit among the tokens other than the target: top-k keeps the
    target iff it is not below it, so it is the boundary that decides membership (the k+1-th
    largest when the target is kept, the k-th when not). logits (C, V), k < V. Also returns
    the k+1 largest logits, which the top-k probabilities reuse."""
    top = torch.topk(logits, k + 1, dim=-1)  # (C, k+1), descending
    kept = (top.indices[:, :k] == targets[:, None]).any(dim=-1)
    return torch.where(kept, top.indices[:, k], top.indices[:, k - 1]), top.values


def margin_bounds(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    ids_a: torch.Tensor,
    ids_b: torch.Tensor | None,
    compute_dtype: torch.dtype | None,
) -> torch.Tensor:
    """tau of docs/numerics.md for the margin z_a - z_b of tokens ids_a and ids_b, on device.

    hidden (C, H) as the head reads it. Where the other token is not known (`ids_b` None: the
    fused top-k boundary), the largest row norm stands in for ||w_b|| and the triangle
    inequality ||w_a|| + max ||w|| for ||w_a - w_b||, which can only widen tau.
    """
    weight = model.get_output_embeddings().weight  # (V, H)
    rows_a = weight[ids_a.to(weight.device)].float()  # (C, H)
    norm_a = rows_a.norm(dim=-1)
    if ids_b is None:
        largest = largest_row_norm(weight).expand_as(norm_a)
        norm_b, norm_diff = largest, norm_a + largest
    else:
        rows_b = weight[ids_b.to(weight.device)].float()
        norm_b, norm_diff = rows_b.norm(dim=-1), (rows_a - rows_b).norm(dim=-1)
    scale, _ = _post_processing(model)
    return margin_bound(
        z_a=z_a,
        z_b=z_b,
        hidden_norm=hidden.float().norm(dim=-1),
        norm_a=norm_a,
        norm_b=norm_b,
        norm_diff=norm_diff,
        dtype=compute_dtype or weight.dtype,
        n_layers=int(getattr(model.config, "num_hidden_layers", 0) or 0),
        logit_scale=scale or 1.0,
    )


# Keyed by the weight's storage, version (bumped by in-place writes) and shape; a few models.
_LARGEST_ROW_NORM: OrderedDict[tuple, torch.Tensor] = OrderedDict()
ROW_NORM_CHUNK = 8192  # rows upcast at a time: a float32 copy of the whole head could be GBs


def largest_row_norm(weight: torch.Tensor) -> torch.Tensor:
    """max_v ||w_v|| of a head weight (V, H), once per weight, in chunks of rows."""
    key = (weight.device, weight.data_ptr(), weight._version, tuple(weight.shape))
    found = _LARGEST_ROW_NORM.get(key)
    if found is None:
        found = torch.stack(
            [
                weight[start : start + ROW_NORM_CHUNK].float().norm(dim=-1).max()
                for start in range(0, weight.shape[0], ROW_NORM_CHUNK)
            ]
        ).max()
        _LARGEST_ROW_NORM[key] = found
        while len(_LARGEST_ROW_NORM) > 8:
            _LARGEST_ROW_NORM.popitem(last=False)
    return found


def empty_columns(
    n: int, schemes: Sequence[Scheme], vocab: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Every column of a batch, on the head's device: NaN / -1 / False where not computed."""

    def full(value: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        return torch.full((n,), value, dtype=dtype, device=device)

    columns = {
        "logprobs": full(0.0),
        "mu": full(math.nan),
        "sigma": full(math.nan),
        "ranks": full(-1, torch.int64),
        "ties": full(-1, torch.int64),
        "argmax_match": full(False, torch.bool),
        "margins": full(math.nan),
        "margin_bounds": full(math.nan),
    }
    for scheme in schemes:
        columns[f"scheme:{scheme.name}"] = full(math.nan)
        columns[f"fragile:{scheme.name}"] = full(False, torch.bool)
        if _has_top_k(scheme, vocab):
            columns[f"kth:{scheme.name}"] = full(math.nan)
            columns[f"kth_bound:{scheme.name}"] = full(math.nan)
    return columns


def _has_top_k(scheme: Scheme, vocab: int) -> bool:
    return not scheme.greedy and 0 < scheme.top_k < vocab


def torch_head(
    model: torch.nn.Module, head: HeadInput, columns: dict[str, torch.Tensor], chunk: int
) -> None:
    """Fill `columns` chunk by chunk from float32 logits (the reference path)."""
    device = head.hidden.device
    total = head.targets.shape[0]
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        logits = final_logits(model, head.hidden[start:stop])  # (C, V)
        targets = head.targets[start:stop]
        picked = np.flatnonzero(head.detail[start:stop])  # on the host: no device sync
        if picked.size:  # before the in-place statistics below consume the logits
            local = torch.from_numpy(picked).to(device)
            _detail_rows(
                model,
                logits[local],
                targets[local],
                head.hidden[start:stop][local],
                local + start,
                head.schemes,
                head.compute_dtype,
                columns,
            )
        base = logprob_and_moments(logits, targets, bool(head.moments[start:stop].any()))
        for name, value in base.items():
            columns[name][start:stop] = value.double()


def _detail_rows(
    model: torch.nn.Module,
    logits: torch.Tensor,
    targets: torch.Tensor,
    hidden: torch.Tensor,
    index: torch.Tensor,
    schemes: Sequence[Scheme],
    compute_dtype: torch.dtype | None,
    columns: dict[str, torch.Tensor],
) -> None:
    """Rank, margin, bounds and every scheme's p̃ at the rows `index`, from their logits."""
    found = detail_stats(logits, targets)
    best_other = found.pop("best_other")
    for name, value in found.items():
        columns[name][index] = value.to(columns[name].dtype)
    target_logit = logits.gather(-1, targets[:, None]).squeeze(-1)
    z_b = logits.gather(-1, best_other[:, None]).squeeze(-1)
    bounds = margin_bounds(model, hidden, target_logit, z_b, targets, best_other, compute_dtype)
    columns["margin_bounds"][index] = bounds
    _scheme_rows(model, logits, targets, hidden, index, schemes, compute_dtype, columns, bounds,
                 target_logit)  # fmt: skip


def _scheme_rows(
    model: torch.nn.Module,
    logits: torch.Tensor,
    targets: torch.Tensor,
    hidden: torch.Tensor,
    index: torch.Tensor,
    schemes: Sequence[Scheme],
    compute_dtype: torch.dtype | None,
    columns: dict[str, torch.Tensor],
    bounds: torch.Tensor,
    target_logit: torch.Tensor | None = None,
) -> None:
    """Each sampling scheme's p̃ (and top-k boundary margin) at the rows `index`."""
    if target_logit is None:
        target_logit = logits.gather(-1, targets[:, None]).squeeze(-1)
    for scheme in schemes:
        name = scheme.name
        if scheme.greedy:
            _greedy_rows(columns, index, name)
            continue
        top_values = None
        if _has_top_k(scheme, logits.shape[-1]):  # membership's margin against the boundary
            boundary, top_values = kth_other(logits, targets, scheme.top_k)
            z_b = logits.gather(-1, boundary[:, None]).squeeze(-1)
            columns[f"kth:{name}"][index] = (target_logit - z_b).double()
            columns[f"kth_bound:{name}"][index] = margin_bounds(
                model, hidden, target_logit, z_b, targets, boundary, compute_dtype
            )
        logp, fragile = scheme_logprobs(logits, targets, scheme, bounds, top_values)
        columns[f"scheme:{name}"][index] = logp.double()
        columns[f"fragile:{name}"][index] = fragile


def _greedy_rows(columns: dict[str, torch.Tensor], index: torch.Tensor, name: str) -> None:
    """p̃ under greedy decoding is 1 exactly where the arg-max matches, else 0."""
    match = columns["argmax_match"][index]
    columns[f"scheme:{name}"][index] = torch.where(match, 0.0, -math.inf).double()


def fused_head_usable(model: torch.nn.Module, compute_dtype: torch.dtype | None) -> bool:
    """The Triton path applies: a bias-free linear head that computes in its weight's dtype
    (not a bf16 model upcast by hooks for a float32 re-check), on a device Triton runs on."""
    head = model.get_output_embeddings()
    return (
        isinstance(head, torch.nn.Linear)
        and head.bias is None
        and head.weight.dtype in (torch.bfloat16, torch.float16, torch.float32)
        and compute_dtype in (None, head.weight.dtype)
        and fused_head_available(head.weight.device)
    )


def fused_head(
    model: torch.nn.Module, head: HeadInput, columns: dict[str, torch.Tensor], chunk: int
) -> None:
    """Fill `columns` from the tiled kernel, then the rows it leaves open from their logits."""
    weight = model.get_output_embeddings().weight
    vocab = weight.shape[0]
    device = head.hidden.device
    scale, cap = _post_processing(model)
    tiled = [s for s in head.schemes if fusable(s, vocab)]
    detail = torch.from_numpy(head.detail).to(device)
    moments = bool(head.moments.any())
    out = fused_head_stats(
        head.hidden,
        weight,
        head.targets,
        logit_scale=scale,
        softcap=cap,
        moments=moments,
        detail=detail,
        topk_schemes=tiled,
    )
    columns["logprobs"][:] = out["logprobs"].double()
    if moments:
        columns["mu"][:] = out["mu"].double()
        columns["sigma"][:] = out["sigma"].double()
    rows = torch.from_numpy(np.flatnonzero(head.detail)).to(device)
    if not rows.numel():
        return
    for name in ("ranks", "ties", "argmax_match", "margins"):
        columns[name][rows] = out[name][rows].to(columns[name].dtype)
    targets, hidden = head.targets[rows], head.hidden[rows]
    z_a = out["target_logit"][rows]
    best_other = out["best_other"][rows]
    bounds = margin_bounds(
        model, hidden, z_a, z_a - out["margins"][rows], targets, best_other, head.compute_dtype
    )
    columns["margin_bounds"][rows] = bounds
    for scheme in tiled:
        name = scheme.name
        columns[f"scheme:{name}"][rows] = out[f"scheme:{name}"][rows]
        kth = out[f"kth_margin:{name}"][rows]
        columns[f"kth:{name}"][rows] = kth.double()
        columns[f"kth_bound:{name}"][rows] = margin_bounds(
            model, hidden, z_a, z_a - kth, targets, None, head.compute_dtype
        )
    # What the tiles could not decide: greedy from the arg-max, the rest from their logits.
    for scheme in head.schemes:
        if scheme.greedy:
            _greedy_rows(columns, rows, scheme.name)
    ties = torch.zeros_like(rows, dtype=torch.bool)
    for scheme in tiled:
        ties |= out[f"topk_ties:{scheme.name}"][rows]
    untiled = [s for s in head.schemes if not s.greedy and not fusable(s, vocab)]
    _open_rows(model, head, columns, rows, untiled, tiled, ties, bounds, chunk)


def _open_rows(
    model: torch.nn.Module,
    head: HeadInput,
    columns: dict[str, torch.Tensor],
    rows: torch.Tensor,
    untiled: Sequence[Scheme],
    tiled: Sequence[Scheme],
    ties: torch.Tensor,
    bounds: torch.Tensor,
    chunk: int,
) -> None:
    """Schemes the kernel left open, from materialised logits of just the rows that need them:
    every detail row for a nucleus or temperature-only scheme, tied rows for a top-k one."""
    wanted = torch.ones_like(ties) if untiled else ties
    if not bool(wanted.any()):
        return
    for start in range(0, rows.numel(), chunk):
        part = torch.arange(start, min(start + chunk, rows.numel()), device=rows.device)
        part = part[wanted[part]]
        if not part.numel():
            continue
        index = rows[part]
        logits = final_logits(model, head.hidden[index])
        args = (head.targets[index], head.hidden[index])
        _scheme_rows(model, logits, *args, index, untiled, head.compute_dtype, columns,
                     bounds[part])  # fmt: skip
        tied = ties[part]
        if tiled and bool(tied.any()):
            _scheme_rows(model, logits[tied], args[0][tied], args[1][tied], index[tied], tiled,
                         head.compute_dtype, columns, bounds[part][tied])  # fmt: skip
