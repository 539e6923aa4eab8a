"""Planning and running the teacher-forced passes that every LM check of a batch shares.

Per record: the text (for loss and membership, and for extraction's window at offset 0), the
lowercased text when asked for, one short sequence per further extraction window, and the
text through the reference model with its own tokenizer.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.check_kinds import CheckKind, CheckParams, Lazy, SubmitContext
from core.inspection.adapters import ADAPTER_FORMAT
from worker.access import PermanentError
from worker.checks.lm.labels import read_record
from worker.checks.lm.recheck import computes_below_float32, float32_compute
from worker.checks.lm.samples import ExtractionWindow, LMPlan, LMSample, PacPlan, merge_plans
from worker.checks.shard_pass import ShardInput, ShardPass, loaded_info
from worker.engine.attacks_pac import augmentations
from worker.engine.batching import plan_batches
from worker.engine.extraction import window_fragile, window_offsets
from worker.engine.scoring import ScoringRequest, score_sequences, truncate
from worker.loaders.models import LoadedModel, cached_adapter_lm

if TYPE_CHECKING:  # the corpus link (and its PII recognizers) loads only when a check names one
    from worker.checks.lm.corpus_link import CorpusLink


def audit_plan(
    checks: Sequence[tuple[CheckKind, CheckParams]], target: LoadedModel, has_reference_model: bool
) -> tuple[LMPlan, int]:
    """The passes every LM check of an audit shares, and the token limit they run under."""
    context = SubmitContext(has_reference_model=has_reference_model)
    plan = merge_plans([kind.plan(params, context) for kind, params in checks])
    return plan, min(target.max_tokens, plan.max_tokens or target.max_tokens)


@dataclass
class RecordPlan:
    requests: dict[str, ScoringRequest] = field(default_factory=dict)
    windows: list[ExtractionWindow] = field(default_factory=list)
    n_text_tokens: int = 0
    # The text tokens the text pass kept when it had to cut the text (None: it kept them all).
    kept_text_ids: list[int] | None = None
    reference: ScoringRequest | None = None
    same_ref_tokens: bool = False


def plan_record(
    text: str, plan: LMPlan, target: LoadedModel, reference: LoadedModel | None, max_tokens: int
) -> RecordPlan:
    specials = target.special_prefix
    text_ids = target.encode(text)
    record = RecordPlan(n_text_tokens=len(text_ids))
    full: list[int] = []
    truncated = False
    if plan.text:
        full, truncated = truncate(specials + text_ids, max_tokens)
        if truncated:
            record.kept_text_ids = full[len(specials) :]
    text_positions: list[int] = []
    params = plan.extraction
    # A window longer than the model's context is never scored (its record is skipped as
    # `window_exceeds_context` by compute_extraction), rather than crash the batch.
    if params is not None and len(specials) + params.prefix_tokens + params.suffix_tokens <= (
        target.max_tokens
    ):
        span = params.prefix_tokens + params.suffix_tokens
        offsets = window_offsets(
            len(text_ids),
            params.prefix_tokens,
            params.suffix_tokens,
            params.offset,
            params.stride,
            params.max_windows,
        )
        suffix_start = len(specials) + params.prefix_tokens - 1
        positions = range(suffix_start, suffix_start + params.suffix_tokens)
        for offset in offsets:
            tokens = {
                "prefix_ids": tuple(text_ids[offset : offset + params.prefix_tokens]),
                "suffix_ids": tuple(text_ids[offset + params.prefix_tokens : offset + span]),
            }
            # A causal model sees only the left context: the text pass already holds the
            # window at offset 0, so it is read from there rather than run again.
            if offset == 0 and plan.text and len(full) >= len(specials) + span:
                text_positions.extend(positions)
                record.windows.append(ExtractionWindow(0, "text", suffix_start, **tokens))
                continue
            window = ExtractionWindow(offset, f"window:{offset}", suffix_start, **tokens)
            request = window_request(specials, window, params.suffix_tokens)
            record.requests[window.sequence] = request
            record.windows.append(window)
    if plan.text:
        record.requests["text"] = ScoringRequest(full, truncated, text_positions, plan.moments)
    if plan.pac is not None:
        record.requests.update(pac_requests(text, plan.pac, target, max_tokens))
    if plan.lower:
        lower, lower_truncated = truncate(specials + target.encode(text.lower()), max_tokens)
        record.requests["lower"] = ScoringRequest(lower, lower_truncated)
    if plan.reference and reference is not None:
        ref_ids, ref_truncated = truncate(
            reference.special_prefix + reference.encode(text), reference.max_tokens
        )
        record.reference = ScoringRequest(ref_ids, ref_truncated)
        record.same_ref_tokens = ref_ids == full
    return record


def pac_requests(
    text: str, pac: PacPlan, target: LoadedModel, max_tokens: int
) -> dict[str, ScoringRequest]:
    """PAC's augmentations of the record, each a teacher-forced sequence `pac:<i>`."""
    found = {}
    for i, augmented in enumerate(augmentations(text, pac.seed, pac.alpha, pac.n)):
        ids, truncated = truncate(target.special_prefix + target.encode(augmented), max_tokens)
        found[f"pac:{i}"] = ScoringRequest(ids, truncated)
    return found


