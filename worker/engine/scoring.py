"""The teacher-forced pass: one forward over the true text yields every per-token statistic.

Position t is scored when it has a left context, so logits at t-1 predict token t
(METRICS.md §1). Right padding plus an attention mask keeps batching from changing results.
The output head runs over chunks of positions gathered across the batch, so full-vocabulary
work stays within a memory budget instead of growing with batch x length x vocabulary, and
statistics that only some checks need are computed only where they are needed:

- every position: ℓ_t (log-probability of the true token);
- every position, when `moments` is asked for (Min-K%++): μ_t and σ_t over the vocabulary;
- at `detail_positions` (extraction suffixes): rank, ties, arg-max match, margin, the margin's
  rounding bound (docs/numerics.md), and p̃_t under each sampling scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worker.engine.batching import plan_token_batches, token_budget
from worker.engine.numeric_error import margin_bound
from worker.engine.sampling import scheme_logprobs
from worker.engine.schemes import Scheme
from worker.engine.token_stats import TokenStats

# Per chunk of positions: small on CPU, where buffers that stay in cache beat big ones; large on
# a GPU, where fewer, larger kernels win.
VOCAB_BUDGET_BYTES = {"cpu": 64 * 1024**2, "cuda": 1024**3}


@dataclass(frozen=True)
class ScoringRequest:
    input_ids: Sequence[int]
    truncated: bool = False
    # TokenStats indices (position t - 1) that need rank, margin and scheme probabilities.
    detail_positions: Sequence[int] = ()
    moments: bool = False  # μ_t and σ_t at every position


def truncate(input_ids: Sequence[int], max_tokens: int) -> tuple[list[int], bool]:
    ids = list(input_ids)
    return ids[:max_tokens], len(ids) > max_tokens


def _final_logits(model: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The output head, with the logit post-processing some architectures apply."""
    logits = model.get_output_embeddings()(hidden)
    config = model.config
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, int | float) and scale != 1:
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()  # fp32 softmax even when the model runs in bf16


