"""Finalizing an audit: every summary recomputed from the stored rows, so it is idempotent."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import core
from core.check_kinds import CheckKind, UnknownCheck
from core.config import Settings
from core.db import Database, utcnow
from core.models import Audit, AuditPolicy, AuditStatus, SampleResult, Shard, ShardStatus
from core.policies import audit_warnings
from core.verdicts import evaluate, failed_verdict, has_relative
from worker import gates
from worker.audit_texts import AuditTexts
from worker.checks.registry import REGISTRY


def _provenance(audit: Audit, shards: list[Shard]) -> dict[str, Any]:
    infos = [shard.info or {} for shard in shards]
    model_hashes = sorted({info.get("model_sha256") for info in infos if info.get("model_sha256")})
    return {
        "model_uri": audit.model_uri,
        "model_sha256": model_hashes[0] if len(model_hashes) == 1 else model_hashes,
        "dataset_uri": audit.dataset_uri,
        "dataset_sha256": audit.dataset_sha256,
        "checks": audit.checks,
        "code_version": core.__version__,
        "seed": None,  # no stochastic step in these checks
        "devices": sorted({info.get("device") for info in infos if info.get("device")}),
        "dtypes": sorted({info.get("dtype") for info in infos if info.get("dtype")}),
        "timings": {
            "shard_seconds": round(sum(info.get("seconds", 0.0) for info in infos), 3),
            "n_shards": len(shards),
            "retried_shards": sum(1 for info in infos if info.get("attempt", 1) > 1),
        },
        "n_tokens": sum(info.get("n_tokens", 0) for info in infos),
        # Dataset kinds: the tokenizer spans were counted in, and the corpus artefacts read.
        "tokenizers": sorted({info["tokenizer"] for info in infos if info.get("tokenizer")}),
        "artefacts": sorted({a for info in infos for a in info.get("artefacts", {}).values()}),
        # Model audits that name a dataset audit of their training corpus: which, and its index.
        "corpus_links": _corpus_links(infos),
    }


def _corpus_links(infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each linked corpus once, as the first shard that opened it described it."""
    found: dict[str, dict[str, Any]] = {}
    for info in infos:
        for link in info.get("corpus_links", []):
            found.setdefault(json.dumps(link, sort_keys=True), link)
    return list(found.values())


def _verdict(
    session: Session,
    audit: Audit,
    policy: AuditPolicy | None,
    summary: dict[str, Any],
    error: str | None,
) -> tuple[dict[str, Any] | None, bool]:
    """(the policy's verdict on this summary, pending); a failed summary cannot pass, and a
    comparison with a baseline whose audit still runs waits for it (worker/gates.py)."""
    if policy is None:
        return None, False
    if error:
        return failed_verdict(error), False
    if has_relative(policy.thresholds):
        return gates.verdict_of(session, audit, policy, summary)
    return evaluate(summary, policy.thresholds, policy.on_inconclusive).to_json(), False


def _note_on_policy(
    session: Session, policy: AuditPolicy | None, audit: Audit, summary: dict[str, Any]
) -> None:
    """The records this model could not score become a warning on the policy (its page and
    API), in the same transaction as the verdict; the policy's `updated_at` stays the last
    change a person made."""
    if policy is None:
        return
    warnings = audit_warnings(policy, audit, summary)
    if warnings != policy.warnings:
        session.execute(
            update(AuditPolicy)
            .where(AuditPolicy.id == policy.id)
            .values(warnings=warnings, updated_at=AuditPolicy.updated_at)
        )