def window_request(
    specials: list[int], window: ExtractionWindow, suffix_tokens: int
) -> ScoringRequest:
    """One extraction window scored on its own: its prefix and suffix after the model's
    special tokens, with detail at the suffix's predictions."""
    return ScoringRequest(
        specials + list(window.prefix_ids) + list(window.suffix_ids),
        detail_positions=range(window.suffix_start, window.suffix_start + suffix_tokens),
    )


def score_records(
    records: Sequence[RecordPlan],
    plan: LMPlan,
    target: LoadedModel,
    reference: LoadedModel | None,
    batch_size: int,
) -> list[dict]:
    """Run every request of every record; returns, per record, name -> TokenStats."""
    keys = [(i, name) for i, record in enumerate(records) for name in record.requests]
    stats = score_sequences(
        target.model,
        [records[i].requests[n] for i, n in keys],
        target.device,
        schemes=plan.schemes,
        batch_size=batch_size,
    )
    passes: list[dict] = [{} for _ in records]
    for (i, name), value in zip(keys, stats, strict=True):
        passes[i][name] = value
    if reference is not None:
        ref_keys = [i for i, record in enumerate(records) if record.reference is not None]
        ref_stats = score_sequences(
            reference.model,
            [records[i].reference for i in ref_keys],
            reference.device,
            batch_size=batch_size,
        )
        for i, value in zip(ref_keys, ref_stats, strict=True):
            passes[i]["__reference__"] = value
    return passes


def recheck_fragile(
    records: Sequence[RecordPlan],
    passes: Sequence[MutableMapping],
    plan: LMPlan,
    target: LoadedModel,
    batch_size: int,
) -> int:
    """Score every fragile extraction window again in float32, as `recheck:<offset>` beside the
    record's passes (docs/numerics.md). Returns the number of windows re-scored: none when the
    model already computes in float32, which leaves its fragile windows fragile."""
    params = plan.extraction
    if params is None or not computes_below_float32(target.model):
        return 0
    fragile = [
        (i, window)
        for i, record in enumerate(records)
        for window in record.windows
        if window_fragile(passes[i][window.sequence], window.suffix_start, params.suffix_tokens)
    ]
    if not fragile:
        return 0
    requests = [window_request(target.special_prefix, w, params.suffix_tokens) for _, w in fragile]
    with float32_compute(target.model, target.device) as model:
        stats = score_sequences(
            model,
            requests,
            target.device,
            schemes=plan.schemes,
            batch_size=batch_size,
            compute_dtype=torch.float32,
        )
    for (i, window), value in zip(fragile, stats, strict=True):
        passes[i][f"recheck:{window.offset}"] = value
    return len(fragile)


def lm_sample(
    sample_id: str,
    text: str,
    member: bool | None,
    duplicates: int | None,
    record: RecordPlan,
    passes: dict,
    target: LoadedModel | None = None,
) -> LMSample:
    reference = passes.pop("__reference__", None)
    return LMSample(
        sample_id=sample_id,
        text=text,
        member=member,
        duplicates=duplicates,
        passes=passes,
        n_text_tokens=record.n_text_tokens,
        windows=record.windows,
        reference=reference,
        same_ref_tokens=record.same_ref_tokens,
        render=target.render_window if target is not None else None,
    )


@dataclass(frozen=True)
class TextRecord:
    sample_id: str
    text: str
    member: bool | None = None
    duplicates: int | None = None
    index: int | None = None  # position in the dataset file (ids may repeat)


@dataclass(frozen=True)
class KindWork:
    """What a kind's own model work is given for one batch, beyond the shared passes: a kind
    that must generate, or stream windows, does it here and hands each record its result."""

    records: Sequence[TextRecord]
    plans: Sequence[RecordPlan]
    target: LoadedModel
    reference: LoadedModel | None
    max_tokens: int
    batch_size: int
    dataset: Path | None  # the whole dataset's file, for work that reads beyond the batch
    access: Any = None  # the audit's grants (worker.access.Access), for a further model it names
    # Tokens the kinds' own model work ran through a model, added by each work function; the
    # batch's "tokens scored" counts them with the shared passes' (mutable inside a frozen work).
    scored: list[int] = field(default_factory=lambda: [0])

    def count_tokens(self, n: int) -> None:
        """Adds `n` tokens run through a model by this kind's own work."""
        self.scored[0] += int(n)


