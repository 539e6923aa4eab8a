"""The membership check's own model work for ReCaLL, Con-ReCall and DC-PDD (passes.KIND_WORK):
per batch, each scored record's log-likelihood after the held-out non-member (and member)
prefix, run once per batch and shared, and the held-out token frequencies DC-PDD calibrates
with. The ratios themselves are formed in compute.py, beside the text pass's LL(x)."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from worker.checks.lm.holdout import HeldOut, HoldoutError, select_holdout, select_reference
from worker.checks.lm.kinds import MembershipParams
from worker.checks.lm.passes import KindWork
from worker.engine.prefix_attacks import smoothed_log_frequencies, token_counts
from worker.engine.prefix_scoring import PrefixState, encode_prefix, prefix_logprobs
from worker.loaders.models import LoadedModel

# DC-PDD's reference texts are cut as the authors cut theirs (com_fre_dis.py, --max_tok).
FREQUENCY_MAX_TOKENS = 1024


def prefix_ids(target: LoadedModel, texts: list[str], budget: int) -> list[int]:
    """The model's special tokens, then the shots' tokens joined (the authors join the texts
    with no separator), cut to `budget` tokens."""
    joined = [token for text in texts for token in target.encode(text)]
    return list(target.special_prefix) + joined[:budget]


# model -> (prefix ids -> the prefix run once): keyed weakly, so a prefix's KV cache goes with
# its model instead of living as long as the process.
_PREFIXES: weakref.WeakKeyDictionary[object, dict[tuple[int, ...], PrefixState]] = (
    weakref.WeakKeyDictionary()
)


def _encoded(target: LoadedModel, ids: list[int]) -> PrefixState:
    """Each prefix runs once per model (per shard), not once per batch."""
    held = _PREFIXES.setdefault(target.model, {})
    key = tuple(ids)
    if key not in held:
        if len(held) >= 2:  # ReCaLL's and Con-ReCall's: no more are held
            held.clear()
        held[key] = encode_prefix(target.model, ids, target.device)
    return held[key]


def _frequencies(target: LoadedModel, held: HeldOut) -> np.ndarray:
    """Counted once per held-out set and model: held on the set itself (select_holdout and
    select_reference cache one per file version), keyed by the model's content hash, so two
    corpora, or two models, never share counts."""
    key = target.content_sha256
    if key not in held.frequencies:
        held.frequencies.clear()  # one model per shard: no more are held
        held.frequencies[key] = _count_frequencies(target, held)
    return held.frequencies[key]  # type: ignore[return-value]


def _count_frequencies(target: LoadedModel, held: HeldOut) -> np.ndarray:
    vocab = target.model.get_output_embeddings().weight.shape[0]
    ids = (target.encode(text)[:FREQUENCY_MAX_TOKENS] for text in held.texts.values())
    return smoothed_log_frequencies(token_counts(ids, vocab))


def prefix_budget(target: LoadedModel, prefix_tokens: int) -> int:
    """The shots' tokens a prefix may hold: `prefix_tokens`, cut so the prefix (special tokens
    included) takes at most half the model's context and the text keeps the rest (the authors'
    process_prefix likewise drops shots until the prefix fits beside the text); 0 when the
    context leaves no room for a shot and two text tokens."""
    specials = len(target.special_prefix)
    budget = max(0, min(prefix_tokens, target.max_tokens // 2 - specials))
    # The text needs two tokens after the prefix: one read with a left context of its own.
    return budget if target.max_tokens - specials - budget >= 2 else 0


# (audit's grants, corpus uri, selection) -> (the grants, held so their id cannot be reused;
# the reference corpus's held-out set, or why it has none): the corpus is opened and read once
# per shard, a failure included.
_REFERENCES: dict[tuple, tuple[object, HeldOut | HoldoutError]] = {}


def _reference(work: KindWork, params: MembershipParams, members_needed: bool) -> HeldOut:
    key = (id(work.access), params.reference_corpus, params.shots, params.seed, members_needed)
    if key not in _REFERENCES:
        _REFERENCES.clear()  # one shard at a time: the last shard's grants are let go
        corpus = work.access.open_dataset(params.reference_corpus)
        try:
            found: HeldOut | HoldoutError = select_reference(
                corpus, params.shots, params.seed, members_needed
            )
        except HoldoutError as exc:
            found = exc
        _REFERENCES[key] = (work.access, found)
    found = _REFERENCES[key][1]
    if isinstance(found, HoldoutError):
        raise HoldoutError(str(found))
    return found


def prefix_passes(work: KindWork, params: MembershipParams) -> list[dict[str, Any]]:
    """Per record: {"held_out": role, "index"}, or what its prefix scores need, or
    {"holdout_error"} (held_out_scores.py decides whether the record's values say it)."""
    wanted = params.prefix_scores()
    if not wanted:
        return [{} for _ in work.records]
    target = work.target
    budget = prefix_budget(target, params.prefix_tokens)
    if budget < 1:
        error = (
            f"the model's context ({target.max_tokens} tokens) leaves no room for a prefix "
            "beside the text"
        )
        return [{"holdout_error": error} for _ in work.records]
    if params.reference_corpus is None and work.dataset is None:
        error = "no dataset file to hold records out of"
        return [{"holdout_error": error} for _ in work.records]
    try:
        if params.reference_corpus is not None:
            held = _reference(work, params, "con_recall" in wanted)
        else:
            held = select_holdout(work.dataset, params.holdout_share, params.shots, params.seed)
    except HoldoutError as exc:
        return [{"holdout_error": str(exc)} for _ in work.records]
    results: list[dict[str, Any]] = [{} for _ in work.records]
    scored: list[int] = []
    for i, record in enumerate(work.records):
        role = held.role(record.index)
        if role is None:
            scored.append(i)
        else:
            results[i] = {"held_out": role, "index": record.index}
    if not scored:
        return results
    specials = len(target.special_prefix)
    prefixes = {"nonmember": prefix_ids(target, held.prefix_texts(False), budget)}
    if "con_recall" in wanted:
        prefixes["member"] = prefix_ids(target, held.prefix_texts(True), budget)
    longest = max(len(p) for p in prefixes.values())
    texts = []
    for i in scored:
        plan = work.plans[i]
        kept = plan.kept_text_ids
        ids = kept if kept is not None else target.encode(work.records[i].text)
        # Both LLs read the same text tokens: those that fit after the longer prefix.
        texts.append(list(ids[: max(target.max_tokens - longest, 0)]))
    conditioned = {
        name: prefix_logprobs(
            target.model, _encoded(target, ids), texts, target.device, batch_size=work.batch_size
        )
        for name, ids in prefixes.items()
    }
    work.count_tokens(sum(len(p) * len(texts) + sum(map(len, texts)) for p in prefixes.values()))
    log_frequencies = _frequencies(target, held) if "dc_pdd" in wanted else None
    for n, i in enumerate(scored):
        found: dict[str, Any] = {
            "n_conditioned": len(texts[n]),
            "specials": specials,
            "n_prefix_tokens": longest - specials,
        }
        text_request = work.plans[i].requests.get("text")
        if text_request is not None:  # the tokens the text pass predicts, for DC-PDD
            found["predicted_ids"] = list(text_request.input_ids[1:])
        for name, logprobs in conditioned.items():
            found[f"ll_{name}_prefix"] = float(logprobs[n].mean()) if len(logprobs[n]) else None
        if log_frequencies is not None:
            found["log_frequencies"] = log_frequencies  # one array, shared by the batch
        results[i] = found
    return results
