"""The whole-work scan: every window of a long text scored alone, streamed in batches.

Each window is the model's special tokens, its own n-token prefix and its m-token suffix, and
nothing else (the exact definition of p_z). All windows have one length, so a batch is a
gather from the text's ids, runs with no padding, and the output head runs at the m suffix
positions of each row only (head_stats.py, the path the shared pass uses): the prefix's
predictions are never needed. Each batch is reduced to per-window values at once, so the
memory held is one batch plus the per-window series, however long the text.

The screening pass (`screen_token_logprobs`) reads the text in long chunks instead: every
token conditioned on all the text before it within the chunk, about one pass over the text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worker.engine.batching import token_budget
from worker.engine.coverage import WindowSeries, fragile_rows, log10_pz_rows
from worker.engine.head_stats import (
    HeadInput,
    empty_columns,
    final_logits,
    fused_head,
    fused_head_usable,
    margin_bounds,
    torch_head,
)
from worker.engine.sampling import scheme_logprobs
from worker.engine.schemes import Scheme
from worker.engine.scoring import VOCAB_BUDGET_BYTES

FULL_SOFTMAX = "full_softmax"  # the screen's plain log-probabilities, beside the schemes'


@dataclass(frozen=True)
class ScanSetup:
    """What every batch of a scan shares: the model, where it runs, and the head's path."""

    model: torch.nn.Module
    device: torch.device
    schemes: tuple[Scheme, ...]
    chunk: int  # head rows per chunk of logits
    fused: bool
    compute_dtype: torch.dtype | None = None

    @classmethod
    def of(
        cls,
        model: torch.nn.Module,
        device: str | torch.device,
        schemes: Sequence[Scheme],
        compute_dtype: torch.dtype | None = None,
    ) -> ScanSetup:
        weight = model.get_output_embeddings().weight
        device = torch.device(device)
        fused = weight.device.type == "cuda" and fused_head_usable(model, compute_dtype)
        budget = VOCAB_BUDGET_BYTES.get(device.type, 256 * 1024**2)
        chunk = max(1, budget // (12 * weight.shape[0]))
        return cls(model, device, tuple(schemes), chunk, fused, compute_dtype)


def window_rows(
    setup: ScanSetup, width: int, batch_size: int | None, max_batch_tokens: int | None = None
) -> int:
    """Windows per forward: as many as the token budget holds, at most batch_size."""
    budget = max_batch_tokens or token_budget(
        setup.model, setup.device, length=width, compute_dtype=setup.compute_dtype
    )
    rows = max(1, budget // width)
    return min(rows, batch_size) if batch_size else rows


def _suffix_hidden(
    setup: ScanSetup, input_ids: torch.Tensor, suffix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The body's last hidden state at the predictions of each row's last `suffix` tokens, and
    those tokens, flattened: (B * suffix, H) and (B * suffix,) on the head's device."""
    model = setup.model
    rows, width = input_ids.shape
    ids = input_ids.to(setup.device)
    hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state  # (B, L, H)
    head_device = model.get_output_embeddings().weight.device
    # Position j predicts token j + 1: the suffix tokens L-m..L-1 from positions L-m-1..L-2.
    picked = hidden[:, width - suffix - 1 : width - 1].reshape(rows * suffix, -1).to(head_device)
    return picked, ids[:, width - suffix :].reshape(-1).to(head_device)


@torch.inference_mode()
def verdict_columns(
    setup: ScanSetup, input_ids: torch.Tensor, suffix: int
) -> dict[str, np.ndarray]:
    """What a window's verdicts read, at its suffix only, as (B, suffix) arrays: arg-max match,
    margin and its rounding bound, and each scheme's log p̃ (head_stats' detail columns, by the
    same formulas). Only these: the shared pass's ranks, ties, top-k boundary margins and
    full-softmax log-probs are not read here and would cost passes over the vocabulary."""
    if setup.fused:  # the tiled kernel computes every column at once
        return suffix_columns(setup, input_ids, suffix)
    rows = input_ids.shape[0]
    hidden, targets = _suffix_hidden(setup, input_ids, suffix)
    found: dict[str, list[torch.Tensor]] = {}
    for start in range(0, targets.shape[0], setup.chunk):
        stop = start + setup.chunk
        for name, value in _verdict_rows(setup, hidden[start:stop], targets[start:stop]).items():
            found.setdefault(name, []).append(value)
    return {
        name: torch.cat(parts).cpu().numpy().reshape(rows, suffix) for name, parts in found.items()
    }


def _verdict_rows(
    setup: ScanSetup, hidden: torch.Tensor, targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    logits = final_logits(setup.model, hidden)  # (C, V) float32
    target_logit = logits.gather(-1, targets[:, None]).squeeze(-1)
    top2 = torch.topk(logits, 2, dim=-1)
    first = top2.indices[:, 0] == targets
    best_other = torch.where(first, top2.values[:, 1], top2.values[:, 0])
    other_id = torch.where(first, top2.indices[:, 1], top2.indices[:, 0])
    # torch.argmax picks the lowest id among tied maxima, as HF greedy decoding does.
    match = logits.argmax(dim=-1) == targets
    bounds = margin_bounds(
        setup.model, hidden, target_logit, best_other, targets, other_id, setup.compute_dtype
    )
    found = {
        "argmax_match": match,
        "margins": (target_logit - best_other).double(),
        "margin_bounds": bounds.double(),
    }
    for scheme in setup.schemes:
        if scheme.greedy:
            found[f"scheme:{scheme.name}"] = torch.where(match, 0.0, -math.inf).double()
        else:
            found[f"scheme:{scheme.name}"] = scheme_logprobs(logits, targets, scheme, bounds)[0]
    return found


@torch.inference_mode()
def suffix_columns(setup: ScanSetup, input_ids: torch.Tensor, suffix: int) -> dict[str, np.ndarray]:
    """Head statistics at the last `suffix` predictions of each row of (B, L) input ids, as
    (B, suffix) arrays: every column of head_stats.empty_columns."""
    model, rows = setup.model, input_ids.shape[0]
    picked, targets = _suffix_hidden(setup, input_ids, suffix)
    n = rows * suffix
    head = HeadInput(
        picked,
        targets,
        np.zeros(n, dtype=bool),
        np.ones(n, dtype=bool),
        setup.schemes,
        setup.compute_dtype,
    )
    vocab = model.get_output_embeddings().weight.shape[0]
    columns = empty_columns(n, setup.schemes, vocab, picked.device)
    (fused_head if setup.fused else torch_head)(model, head, columns, setup.chunk)
    return {name: value.cpu().numpy().reshape(rows, suffix) for name, value in columns.items()}


def window_batches(
    text_ids: torch.Tensor,
    specials: Sequence[int],
    offsets: Sequence[int] | np.ndarray,
    prefix: int,
    suffix: int,
    rows: int,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(offsets, input ids (B, specials + n + m)) per batch of windows, gathered from the text's
    ids only when the batch is due."""
    offsets = np.asarray(offsets, dtype=np.int64)
    span = torch.arange(prefix + suffix)
    head = torch.as_tensor(list(specials), dtype=torch.long)
    for start in range(0, len(offsets), rows):
        chunk = offsets[start : start + rows]
        gathered = text_ids[torch.from_numpy(chunk)[:, None] + span]  # (B, n + m)
        yield chunk, torch.cat([head.expand(len(chunk), -1), gathered], dim=1)


def scan_windows(
    setup: ScanSetup,
    text_ids: Sequence[int],
    specials: Sequence[int],
    offsets: Sequence[int] | np.ndarray,
    prefix: int,
    suffix: int,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    series: WindowSeries | None = None,
) -> WindowSeries:
    """Score every window at `offsets` alone and keep only its values: greedy verdict, whether
    rounding could flip it, and log10 p_z under each scheme."""
    names = [s.name for s in setup.schemes]
    series = series if series is not None else WindowSeries(names)
    ids = torch.as_tensor(text_ids, dtype=torch.long)
    width = len(specials) + prefix + suffix
    rows = window_rows(setup, width, batch_size, max_batch_tokens)
    for chunk, input_ids in window_batches(ids, specials, offsets, prefix, suffix, rows):
        columns = verdict_columns(setup, input_ids, suffix)
        matches = columns["argmax_match"]
        near = np.abs(columns["margins"]) <= columns["margin_bounds"]
        series.add(
            chunk,
            matches.all(axis=1),
            fragile_rows(matches, near),
            {name: log10_pz_rows(columns[f"scheme:{name}"]) for name in names},
        )
    return series


@torch.inference_mode()
def screen_token_logprobs(
    setup: ScanSetup,
    text_ids: Sequence[int],
    specials: Sequence[int],
    context: int,
    overlap: int,
) -> dict[str, np.ndarray]:
    """Per scheme, log p̃ of every text token t >= 1 (index t) given the text before it, read
    in chunks of `context` tokens that overlap by `overlap`: each token is predicted from at
    least `overlap` tokens (or all before it), not from its own window's prefix alone. Index 0
    is NaN (no left context). Under `FULL_SOFTMAX`, the plain log-probability (T = 1, no
    filter), which keeps a greedy window that nearly screens in within reach of a margin."""
    n = len(text_ids)
    names = [s.name for s in setup.schemes]
    found = {name: np.full(n, np.nan) for name in [*names, FULL_SOFTMAX]}
    room = context - len(specials)
    if room <= overlap:
        raise ValueError("the screening context must exceed the prefix")
    ids = torch.as_tensor(text_ids, dtype=torch.long)
    head = torch.as_tensor(list(specials), dtype=torch.long)
    start = 0
    while start < n:
        stop = min(start + room, n)
        piece = torch.cat([head, ids[start:stop]])[None, :]
        first = 1 if start == 0 else overlap  # tokens of this chunk with their stats kept
        scored = stop - start - first
        if scored > 0:
            columns = suffix_columns(setup, piece, scored)
            for name in names:
                found[name][start + first : stop] = columns[f"scheme:{name}"][0]
            found[FULL_SOFTMAX][start + first : stop] = columns["logprobs"][0]
        if stop == n:
            break
        start = stop - overlap
    return found
