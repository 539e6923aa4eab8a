"""Running one shard: claim it, load model and records, score batch by batch, store.

Plain Python over the database, with no Celery in it, so it can be driven from a task, the
CLI or a test alike. Celery-specific failure handling lives in `worker/tasks.py`.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import socket
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.check_kinds import UnknownCheck
from core.config import Settings
from core.db import Database
from core.inspection.datasets import Record, check_text_length, iter_records
from core.inspection.errors import first_line
from core.inspection.models import ModelSpec
from core.logs import bind
from worker import shard_store
from worker.access import Access, PermanentError, Target
from worker.checks.registry import REGISTRY
from worker.checks.shard_pass import Batches, ShardInput, run_passes
from worker.lease_keeper import LeaseKeeper

log = logging.getLogger(__name__)


OUT_OF_MEMORY = (MemoryError, torch.OutOfMemoryError)  # host RAM, or the accelerator's


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, OUT_OF_MEMORY)


def out_of_memory_message(exc: BaseException, settings: Settings) -> str:
    return (
        f"out of memory scoring a batch of up to {settings.batch_size} sequences "
        f"({type(exc).__name__}: {first_line(exc)}); lower MEMAUDIT_BATCH_SIZE, set max_tokens, "
        "or run on a device with more memory"
    )


def release_accelerator_memory() -> None:
    """What a failed batch held goes back, so the next audit on this worker starts clean."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ShardOutcome:
    status: str  # succeeded | skipped | cancelled | failed
    audit_id: str | None = None
    audit_complete: bool = False  # this shard was the last: the audit needs finalizing


def run_shard(db: Database, settings: Settings, shard_id: str) -> ShardOutcome:
    """Run one shard to the end, or leave it where another worker can pick it up."""
    try:
        claim = shard_store.claim_shard(
            db, shard_id, worker_identity(), settings.lease_seconds, settings.max_attempts
        )
    except shard_store.ShardGaveUp as gave_up:
        return ShardOutcome("failed", gave_up.audit_id)
    if claim is None:
        return ShardOutcome("skipped")
    bind(audit_id=claim.audit_id, shard_id=shard_id)
    log.info("claimed shard: records %d-%d, attempt %d", claim.start, claim.stop - 1, claim.attempt)
    try:
        with LeaseKeeper(db, claim, settings.lease_seconds):
            info = _score_shard(db, settings, claim)
    except shard_store.AuditStopped:
        shard_store.stop_shard(db, claim)
        return ShardOutcome("cancelled", claim.audit_id)
    except shard_store.LeaseLost:
        return ShardOutcome("skipped", claim.audit_id)
    except (PermanentError, FileNotFoundError, ValueError, *OUT_OF_MEMORY) as exc:
        # DatasetError and ModelError are ValueErrors: retrying cannot mend bad input, and
        # the same batch on the same device runs out of memory again.
        message = out_of_memory_message(exc, settings) if is_out_of_memory(exc) else str(exc)
        log.error("shard failed, and its audit with it: %s", message)
        release_accelerator_memory()
        shard_store.fail_shard(db, claim, message)
        return ShardOutcome("failed", claim.audit_id)
    except BaseException as exc:
        shard_store.release_shard(db, claim, f"{type(exc).__name__}: {exc}")
        raise
    complete = shard_store.complete_shard(db, claim, info)
    log.info("shard done in %.2fs: %d tokens", info["seconds"], info["n_tokens"])
    return ShardOutcome("succeeded", claim.audit_id, complete)


def _score_shard(db: Database, settings: Settings, claim: shard_store.Claim) -> dict[str, Any]:
    audit = shard_store.load_audit(db, claim.audit_id)
    with ExitStack() as files:
        access = Access(settings, db, audit, shard_store.audit_grants(db, audit), files)
        return _score_audit(access, claim)


def _score_audit(access: Access, claim: shard_store.Claim) -> dict[str, Any]:
    started = time.perf_counter()
    db, settings, audit = access.db, access.settings, access.audit
    try:
        checks = REGISTRY.parse_checks(audit.checks)
    except UnknownCheck as exc:
        raise PermanentError(
            f"{exc}: this worker lacks the package that declares it; install it on every worker"
        ) from None
    dataset = access.open_dataset(audit.dataset_uri)
    records = list(iter_records(dataset, claim.start, claim.stop))
    for record in records:  # a file named by path was only sampled at submit time
        check_text_length(record.data, record.line_no, settings.max_record_chars)
    spec = access.spec(audit.model_uri) if audit.model_uri is not None else None
    batches, info = _batches(access, checks, dataset, records, spec)
    done = n_tokens = 0
    pending: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    for batch, values, batch_tokens in batches:
        rows = [
            shard_store.result_row(
                claim.audit_id, kind, params, records[i].index, records[i].sample_id, sample_values
            )
            for (kind, params), per_sample in zip(checks, values, strict=True)
            for i, sample_values in zip(batch, per_sample, strict=True)
        ]
        done += len(batch)
        n_tokens += batch_tokens
        pending += rows
        # Rows go in bulk: one transaction per ~1k rows or per second, since a shard is re-run
        # from its start after a crash anyway. Cancellation is still seen after every batch.
        if (
            len(pending) >= settings.result_flush_rows
            or time.monotonic() - last_flush >= settings.result_flush_seconds
        ):
            shard_store.write_batch(db, claim, pending, done, settings.lease_seconds)
            pending, last_flush = [], time.monotonic()
        else:
            shard_store.check_running(db, claim)
    shard_store.write_batch(db, claim, pending, done, settings.lease_seconds)
    info.update(
        seconds=round(time.perf_counter() - started, 3),
        n_tokens=n_tokens,
        worker=claim.owner,
        attempt=claim.attempt,
        python=platform.python_version(),
    )
    return info


def _batches(
    access: Access,
    checks: list,
    dataset: Path,
    records: list[Record],
    spec: ModelSpec | None,
) -> tuple[Batches, dict[str, Any]]:
    audit = access.audit
    shard = ShardInput(
        access=access,
        target=Target(spec, access),
        checks=checks,
        records=records,
        dataset=dataset,
        n_records=audit.n_samples,
        reference_uri=audit.reference_model_uri,
        batch_size=access.settings.batch_size,
    )
    return run_passes(checks, shard)