def _logprob_and_moments(
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


def _detail_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
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


def _host_margin(logits: torch.Tensor, targets: torch.Tensor, other: torch.Tensor) -> np.ndarray:
    """z[target] - z[other] per row, float64 on the host."""
    pair = logits.gather(-1, torch.stack([targets, other], dim=-1))  # (C, 2)
    return (pair[:, 0] - pair[:, 1]).double().cpu().numpy()


def _kth_other(
    logits: torch.Tensor, targets: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Id of the k-th largest logit among the tokens other than the target: top-k keeps the
    target iff it is not below it, so it is the boundary that decides membership (the k+1-th
    largest when the target is kept, the k-th when not). logits (C, V), k < V. Also returns
    the k+1 largest logits, which the top-k probabilities reuse."""
    top = torch.topk(logits, k + 1, dim=-1)  # (C, k+1), descending
    kept = (top.indices[:, :k] == targets[:, None]).any(dim=-1)
    return torch.where(kept, top.indices[:, k], top.indices[:, k - 1]), top.values


def _margin_bounds(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    other: torch.Tensor,
    compute_dtype: torch.dtype | None,
) -> np.ndarray:
    """tau of docs/numerics.md for the margin between the target and the `other` token.
    hidden (C, H) as the head reads it; logits (C, V) after post-processing."""
    weight = model.get_output_embeddings().weight  # (V, H)
    rows_a = weight[targets.to(weight.device)].float()  # (C, H)
    rows_b = weight[other.to(weight.device)].float()
    config = model.config
    scale = getattr(config, "logit_scale", None)

    def host(x: torch.Tensor) -> np.ndarray:
        return x.double().cpu().numpy()

    return margin_bound(
        z_a=host(logits.gather(-1, targets[:, None]).squeeze(-1)),
        z_b=host(logits.gather(-1, other[:, None]).squeeze(-1)),
        hidden_norm=host(hidden.float().norm(dim=-1)),
        norm_a=host(rows_a.norm(dim=-1)),
        norm_b=host(rows_b.norm(dim=-1)),
        norm_diff=host((rows_a - rows_b).norm(dim=-1)),
        dtype=compute_dtype or weight.dtype,
        n_layers=int(getattr(config, "num_hidden_layers", 0) or 0),
        logit_scale=float(scale) if isinstance(scale, int | float) else 1.0,
    )


@torch.inference_mode()
def score_sequences(
    model: torch.nn.Module,
    requests: Sequence[ScoringRequest],
    device: str | torch.device,
    *,
    schemes: Sequence[Scheme] = (),
    batch_size: int | None = None,
    vocab_budget_bytes: int | None = None,
    max_batch_tokens: int | None = None,
    compute_dtype: torch.dtype | None = None,
) -> list[TokenStats]:
    """TokenStats for every request, batched by length within a token budget (from the
    device's free memory unless given; batch_size, when given, caps the rows), one forward
    pass per batch.

    `compute_dtype`: the dtype the logits are formed in, for the margins' rounding bounds
    (default: the head weight's; a model upcast by forward hooks computes above it)."""
    results: list[TokenStats] = [None] * len(requests)  # type: ignore[list-item]
    vocab = model.get_output_embeddings().weight.shape[0]
    if vocab_budget_bytes is None:
        vocab_budget_bytes = VOCAB_BUDGET_BYTES.get(torch.device(device).type, 256 * 1024**2)
    # Logits plus the float32 temporaries above come to about 3 x 4 bytes per vocabulary entry.
    chunk = max(1, vocab_budget_bytes // (12 * vocab))
    lengths = [len(r.input_ids) for r in requests]
    if max_batch_tokens is None:
        max_batch_tokens = token_budget(model, device, length=max(lengths, default=0))
    for batch in plan_token_batches(lengths, max_batch_tokens, batch_size):
        for i, stats in zip(
            batch,
            _score_batch(
                model, [requests[i] for i in batch], device, schemes, chunk, compute_dtype
            ),
            strict=True,
        ):
            results[i] = stats
    return results


def _score_batch(
    model: torch.nn.Module,
    batch: Sequence[ScoringRequest],
    device: str | torch.device,
    schemes: Sequence[Scheme],
    chunk: int,
    compute_dtype: torch.dtype | None,
) -> list[TokenStats]:
    width = max(len(r.input_ids) for r in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, request in enumerate(batch):
        input_ids[row, : len(request.input_ids)] = torch.as_tensor(list(request.input_ids))
        attention_mask[row, : len(request.input_ids)] = 1
    input_ids = input_ids.to(device)
    # Without padding the mask is all ones: leaving it out lets attention take its causal
    # fast path, with identical results.
    padded = any(len(r.input_ids) != width for r in batch)
    hidden = model.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask.to(device) if padded else None,
        use_cache=False,
    ).last_hidden_state  # (B, T, H)

    # Every scored position of every row, flattened: row r, position j predicts ids[r, j+1].
    n_scored = [max(len(r.input_ids) - 1, 0) for r in batch]
    rows = torch.repeat_interleave(torch.arange(len(batch)), torch.tensor(n_scored))
    positions = torch.cat([torch.arange(n) for n in n_scored]) if rows.numel() else rows
    # A model split across devices ends where its last layer is; the head may be elsewhere.
    head_device = model.get_output_embeddings().weight.device
    flat_hidden = hidden[rows.to(hidden.device), positions.to(hidden.device)].to(head_device)
    flat_targets = input_ids[rows.to(device), positions.to(device) + 1].to(head_device)  # (N,)
    offsets = np.r_[0, np.cumsum(n_scored)]
    moments = torch.tensor([batch[r].moments for r in rows.tolist()], dtype=torch.bool)
    detail = torch.zeros(len(flat_targets), dtype=torch.bool)
    for r, request in enumerate(batch):
        wanted = [p for p in request.detail_positions if 0 <= p < n_scored[r]]
        detail[offsets[r] + np.asarray(wanted, dtype=np.int64)] = True

    total = len(flat_targets)
    columns: dict[str, np.ndarray] = {
        "logprobs": np.zeros(total),
        "mu": np.full(total, np.nan),
        "sigma": np.full(total, np.nan),
        "ranks": np.full(total, -1, dtype=np.int64),
        "ties": np.full(total, -1, dtype=np.int64),
        "argmax_match": np.zeros(total, dtype=bool),
        "margins": np.full(total, np.nan),
        "margin_bounds": np.full(total, np.nan),
    }
    scheme_columns = {s.name: np.full(total, np.nan) for s in schemes}
    fragile_columns = {s.name: np.zeros(total, dtype=bool) for s in schemes}
    vocab = model.get_output_embeddings().weight.shape[0]
    top_k = [s for s in schemes if not s.greedy and 0 < s.top_k < vocab]
    kth_columns = {s.name: np.full(total, np.nan) for s in top_k}
    kth_bound_columns = {s.name: np.full(total, np.nan) for s in top_k}
    for start in range(0, total, chunk):
        span = slice(start, min(start + chunk, total))
        logits = _final_logits(model, flat_hidden[span])  # (C, V)
        targets = flat_targets[span]
        picked = detail[span].nonzero().squeeze(-1)
        if picked.numel():  # before the in-place statistics below consume the logits
            index = np.arange(span.start, span.stop)[picked.numpy()]
            sub_logits = logits[picked.to(logits.device)]
            sub_targets = targets[picked.to(targets.device)]
            detail_stats = _detail_stats(sub_logits, sub_targets)
            best_other = detail_stats.pop("best_other")
            for name, value in detail_stats.items():
                columns[name][index] = value.cpu().numpy()
            sub_hidden = flat_hidden[span][picked.to(flat_hidden.device)]
            bounds = _margin_bounds(
                model, sub_hidden, sub_logits, sub_targets, best_other, compute_dtype
            )
            columns["margin_bounds"][index] = bounds
            for scheme in schemes:
                if scheme.greedy:  # p̃ is 1 exactly where the arg-max matches, else 0
                    match = torch.from_numpy(columns["argmax_match"][index])
                    scheme_columns[scheme.name][index] = np.where(match.numpy(), 0.0, -np.inf)
                    continue
                top_values = None
                if scheme.name in kth_columns:  # membership's margin against the boundary
                    boundary, top_values = _kth_other(sub_logits, sub_targets, scheme.top_k)
                    kth_columns[scheme.name][index] = _host_margin(
                        sub_logits, sub_targets, boundary
                    )
                    kth_bound_columns[scheme.name][index] = _margin_bounds(
                        model, sub_hidden, sub_logits, sub_targets, boundary, compute_dtype
                    )
                logp, fragile = scheme_logprobs(
                    sub_logits, sub_targets, scheme, torch.from_numpy(bounds), top_values
                )
                scheme_columns[scheme.name][index] = logp.cpu().numpy()
                fragile_columns[scheme.name][index] = fragile.cpu().numpy()
        base = _logprob_and_moments(logits, targets, bool(moments[span].any()))
        for name, value in base.items():
            columns[name][span] = value.double().cpu().numpy()

    stats = []
    for r, request in enumerate(batch):
        part = slice(offsets[r], offsets[r + 1])
        has_moments = request.moments
        stats.append(
            TokenStats(
                n_tokens=len(request.input_ids),
                logprobs=columns["logprobs"][part].copy(),
                truncated=request.truncated,
                ranks=columns["ranks"][part].copy(),
                ties=columns["ties"][part].copy(),
                argmax_match=columns["argmax_match"][part].copy(),
                margins=columns["margins"][part].copy(),
                margin_bounds=columns["margin_bounds"][part].copy(),
                entropy=-columns["mu"][part] if has_moments else None,
                sigma=columns["sigma"][part].copy() if has_moments else None,
                scheme_logprobs={n: v[part].copy() for n, v in scheme_columns.items()},
                nucleus_fragile={n: v[part].copy() for n, v in fragile_columns.items()},
                kth_margins={n: v[part].copy() for n, v in kth_columns.items()},
                kth_margin_bounds={n: v[part].copy() for n, v in kth_bound_columns.items()},
            )
        )
    return stats
