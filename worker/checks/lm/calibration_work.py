"""The membership check's own model work: the neighbourhood attack's neighbours.

Neighbours come from a second model (the masked LM the params name), so they cannot be planned
with the shared pass; they are made here per batch, then scored under the target in one batched
teacher-forced call (the same `score_sequences` the shared pass uses, so a neighbour's loss is
computed exactly as the record's own). PAC needs no model beyond the target: its augmentations
are requests of the shared pass (`pac:<i>`, passes.pac_requests).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from worker.checks.lm.kinds import MembershipParams
from worker.checks.lm.passes import KindWork
from worker.engine.neighbourhood import neighbours
from worker.engine.scoring import ScoringRequest, score_sequences, truncate


def neighbour_losses(
    work: KindWork, params: MembershipParams, held_out: frozenset[int] = frozenset()
) -> list[dict[str, Any] | None]:
    """Per record: its neighbours' losses under the target (None when not asked for, and for
    the batch positions in `held_out`: records no score may score get no neighbours made)."""
    if params.neighbour_model is None or "neighbourhood" not in params.wanted(True):
        return [None] * len(work.records)
    if held_out:
        kept = [i for i in range(len(work.records)) if i not in held_out]
        found = neighbour_losses(_only(work, kept), params) if kept else []
        results: list[dict[str, Any] | None] = [None] * len(work.records)
        for i, value in zip(kept, found, strict=True):
            results[i] = value
        return results
    from worker.loaders.masked_lm import cached_masked_lm

    if work.access is None:
        raise ValueError("the neighbourhood score needs the audit's grants to load its masked LM")
    masked = cached_masked_lm(work.access.spec(params.neighbour_model))
    target = work.target
    found = [
        neighbours(
            record.text,
            masked.model,
            masked.tokenizer,
            n=params.neighbours,
            seed=params.seed,
            batch_size=max(work.batch_size, 1),
            max_length=min(masked.max_length, 512),
        )
        for record in work.records
    ]
    requests = [
        ScoringRequest(*truncate(target.special_prefix + target.encode(text), work.max_tokens))
        for texts in found
        for text in texts
    ]
    stats = score_sequences(target.model, requests, target.device, batch_size=work.batch_size)
    work.count_tokens(sum(len(r.input_ids) for r in requests))
    results: list[dict[str, Any] | None] = []
    start = 0
    for texts in found:
        losses = [
            -s.mean_logprob for s in stats[start : start + len(texts)] if s.mean_logprob is not None
        ]
        start += len(texts)
        results.append({"neighbour_losses": losses})
    return results


def _only(work: KindWork, positions: list[int]) -> KindWork:
    return replace(
        work,
        records=[work.records[i] for i in positions],
        plans=[work.plans[i] for i in positions],
    )
