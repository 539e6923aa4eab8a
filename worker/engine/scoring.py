"""The teacher-forced pass: one forward over the true text yields every per-token statistic.

Position t is scored when it has a left context, so logits at t-1 predict token t
(METRICS.md §1). Right padding plus an attention mask keeps batching from changing results.
The output head runs over chunks of positions, so memory for full-vocabulary work stays within
a budget instead of growing with batch x length x vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worker.engine.sampling import Scheme, scheme_logprobs
from worker.engine.token_stats import TokenStats

DEFAULT_VOCAB_BUDGET_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class ScoringRequest:
    input_ids: Sequence[int]
    truncated: bool = False
    # Stats indices (position t-1) where the schemes' probabilities are wanted.
    scheme_positions: Sequence[int] = ()


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Group indices of similar length together so batches carry little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


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


def _hidden_states(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state  # (B, T, H)


def _position_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every §1 statistic for a chunk of positions. logits (C, V) float32, targets (C,)."""
    rows = torch.arange(targets.shape[0], device=logits.device)
    target_logit = logits[rows, targets]  # (C,)
    log_norm = torch.logsumexp(logits, dim=-1)
    logp = logits - log_norm[:, None]  # (C, V)
    p = logp.exp()
    mu = (p * logp).sum(dim=-1, dtype=torch.float64)  # Σ p log p = -H
    # Two-pass variance: E[(log p)^2] - μ^2 would cancel catastrophically in float32.
    variance = (p * (logp - mu.float()[:, None]).square()).sum(dim=-1, dtype=torch.float64)
    top2 = torch.topk(logits, 2, dim=-1)
    best_other = torch.where(top2.indices[:, 0] == targets, top2.values[:, 1], top2.values[:, 0])
    return {
        "logprobs": target_logit.double() - log_norm.double(),
        "ranks": 1 + (logits > target_logit[:, None]).sum(dim=-1),
        "ties": (logits == target_logit[:, None]).sum(dim=-1) - 1,
        "argmax_match": logits.argmax(dim=-1) == targets,
        "margins": (target_logit - best_other).double(),
        "entropy": -mu,
        "sigma": variance.sqrt(),
    }


@torch.inference_mode()
def score_sequences(
    model: torch.nn.Module,
    requests: Sequence[ScoringRequest],
    device: str | torch.device,
    *,
    schemes: Sequence[Scheme] = (),
    batch_size: int = 16,
    vocab_budget_bytes: int = DEFAULT_VOCAB_BUDGET_BYTES,
) -> list[TokenStats]:
    """TokenStats for every request, batched by length, one forward pass per batch."""
    results: list[TokenStats | None] = [None] * len(requests)
    vocab = model.get_output_embeddings().weight.shape[0]
    # float64 copies in the scheme code make the per-position footprint about 6 x 4 bytes x V.
    chunk = max(1, vocab_budget_bytes // (24 * vocab))
    for batch in plan_batches([len(r.input_ids) for r in requests], batch_size):
        width = max(len(requests[i].input_ids) for i in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids = requests[i].input_ids
            input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        hidden = _hidden_states(model, input_ids, attention_mask)
        for row, i in enumerate(batch):
            results[i] = _stats_for_row(
                model, hidden[row], input_ids[row], requests[i], schemes, chunk
            )
    return results  # type: ignore[return-value]


def _stats_for_row(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    ids: torch.Tensor,
    request: ScoringRequest,
    schemes: Sequence[Scheme],
    chunk: int,
) -> TokenStats:
    n = len(request.input_ids)
    n_scored = max(n - 1, 0)
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n_scored, chunk):
        stop = min(start + chunk, n_scored)
        logits = _final_logits(model, hidden[start:stop])  # (C, V)
        for name, value in _position_stats(logits, ids[start + 1 : stop + 1]).items():
            parts.setdefault(name, []).append(value.cpu())
    arrays = {name: torch.cat(values).numpy() for name, values in parts.items()}

    wanted = sorted(set(request.scheme_positions))
    scheme_values: dict[str, np.ndarray] = {}
    fragile_values: dict[str, np.ndarray] = {}
    if schemes and wanted:
        positions = torch.as_tensor(wanted, dtype=torch.long, device=hidden.device)
        for scheme in schemes:
            scheme_values[scheme.name] = np.full(n_scored, np.nan)
            fragile_values[scheme.name] = np.zeros(n_scored, dtype=bool)
        for start in range(0, len(wanted), chunk):
            pos = positions[start : start + chunk]
            logits = _final_logits(model, hidden[pos])
            targets = ids[pos + 1]
            for scheme in schemes:
                logp, fragile = scheme_logprobs(logits, targets, scheme)
                scheme_values[scheme.name][pos.cpu().numpy()] = logp.cpu().numpy()
                fragile_values[scheme.name][pos.cpu().numpy()] = fragile.cpu().numpy()

    empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    return TokenStats(
        n_tokens=n,
        logprobs=arrays.get("logprobs", empty_f),
        truncated=request.truncated,
        ranks=arrays.get("ranks", empty_i),
        ties=arrays.get("ties", empty_i),
        argmax_match=arrays.get("argmax_match", np.zeros(0, dtype=bool)),
        margins=arrays.get("margins", empty_f),
        entropy=arrays.get("entropy", empty_f),
        sigma=arrays.get("sigma", empty_f),
        scheme_logprobs=scheme_values,
        nucleus_fragile=fragile_values,
    )


def teacher_forced_logprobs(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], device: str | torch.device
) -> list[np.ndarray]:
    """ℓ_t alone, for callers that need nothing else."""
    requests = [ScoringRequest(seq) for seq in sequences]
    return [stats.logprobs for stats in score_sequences(model, requests, device)]
