"""The teacher-forced pass: one forward over the true text yields every per-token statistic.

Position t is scored when it has a left context, so logits at t-1 predict token t
(METRICS.md §1). Right padding plus an attention mask keeps batching from changing results.
The output head runs over the positions gathered across the batch (head_stats.py: in chunks
within a memory budget on CPU, a fused Triton kernel without (N, V) logits on CUDA), and
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
from worker.engine.head_stats import (
    HeadInput,
    empty_columns,
    fused_head,
    fused_head_usable,
    torch_head,
)
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
    fused: bool | None = None,
) -> list[TokenStats]:
    """TokenStats for every request, batched by length within a token budget (from the
    device's free memory unless given; batch_size, when given, caps the rows), one forward
    pass per batch.

    `compute_dtype`: the dtype the logits are formed in, for the margins' rounding bounds
    (default: the head weight's; a model upcast by forward hooks computes above it).
    `fused`: the Triton head (head_stats.py); None takes it on CUDA where it applies."""
    results: list[TokenStats] = [None] * len(requests)  # type: ignore[list-item]
    weight = model.get_output_embeddings().weight
    vocab = weight.shape[0]
    if fused is None:
        fused = weight.device.type == "cuda" and fused_head_usable(model, compute_dtype)
    elif fused and not fused_head_usable(model, compute_dtype):
        raise ValueError(
            "the fused head needs Triton on CUDA (or its interpreter) and a plain head"
        )
    if vocab_budget_bytes is None:
        vocab_budget_bytes = VOCAB_BUDGET_BYTES.get(torch.device(device).type, 256 * 1024**2)
    # Logits plus the float32 temporaries above come to about 3 x 4 bytes per vocabulary entry.
    chunk = max(1, vocab_budget_bytes // (12 * vocab))
    # An empty sequence (an empty text under a model without a BOS token) has no position to
    # run: it gets empty statistics here, and the model never sees a zero-width batch.
    for i, request in enumerate(requests):
        if not request.input_ids:
            results[i] = TokenStats(0, np.zeros(0, dtype=np.float64), request.truncated)
    runnable = [i for i, request in enumerate(requests) if request.input_ids]
    lengths = [len(requests[i].input_ids) for i in runnable]
    if max_batch_tokens is None:
        max_batch_tokens = token_budget(
            model, device, length=max(lengths, default=0), compute_dtype=compute_dtype
        )
    for planned in plan_token_batches(lengths, max_batch_tokens, batch_size):
        batch = [runnable[j] for j in planned]
        for i, stats in zip(
            batch,
            _score_batch(
                model,
                [requests[i] for i in batch],
                device,
                schemes,
                chunk,
                compute_dtype,
                fused,
                vocab,
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
    fused: bool,
    vocab: int,
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
    moments = np.repeat([r.moments for r in batch], n_scored).astype(bool)
    detail = np.zeros(len(flat_targets), dtype=bool)
    for r, request in enumerate(batch):
        wanted = [p for p in request.detail_positions if 0 <= p < n_scored[r]]
        detail[offsets[r] + np.asarray(wanted, dtype=np.int64)] = True

    head = HeadInput(flat_hidden, flat_targets, moments, detail, schemes, compute_dtype)
    on_device = empty_columns(len(flat_targets), schemes, vocab, flat_hidden.device)
    (fused_head if fused else torch_head)(model, head, on_device, chunk)
    columns = {name: value.cpu().numpy() for name, value in on_device.items()}  # one copy
    scheme_columns = {s.name: columns[f"scheme:{s.name}"] for s in schemes}
    fragile_columns = {s.name: columns[f"fragile:{s.name}"] for s in schemes}
    kth_columns = {s.name: columns[f"kth:{s.name}"] for s in schemes if f"kth:{s.name}" in columns}
    kth_bound_columns = {n: columns[f"kth_bound:{n}"] for n in kth_columns}

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
