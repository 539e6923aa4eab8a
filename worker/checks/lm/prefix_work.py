"""The membership check's own model work for ReCaLL, Con-ReCall and DC-PDD (passes.KIND_WORK):
per batch, each scored record's log-likelihood after the held-out non-member (and member)
prefix, run once per batch and shared, and the held-out token frequencies DC-PDD calibrates
with. The ratios themselves are formed in compute.py, beside the text pass's LL(x)."""

from __future__ import annotations

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


# (model, prefix ids) -> the prefix run once; the model is held so its id cannot be reused.
_PREFIXES: dict[tuple, tuple[object, PrefixState]] = {}


def _encoded(target: LoadedModel, ids: list[int]) -> PrefixState:
    """Each prefix runs once per model (per shard), not once per batch."""
    key = (id(target.model), tuple(ids))
    if key not in _PREFIXES:
        if len(_PREFIXES) >= 2:  # ReCaLL's and Con-ReCall's: no more are held
            _PREFIXES.clear()
        _PREFIXES[key] = (target.model, encode_prefix(target.model, ids, target.device))
    return _PREFIXES[key][1]


_FREQUENCIES: dict[tuple, np.ndarray] = {}


def _frequencies(target: LoadedModel, held: HeldOut) -> np.ndarray:
    """Computed once per held-out set and model (select_holdout caches the set)."""
    key = (held.members, held.nonmembers, id(target))
    if key not in _FREQUENCIES:
        _FREQUENCIES.clear()
        _FREQUENCIES[key] = _count_frequencies(target, held)
    return _FREQUENCIES[key]


def _count_frequencies(target: LoadedModel, held: HeldOut) -> np.ndarray:
    vocab = target.model.get_output_embeddings().weight.shape[0]
    ids = (target.encode(text)[:FREQUENCY_MAX_TOKENS] for text in held.texts.values())
    return smoothed_log_frequencies(token_counts(ids, vocab))


def membership_work(work: KindWork, params: MembershipParams) -> list[dict[str, Any]]:
    """Per record: {"held_out": role}, or what its prefix scores need, or {"holdout_error"}."""
    wanted = params.prefix_scores()
    if not wanted:
        return [{} for _ in work.records]
    if params.reference_corpus is None and work.dataset is None:
        error = "no dataset file to hold records out of (a local audit of texts)"
        return [{"holdout_error": error} for _ in work.records]
    try:
        if params.reference_corpus is not None:
            corpus = work.access.open_dataset(params.reference_corpus)
            held = select_reference(corpus, params.shots, params.seed, "con_recall" in wanted)
        else:
            held = select_holdout(work.dataset, params.holdout_share, params.shots, params.seed)
    except HoldoutError as exc:
        return [{"holdout_error": str(exc)} for _ in work.records]
    results: list[dict[str, Any]] = [{} for _ in work.records]
    scored: list[int] = []
    for i, record in enumerate(work.records):
        role = held.role(record.sample_id)
        if role is None:
            scored.append(i)
        else:
            results[i] = {"held_out": role}
    if not scored:
        return results
    target = work.target
    specials = len(target.special_prefix)
    prefixes = {"nonmember": prefix_ids(target, held.prefix_texts(False), params.prefix_tokens)}
    if "con_recall" in wanted:
        prefixes["member"] = prefix_ids(target, held.prefix_texts(True), params.prefix_tokens)
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
    log_frequencies = _frequencies(target, held) if "dc_pdd" in wanted else None
    for n, i in enumerate(scored):
        found: dict[str, Any] = {"n_conditioned": len(texts[n]), "specials": specials}
        text_request = work.plans[i].requests.get("text")
        if text_request is not None:  # the tokens the text pass predicts, for DC-PDD
            found["predicted_ids"] = list(text_request.input_ids[1:])
        for name, logprobs in conditioned.items():
            found[f"ll_{name}_prefix"] = float(logprobs[n].mean()) if len(logprobs[n]) else None
        if log_frequencies is not None:
            found["log_frequencies"] = log_frequencies  # one array, shared by the batch
        results[i] = found
    return results
