"""Log-likelihoods of many texts after one shared prefix, the prefix run once.

ReCaLL and Con-ReCall score every record x after the same prefix P (a few held-out texts).
Running P + x plainly costs the prefix again for every record; here P's keys and values are
computed once, copied to each row of a batch, and the records, right-padded, continue from it
with positions P, P+1, ... . Row r, text token t is then predicted exactly as in the plain pass
over P + x: token 0 from the prefix's last position, token t > 0 from the record's position
t - 1. Tested against scoring the concatenation plainly (tests/worker/engine/
test_prefix_scoring.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worker.engine.batching import plan_token_batches, token_budget
from worker.engine.head_stats import final_logits, logprob_and_moments

# Positions per head chunk: (C, V) float32 logits stay within ~64 MiB at GPT-2's vocabulary.
HEAD_CHUNK_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class PrefixState:
    """The prefix run once: its keys and values, and its last position's hidden state."""

    cache: Any  # the model's cache object, one row; never extended (each batch copies it)
    last_hidden: torch.Tensor  # (1, H): predicts every text's first token
    length: int


@torch.inference_mode()
def encode_prefix(
    model: torch.nn.Module, prefix_ids: Sequence[int], device: str | torch.device
) -> PrefixState:
    """Run the prefix once; `prefix_ids` must be non-empty (special tokens, then the shots)."""
    if not prefix_ids:
        raise ValueError("the prefix must hold at least one token")
    prefix = torch.as_tensor([list(prefix_ids)], dtype=torch.long, device=device)  # (1, P)
    out = model.base_model(input_ids=prefix, use_cache=True)
    return PrefixState(out.cache, out.last_hidden_state[:, -1], prefix.shape[1])


@torch.inference_mode()
def prefix_logprobs(
    model: torch.nn.Module,
    prefix: PrefixState | Sequence[int],
    texts: Sequence[Sequence[int]],
    device: str | torch.device,
    *,
    batch_size: int = 8,
    max_batch_tokens: int | None = None,
) -> list[np.ndarray]:
    """Per text, log p(x_t | P, x_<t) for every token t of the text (float64, length len(x)).

    `prefix`: token ids, or a PrefixState from `encode_prefix` (reused across calls, so a
    shard runs its prefix once). A text of no tokens gets an empty array. Every row of a batch
    holds its own copy of the prefix's keys and attends over P + T positions, so batches are
    cut by tokens, prefix included, within `max_batch_tokens` (the device's budget unless
    given; batch_size caps the rows)."""
    if not isinstance(prefix, PrefixState):
        prefix = encode_prefix(model, prefix, device)
    results: list[np.ndarray] = [np.zeros(0)] * len(texts)
    runnable = [i for i in range(len(texts)) if texts[i]]
    lengths = [len(texts[i]) + prefix.length for i in runnable]
    if max_batch_tokens is None:
        max_batch_tokens = token_budget(model, device, length=max(lengths, default=0))
    for planned in plan_token_batches(lengths, max_batch_tokens, batch_size):
        batch = [runnable[j] for j in planned]
        for i, logprobs in zip(
            batch, _batch_logprobs(model, prefix, [texts[i] for i in batch]), strict=True
        ):
            results[i] = logprobs
    return results


def _batch_logprobs(
    model: torch.nn.Module, prefix: PrefixState, texts: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    first_hidden, n_prefix = prefix.last_hidden, prefix.length
    device = first_hidden.device
    rows, width = len(texts), max(len(t) for t in texts)
    input_ids = torch.zeros((rows, width), dtype=torch.long)
    text_mask = torch.zeros((rows, width), dtype=torch.long)
    for row, ids in enumerate(texts):
        input_ids[row, : len(ids)] = torch.as_tensor(list(ids))
        text_mask[row, : len(ids)] = 1
    input_ids = input_ids.to(device)
    # The model appends to the cache it is given: each batch extends its own copy.
    shared = copy.deepcopy(prefix.cache)
    shared.batch_repeat_interleave(rows)
    attention_mask = torch.cat([torch.ones((rows, n_prefix), dtype=torch.long), text_mask], 1)
    positions = torch.arange(n_prefix, n_prefix + width).expand(rows, width)
    hidden = model.base_model(
        input_ids=input_ids,
        cache=shared,
        attention_mask=attention_mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
    ).last_hidden_state  # (B, T, H)

    # Row r's token t is predicted from the prefix's last state (t = 0) or its own t - 1.
    lengths = [len(t) for t in texts]
    flat_hidden = torch.cat(
        [torch.cat([first_hidden, hidden[r, : n - 1]]) for r, n in enumerate(lengths)]
    )  # (N, H)
    flat_targets = torch.cat([input_ids[r, :n] for r, n in enumerate(lengths)])  # (N,)
    head_device = model.get_output_embeddings().weight.device
    flat_hidden, flat_targets = flat_hidden.to(head_device), flat_targets.to(head_device)
    vocab = model.get_output_embeddings().weight.shape[0]
    chunk = max(1, HEAD_CHUNK_BYTES // (4 * vocab))
    parts = [
        logprob_and_moments(
            final_logits(model, flat_hidden[i : i + chunk]), flat_targets[i : i + chunk], False
        )["logprobs"]
        for i in range(0, len(flat_targets), chunk)
    ]
    logprobs = torch.cat(parts).double().cpu().numpy()
    offsets = np.r_[0, np.cumsum(lengths)]
    return [logprobs[offsets[r] : offsets[r + 1]].copy() for r in range(rows)]