def row_counts(values: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Rows of one check in all and per member label, so the records table never counts a
    million rows; read from the values finalize loads anyway."""
    members = [v.get("member") for v in values]
    return {
        "all": len(values),
        "true": sum(1 for m in members if m is True),
        "false": sum(1 for m in members if m is False),
    }


def _check_values(
    session: Session, audit_id: str, kind: CheckKind, texts: AuditTexts
) -> list[dict[str, Any]]:
    """One check's per-sample values in sample order; with each row's detail, and each
    record's text, where the summary is computed from them."""
    where = (SampleResult.audit_id == audit_id, SampleResult.check == kind.name)
    if not (kind.summarize_reads_detail or kind.summarize_reads_text):
        return list(
            session.scalars(
                select(SampleResult.values).where(*where).order_by(SampleResult.sample_index)
            ).all()
        )
    rows = session.execute(
        select(SampleResult.sample_index, SampleResult.values, SampleResult.detail)
        .where(*where)
        .order_by(SampleResult.sample_index)
    ).all()
    found = []
    for index, values, detail in rows:
        row = dict(values)
        if kind.summarize_reads_detail:
            row["detail"] = detail
        if kind.summarize_reads_text:
            row["text"] = texts.text(index)
        found.append(row)
    return found


def _exemplars(
    session: Session, audit_id: str, check: str, sample_ids: Sequence[str]
) -> dict[str, Any]:
    """The stored detail of the few records a summary shows, by sample id."""
    if not sample_ids:
        return {}
    rows = session.execute(
        select(SampleResult.sample_id, SampleResult.detail).where(
            SampleResult.audit_id == audit_id,
            SampleResult.check == check,
            SampleResult.sample_id.in_(list(sample_ids)),
        )
    ).all()
    return {sample_id: detail for sample_id, detail in rows if detail}


def _model_facts(shards: Sequence[Shard], check: str) -> dict[str, Any]:
    """Facts about the model (or corpus), the same from every shard; the first shard's are
    kept."""
    for shard in sorted(shards, key=lambda s: s.index):
        facts = (shard.info or {}).get("model_facts", {}).get(check)
        if facts is not None:
            return facts
    return {}


@dataclass(frozen=True)
class Finalized:
    status: str
    ended_now: bool  # this call closed the audit: what follows (callbacks) happens once
    verdict_pending: bool = False  # its verdict waits for its baseline's audit to end


def finalize_audit(db: Database, settings: Settings, audit_id: str) -> Finalized:
    """Summarize and close a running audit whose shards are all done.

    Finalize is sent by the last shard and by the reaper, so it often arrives more than once;
    only the call whose conditional UPDATE moves the audit out of `running` closes it, and an
    audit already closed is left as it is.
    """
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        if audit is None or audit.status != AuditStatus.RUNNING:
            return Finalized(audit.status if audit else "missing", False)
        shards = list(session.scalars(select(Shard).where(Shard.audit_id == audit_id)))
        if any(shard.status != ShardStatus.SUCCEEDED for shard in shards):
            return Finalized(audit.status, False)
        summary: dict[str, Any] = {}
        counts: dict[str, dict[str, int]] = {}
        error = None
        try:
            checks = REGISTRY.parse_checks(audit.checks)
        except UnknownCheck as exc:  # a worker without the package that declares the kind
            checks, error = [], f"{exc}: install the package that declares it on every worker"
        texts = AuditTexts(db, settings, audit)
        for kind, params in checks:
            values = _check_values(session, audit_id, kind, texts)
            counts[kind.name] = row_counts(values)
            try:
                summary[kind.name] = kind.summarize(values, params)
            except (ValueError, ArithmeticError) as exc:
                error = f"summary of {kind.name} failed: {exc}"
                break
            if kind.summarize_reads_text and texts.problem:
                summary[kind.name].setdefault("warnings", []).append(texts.problem)
            if kind.model_facts is not None:
                summary[kind.name][kind.facts_key] = _model_facts(shards, kind.name)
            if kind.exemplars is not None:
                summary[kind.name]["exemplars"] = _exemplars(
                    session, audit_id, kind.name, kind.exemplars(summary[kind.name])
                )
        now = utcnow()
        final = AuditStatus.FAILED if error else AuditStatus.SUCCEEDED
        # Locked to the commit: two audits of one policy finishing together both leave their
        # warnings on it.
        policy = (
            session.get(AuditPolicy, audit.policy_id, with_for_update=True)
            if audit.policy_id
            else None
        )
        verdict, pending = _verdict(session, audit, policy, summary, error)
        closed = session.execute(
            update(Audit)
            .where(Audit.id == audit_id, Audit.status == AuditStatus.RUNNING)
            .values(
                status=final,
                summary=summary,
                error=error,
                provenance=_provenance(audit, shards),
                row_counts=counts,
                verdict=verdict,
                verdict_pending=pending,
                finished_at=audit.finished_at or now,
            )
        ).rowcount
        if closed != 1:  # another finalize closed it (or a cancel) in the meantime
            session.rollback()
            current = session.scalar(select(Audit.status).where(Audit.id == audit_id))
            return Finalized(current or "missing", False)
        if not error:
            _note_on_policy(session, policy, audit, summary)
        return Finalized(final, True, pending)