# Kind name -> "module:function" taking (KindWork, params) and returning one result per record,
# found in each record's `LMSample.extras[kind]`. Kinds whose values come from the shared
# passes alone are not listed.
KIND_WORK: dict[str, Lazy] = {
    "coverage": Lazy("worker.checks.lm.coverage:coverage_work"),
    "approximate": Lazy("worker.checks.lm.approximate_compute:generate_approximate"),
    "finetune": Lazy("worker.checks.lm.finetune_work:finetune_work"),
    "membership": Lazy("worker.checks.lm.membership_work:membership_work"),
}


def compute_batch(
    batch: Sequence[TextRecord],
    checks: Sequence[tuple],
    plan: LMPlan,
    target: LoadedModel,
    reference: LoadedModel | None,
    max_tokens: int,
    batch_size: int,
    links: dict[str, CorpusLink] | None = None,
    dataset: Path | None = None,
    access: Any = None,
) -> tuple[list[list[dict]], int]:
    """Per check, the per-sample values of one batch of records; and the tokens scored.
    A check that names a corpus audit gets its records' corpus counts from that link."""
    plans = [plan_record(r.text, plan, target, reference, max_tokens) for r in batch]
    passes = score_records(plans, plan, target, reference, batch_size)
    recheck_fragile(plans, passes, plan, target, batch_size)
    samples = [
        lm_sample(r.sample_id, r.text, r.member, r.duplicates, p, s, target)
        for r, p, s in zip(batch, plans, passes, strict=True)
    ]
    work = KindWork(batch, plans, target, reference, max_tokens, batch_size, dataset, access)
    for kind, params in checks:
        if kind.name in KIND_WORK:
            results = KIND_WORK[kind.name](work, params)
            for sample, result in zip(samples, results, strict=True):
                sample.extras[kind.name] = result
    n_tokens = sum(len(r.input_ids) for p in plans for r in p.requests.values())
    n_tokens += work.scored[0]
    found = [kind.compute(samples, params) for kind, params in checks]
    for (kind, params), rows in zip(checks, found, strict=True):
        link = (links or {}).get(getattr(params, "corpus_audit", None) or "")
        if link is not None:
            from worker.checks.lm.corpus_link import annotate

            scored = [
                r.text if p.kept_text_ids is None else target.decode(p.kept_text_ids)
                for r, p in zip(batch, plans, strict=True)
            ]
            annotate(kind.name, link, samples, scored, rows, target.decode)
    return found, n_tokens


def corpus_links(shard: ShardInput) -> dict[str, CorpusLink]:
    """The corpus audits the shard's checks name, each opened once."""
    named = {getattr(params, "corpus_audit", None) for _, params in shard.checks} - {None}
    if not named:
        return {}
    from worker.checks.lm.corpus_link import open_corpus_link

    return {audit_id: open_corpus_link(shard.access, audit_id) for audit_id in sorted(named)}


def open_target(shard: ShardInput) -> LoadedModel:
    """The audited model; a LoRA adapter loads, unmerged, onto the audit's reference model
    (its base: the adapter's own `base_model_name_or_path` is never followed)."""
    spec = shard.target.spec
    if shard.target.held is None and spec is not None and spec.format == ADAPTER_FORMAT:
        if not shard.reference_uri:
            raise PermanentError(
                f"{spec.uri} is a LoRA adapter: name its base model as the reference_model"
            )
        return cached_adapter_lm(spec, shard.access.causal_lm(shard.reference_uri))
    return shard.target.causal_lm()


def open_pass(shard: ShardInput) -> ShardPass:
    """The LM kinds' shared passes over one shard, batched by text length."""
    target = open_target(shard)
    plan, max_tokens = audit_plan(shard.checks, target, shard.reference_uri is not None)
    reference = (
        shard.access.causal_lm(shard.reference_uri)
        if (plan.reference or plan.load_reference) and shard.reference_uri
        else None
    )
    texts = [TextRecord(r.sample_id, *read_record(r), index=r.index) for r in shard.records]
    info = loaded_info(target)
    info["reference_model_sha256"] = reference.content_sha256 if reference else None
    links = corpus_links(shard)
    if links:
        info["corpus_links"] = [link.info for link in links.values()]
        # Into the provenance's `artefacts`, beside the checks' params that name the audits.
        info["artefacts"] = {f"corpus:{key}": link.info["index"] for key, link in links.items()}

    def compute(batch: Sequence[int]) -> tuple[list[list[dict]], int]:
        return compute_batch(
            [texts[i] for i in batch],
            shard.checks,
            plan,
            target,
            reference,
            max_tokens,
            shard.batch_size,
            links,
            shard.dataset,
            shard.access,
        )

    order = plan_batches([len(item.text) for item in texts], shard.batch_size)
    return ShardPass(compute, info, order=order)
