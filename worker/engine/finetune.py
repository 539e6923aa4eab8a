"""Fine-tune against its base: per-token log-likelihood differences and greedy verdicts of the
same token rows under both models.

A full fine-tune is two models, so two passes over the same rows. A LoRA adapter left unmerged
on its base is one model: each row goes in twice within one batch, once under the adapter and
once under `__base__` (peft's mixed-batch forward, `adapter_names`, which computes the base
layers once per row and adds each adapter's low-rank update only to its own rows), so target
and base come from one forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.engine.membership import mink

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch
# Positions per head chunk: (C, V) float32 logits stay within ~64 MiB.
HEAD_CHUNK_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class RowScores:
    """One token row: log p(token i+1 | tokens ..i) and whether that token is the arg-max
    (greedy decoding would emit it; ties go to the lowest id, as torch's argmax does)."""

    logprobs: np.ndarray
    top1: np.ndarray


def _forward(
    model: Any,
    rows: Sequence[Sequence[int]],
    device: str,
    adapter_names: Sequence[str] | None,
    head_chunk_bytes: int,
) -> list[RowScores]:
    """One batch: the body's hidden states, then the output head over chunks of the scored
    positions, so no (rows, T, V) logits exist (at most (C, V) float32 per chunk)."""
    import torch

    from worker.engine.head_stats import final_logits, logprob_and_moments

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    width = max(len(row) for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):  # right padding: a causal row never sees its padding
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    ids, mask = ids.to(device), mask.to(device)
    # peft's mixed batch: the adapter names reach every LoRA layer of the body through the
    # same hooks its own forward installs (the head, run below on flattened rows, is outside).
    hooks = (
        model._enable_peft_forward_hooks(adapter_names=list(adapter_names))
        if adapter_names is not None
        else contextlib.nullcontext()
    )
    with torch.inference_mode():
        with hooks:
            hidden = causal.base_model(
                input_ids=ids, attention_mask=mask, use_cache=False
            ).last_hidden_state  # (B, T, H)
        n_scored = [max(len(row) - 1, 0) for row in rows]
        head = causal.get_output_embeddings()
        if adapter_names is not None and hasattr(head, "lora_A"):
            raise ValueError("an adapter on the output head cannot share a mixed batch here")
        flat_hidden = torch.cat([hidden[r, :n] for r, n in enumerate(n_scored)])
        flat_targets = torch.cat([ids[r, 1 : n + 1] for r, n in enumerate(n_scored)])
        flat_hidden = flat_hidden.to(head.weight.device)
        flat_targets = flat_targets.to(head.weight.device)
        chunk = max(1, head_chunk_bytes // (4 * head.weight.shape[0]))
        logprobs, top1 = [], []
        for i in range(0, len(flat_targets), chunk):
            logits = final_logits(causal, flat_hidden[i : i + chunk])  # (C, V) float32
            targets = flat_targets[i : i + chunk]
            top1.append(logits.argmax(-1) == targets)
            logprobs.append(logprob_and_moments(logits, targets, False)["logprobs"])
        all_logprobs = torch.cat(logprobs).cpu().numpy()
        all_top1 = torch.cat(top1).cpu().numpy()
    offsets = np.r_[0, np.cumsum(n_scored)]
    return [
        RowScores(all_logprobs[offsets[r] : offsets[r + 1]], all_top1[offsets[r] : offsets[r + 1]])
        for r in range(len(rows))
    ]


def _budget(model: Any, rows: Sequence[Sequence[int]], device: str) -> int:
    from worker.engine.batching import token_budget

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    return token_budget(causal, device, length=max((len(r) for r in rows), default=0))


def score_rows(
    model: Any,
    rows: Sequence[Sequence[int]],
    device: str,
    batch_size: int,
    *,
    max_batch_tokens: int | None = None,
    head_chunk_bytes: int = HEAD_CHUNK_BYTES,
) -> list[RowScores]:
    """Every row teacher-forced through one model, batched by tokens within
    `max_batch_tokens` (the device's budget unless given; batch_size caps the rows)."""
    from worker.engine.batching import plan_token_batches

    if max_batch_tokens is None:
        max_batch_tokens = _budget(model, rows, device)
    found: list[RowScores | None] = [None] * len(rows)
    lengths = [len(row) for row in rows]
    for chunk in plan_token_batches(lengths, max_batch_tokens, batch_size):
        scores = _forward(model, [rows[i] for i in chunk], device, None, head_chunk_bytes)
        for i, row_scores in zip(chunk, scores, strict=True):
            found[i] = row_scores
    return [scores for scores in found if scores is not None]


def score_rows_paired(
    model: Any,
    rows: Sequence[Sequence[int]],
    device: str,
    batch_size: int,
    adapter: str,
    *,
    max_batch_tokens: int | None = None,
    head_chunk_bytes: int = HEAD_CHUNK_BYTES,
) -> tuple[list[RowScores], list[RowScores]]:
    """Every row under the adapter and under the bare base, both in the same forward pass:
    (target, base). A pair is two rows, so a batch holds batch_size // 2 pairs and half the
    token budget's worth of pairs."""
    from worker.engine.batching import plan_token_batches

    if max_batch_tokens is None:
        max_batch_tokens = _budget(model, rows, device)
    pairs = max(batch_size // 2, 1)
    target: list[RowScores | None] = [None] * len(rows)
    base: list[RowScores | None] = [None] * len(rows)
    lengths = [len(row) for row in rows]
    for chunk in plan_token_batches(lengths, max(max_batch_tokens // 2, 1), pairs):
        batch = [rows[i] for i in chunk]
        names = [adapter] * len(chunk) + [BASE_ADAPTER] * len(chunk)
        scores = _forward(model, batch + batch, device, names, head_chunk_bytes)
        for j, i in enumerate(chunk):
            target[i], base[i] = scores[j], scores[len(chunk) + j]
    return [s for s in target if s is not None], [s for s in base if s is not None]


def delta_scores(
    target: RowScores, base: RowScores, ks: Sequence[float], start: int = 0
) -> dict[str, Any]:
    """Δℓ_t = ℓ_target − ℓ_base per scored token (from `start`), its mean, and Min-K% over
    Δℓ: the mean of the k-fraction lowest differences. A text the fine-tune learned gains
    likelihood on nearly every token, so even its lowest Δℓ stay high (higher: more
    member-like)."""
    delta = target.logprobs[start:] - base.logprobs[start:]
    values: dict[str, Any] = {"n_scored": len(delta)}
    if not len(delta):
        values["mean_delta"] = None
        return values
    values["mean_delta"] = float(delta.mean())
    for k in ks:
        values[f"mink_delta_{k:g}"], _ = mink(delta, k)
    values["token_delta"] = [round(float(d), 4) for d in delta]
    return values


def window_verdict(
    target: RowScores, base: RowScores, suffix_start: int, suffix_tokens: int
) -> dict[str, Any]:
    """One prefix/suffix window: the suffix's summed Δℓ and mean Δℓ per token, and whether
    greedy decoding from the prefix reproduces the suffix under each model (every suffix token
    the arg-max given the true tokens before it is exactly that)."""
    span = slice(suffix_start, suffix_start + suffix_tokens)
    delta = target.logprobs[span] - base.logprobs[span]
    return {
        "delta": float(delta.sum()),
        "mean_delta": float(delta.mean()),
        "target_extracted": bool(target.top1[span].all()),
        "base_extracted": bool(base.top1[span].all()),
        "target_match_len": _leading(target.top1[span]),
        "base_match_len": _leading(base.top1[span]),
    }


def _leading(matches: np.ndarray) -> int:
    misses = np.flatnonzero(~matches)
    return int(misses[0]) if len(misses) else len(matches)


def document_verdict(windows: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """A record's windows read together: extractable from the target (base) if any window is;
    `target_not_base` if some window is extractable from the target and not from the base
    (the fine-tune put it there). The reported window is, of those (else of all), the one whose
    suffix gained most Δℓ."""
    only = [(o, w) for o, w in windows if w["target_extracted"] and not w["base_extracted"]]
    best_offset, best = max(only or windows, key=lambda item: item[1]["delta"])
    return {
        "n_windows": len(windows),
        "target_extracted": any(w["target_extracted"] for _, w in windows),
        "base_extracted": any(w["base_extracted"] for _, w in windows),
        "target_not_base": bool(only),
        "target_only_windows": len(only),
        "max_window_delta": max(w["mean_delta"] for _, w in windows),
        "best_window_offset": best_offset,
        "best_window": best,
    }
