"""The teacher-forced pass: one forward over the true text yields every position's log-prob.

Position t is scored when it has a left context, so logits at t-1 predict token t
(METRICS.md §1). Right padding plus an attention mask keeps batching from changing results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Group indices of similar length together so batches carry little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def truncate(input_ids: Sequence[int], max_tokens: int) -> tuple[list[int], bool]:
    ids = list(input_ids)
    return ids[:max_tokens], len(ids) > max_tokens


@torch.inference_mode()
def teacher_forced_logprobs(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], device: str | torch.device
) -> list[np.ndarray]:
    """ℓ_t for every scored position of every sequence, from one batched forward pass."""
    lengths = [len(seq) for seq in sequences]
    width = max(lengths)
    input_ids = torch.zeros((len(sequences), width), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
    logits = logits[:, :-1].float()  # fp32 softmax even when the model runs in bf16
    targets = input_ids[:, 1:]  # (B, T-1)
    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    logprobs = (target_logits - torch.logsumexp(logits, dim=-1)).double().cpu().numpy()
    return [logprobs[row, : max(length - 1, 0)] for row, length in enumerate(lengths)]
