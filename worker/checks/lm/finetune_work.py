"""The finetune kind's model work over one batch: the same token rows through the fine-tune and
its base (one mixed-batch pass for a LoRA adapter, two passes for a full fine-tune), read into
Δℓ scores and window verdicts per record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.access import PermanentError
from worker.checks.lm.finetune import FinetuneParams
from worker.checks.lm.passes import KindWork
from worker.engine.extraction import window_offsets
from worker.engine.finetune import (
    RowScores,
    delta_scores,
    document_verdict,
    score_rows,
    score_rows_paired,
    window_verdict,
)
from worker.engine.scoring import truncate
from worker.loaders.models import ADAPTER_NAME, LoadedModel


def same_tokens(target: LoadedModel, base: LoadedModel) -> None:
    """Δℓ compares the two models token by token: they must share a vocabulary and specials."""
    if target.peft is not None:
        return  # an adapter runs on its base with the base's tokenizer
    if (
        target.tokenizer.get_vocab() != base.tokenizer.get_vocab()
        or target.special_prefix != base.special_prefix
    ):
        raise PermanentError(
            f"the reference model {base.spec.uri} tokenizes differently from {target.spec.uri}: "
            "finetune compares log-likelihoods token by token, so the base must be the model "
            "the fine-tune started from, with its tokenizer"
        )


def _rows(
    text: str, target: LoadedModel, params: FinetuneParams, max_tokens: int, context: int
) -> tuple[list[list[int]], list[int], bool]:
    """The text row, then one row per window; and the window offsets, and whether the text
    was cut. No window when one does not fit the models' `context` (see `_record`)."""
    specials = target.special_prefix
    ids = target.encode(text)
    full, truncated = truncate(specials + ids, max_tokens)
    if window_exceeds_context(target, params, context):
        return [full], [], truncated
    offsets = window_offsets(
        len(ids),
        params.prefix_tokens,
        params.suffix_tokens,
        params.offset,
        params.stride,
        params.max_windows,
    )
    span = params.prefix_tokens + params.suffix_tokens
    rows = [full] + [specials + ids[o : o + span] for o in offsets]
    return rows, offsets, truncated


def window_exceeds_context(target: LoadedModel, params: FinetuneParams, context: int) -> bool:
    """A window row (specials, prefix, suffix) longer than the models' context cannot be run."""
    return len(target.special_prefix) + params.prefix_tokens + params.suffix_tokens > context


def finetune_work(work: KindWork, params: FinetuneParams) -> list[dict[str, Any]]:
    target, base = work.target, work.reference
    if target.peft is None and base is None:
        raise PermanentError("finetune needs the base model as the reference_model")
    if base is not None:
        same_tokens(target, base)
    max_tokens = min(work.max_tokens, base.max_tokens) if base is not None else work.max_tokens
    # Windows are rows of their own: they need the models' context, not the audit's max_tokens.
    context = min(target.max_tokens, base.max_tokens) if base is not None else target.max_tokens
    per_record = [_rows(r.text, target, params, max_tokens, context) for r in work.records]
    rows = [row for record_rows, _, _ in per_record for row in record_rows]
    work.count_tokens(2 * sum(len(row) for row in rows))  # each row under the target and base
    if target.peft is not None:
        found, under_base = score_rows_paired(
            target.peft, rows, target.device, work.batch_size, ADAPTER_NAME
        )
        how = "one mixed-batch pass (LoRA adapter unmerged; base rows under __base__)"
    else:
        assert base is not None
        found = score_rows(target.model, rows, target.device, work.batch_size)
        under_base = score_rows(base.model, rows, base.device, work.batch_size)
        how = "two passes (full fine-tune, then base)"
    results, at = [], 0
    for record_rows, offsets, truncated in per_record:
        n = len(record_rows)
        values = _record(found[at : at + n], under_base[at : at + n], offsets, target, params)
        values |= {"truncated": truncated, "pass": how}
        if window_exceeds_context(target, params, context):
            values["window_skipped"] = "window_exceeds_context"
        results.append(values)
        at += n
    return results


def _record(
    target: Sequence[RowScores],
    base: Sequence[RowScores],
    offsets: Sequence[int],
    model: LoadedModel,
    params: FinetuneParams,
) -> dict[str, Any]:
    specials = len(model.special_prefix)
    # Prediction i is of token i+1: the text's first token is predicted at specials-1 (with no
    # special before it, it has no left context and is not scored).
    values = delta_scores(target[0], base[0], params.k, start=max(specials - 1, 0))
    if not offsets:
        return values | {"n_windows": 0}
    suffix_start = specials + params.prefix_tokens - 1
    windows = [
        (offset, window_verdict(t, b, suffix_start, params.suffix_tokens))
        for offset, t, b in zip(offsets, target[1:], base[1:], strict=True)
    ]
    return values | document_verdict(windows)
