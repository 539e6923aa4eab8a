"""Running one shard: claim it, load model and records, score batch by batch, store.

Plain Python over the database, with no Celery in it, so it can be driven from a task, the
CLI or a test alike. Celery-specific failure handling lives in `worker/tasks.py`.
"""

from __future__ import annotations

import os
import platform
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.db import Database
from worker import shard_store
from worker.checks import CheckKind, LMSample, get_check
from worker.engine.scoring import plan_batches, teacher_forced_logprobs, truncate
from worker.engine.token_stats import TokenStats
from worker.loaders.datasets import (
    DatasetError,
    Record,
    iter_records,
    require_text,
    resolve_dataset,
)
from worker.loaders.models import LoadedModel, cached_causal_lm, resolve_model


class PermanentError(ValueError):
    """Retrying cannot help (bad data, unusable model, impossible params)."""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _member(record: Record) -> bool | None:
    value = record.data.get("member")
    if value is None or isinstance(value, bool):
        return value
    raise DatasetError(record.line_no, "field 'member' must be true, false or absent")


def _duplicates(record: Record) -> int | None:
    value = record.data.get("duplicates")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise DatasetError(record.line_no, "field 'duplicates' must be a non-negative integer")


def _tokenize(loaded: LoadedModel, records: list[Record], max_tokens: int):  # type: ignore[no-untyped-def]
    texts = [require_text(record) for record in records]
    encoded = loaded.tokenizer(texts)["input_ids"]
    return texts, [truncate(ids, max_tokens) for ids in encoded]


def _checks_of(audit_checks: list[dict[str, Any]]) -> list[tuple[CheckKind, Any]]:
    checks = []
    for entry in audit_checks:
        kind = get_check(entry["kind"])
        checks.append((kind, kind.parse_params(entry.get("params", {}))))
    return checks


def _max_tokens(loaded: LoadedModel, checks: list[tuple[CheckKind, Any]]) -> int:
    limits = [getattr(params, "max_tokens", None) for _, params in checks]
    given = [limit for limit in limits if limit]
    return min([loaded.max_tokens, *given])


@dataclass(frozen=True)
class ShardOutcome:
    status: str  # succeeded | skipped | cancelled | failed
    audit_id: str | None = None
    audit_complete: bool = False  # this shard was the last: the audit needs finalizing


def run_shard(db: Database, settings: Settings, shard_id: str) -> ShardOutcome:
    """Run one shard to the end, or leave it where another worker can pick it up."""
    claim = shard_store.claim_shard(
        db, shard_id, worker_identity(), settings.lease_seconds, settings.max_attempts
    )
    if claim is None:
        return ShardOutcome("skipped")
    try:
        info = _score_shard(db, settings, claim)
    except shard_store.AuditStopped:
        shard_store.stop_shard(db, claim)
        return ShardOutcome("cancelled", claim.audit_id)
    except shard_store.LeaseLost:
        return ShardOutcome("skipped", claim.audit_id)
    except (PermanentError, FileNotFoundError, ValueError) as exc:
        # DatasetError and ModelError are ValueErrors: retrying cannot mend bad input.
        shard_store.fail_shard(db, claim, str(exc))
        return ShardOutcome("failed", claim.audit_id)
    except BaseException as exc:
        shard_store.release_shard(db, claim, f"{type(exc).__name__}: {exc}")
        raise
    complete = shard_store.complete_shard(db, claim, info)
    return ShardOutcome("succeeded", claim.audit_id, complete)


def _score_shard(db: Database, settings: Settings, claim: shard_store.Claim) -> dict[str, Any]:
    started = time.perf_counter()
    audit = shard_store.load_audit(db, claim.audit_id)
    checks = _checks_of(audit.checks)
    spec = resolve_model(audit.model_uri, settings.model_root_paths)
    if spec.kind != "causal_lm":
        raise PermanentError(f"model kind {spec.kind} is not supported by these checks")
    dataset = resolve_dataset(audit.dataset_uri, settings.datasets_dir, settings.data_root_paths)
    records = list(iter_records(dataset, claim.start, claim.stop))
    loaded = cached_causal_lm(spec)
    texts, tokenized = _tokenize(loaded, records, _max_tokens(loaded, checks))
    labels = [(_member(record), _duplicates(record)) for record in records]

    done = n_tokens = 0
    for batch in plan_batches([len(ids) for ids, _ in tokenized], settings.batch_size):
        sequences = [tokenized[i][0] for i in batch]
        logprobs = teacher_forced_logprobs(loaded.model, sequences, loaded.device)
        samples = [
            LMSample(
                sample_id=records[i].sample_id,
                text=texts[i],
                member=labels[i][0],
                duplicates=labels[i][1],
                stats=TokenStats(len(sequences[j]), logprobs[j], tokenized[i][1]),
            )
            for j, i in enumerate(batch)
        ]
        rows = []
        for kind, params in checks:
            for sample_pos, values in enumerate(kind.compute(samples, params)):
                record = records[batch[sample_pos]]
                rows.append(
                    {
                        "audit_id": claim.audit_id,
                        "check": kind.name,
                        "sample_index": record.index,
                        "sample_id": record.sample_id,
                        "values_json": values,
                    }
                )
        done += len(batch)
        n_tokens += sum(len(seq) for seq in sequences)
        shard_store.write_batch(db, claim, rows, done, settings.lease_seconds)

    return {
        "device": loaded.device,
        "dtype": loaded.dtype,
        "model_sha256": loaded.content_sha256,
        "seconds": round(time.perf_counter() - started, 3),
        "n_tokens": n_tokens,
        "worker": claim.owner,
        "attempt": claim.attempt,
        "python": platform.python_version(),
    }
