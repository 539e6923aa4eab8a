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
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.config import Settings
from app.db import Database
from app.logs import bind
from app.tenancy import Grants, NotGranted, check_model_grant
from worker import shard_store
from worker.checks import parse_checks
from worker.classifier_passes import ClassifierContext, labelled
from worker.diffusion_checks import DiffusionContext
from worker.engine.scoring import plan_batches
from worker.generation_checks import GenerationContext, model_chat, model_generator
from worker.lease_keeper import LeaseKeeper
from worker.lm_passes import TextRecord, audit_plan, compute_batch
from worker.loaders import chat_endpoints
from worker.loaders.classifiers import LoadedClassifier, as_classifier, cached_classifier
from worker.loaders.clip_models import cached_clip
from worker.loaders.datasets import (
    DatasetError,
    Record,
    check_text_length,
    iter_records,
    open_dataset,
    require_text,
    uploaded_dataset_path,
)
from worker.loaders.diffusion_models import cached_pipeline, training_images
from worker.loaders.errors import first_line
from worker.loaders.models import LoadedModel, ModelSpec, cached_causal_lm, materialize

log = logging.getLogger(__name__)


class PermanentError(ValueError):
    """Retrying cannot help (bad data, unusable model, impossible params)."""


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


@dataclass(frozen=True)
class Access:
    """What one audit may read: its team's grants and uploads, checked again here at load;
    the dataset files it opens stay pinned in `files` until the shard is done."""

    settings: Settings
    db: Database
    audit: Any
    grants: Grants
    files: ExitStack

    def spec(self, uri: str) -> ModelSpec:
        settings = self.settings
        try:
            check_model_grant(self.grants, uri)
        except NotGranted as exc:
            raise PermanentError(str(exc)) from None
        if chat_endpoints.is_endpoint(uri):  # checked against this worker's allow-list too
            chat_endpoints.parse_uri(uri, settings.chat_hosts)
            return ModelSpec(uri=uri, path=Path(), kind="chat_endpoint", format="endpoint")
        return materialize(
            uri,
            self.grants.model_roots(settings),
            mlflow_tracking_uri=settings.mlflow_tracking_uri,
            cache_root=settings.model_cache_dir,
            hf_cache_dir=settings.hf_cache_dir,
            allow_pickle=settings.allow_pickle_weights,
            allow_torchscript=settings.allow_torchscript,
            rules=settings.file_rules,
        )

    def open_dataset(self, uri: str) -> Path:
        """A dataset file, held open (pinned) until the shard is done."""
        settings = self.settings

        def upload(dataset_id: str) -> Path | None:
            sha256 = shard_store.upload_sha256(self.db, self.audit, dataset_id)
            return uploaded_dataset_path(settings.datasets_dir, sha256) if sha256 else None

        roots = self.grants.data_roots(settings)
        return self.files.enter_context(open_dataset(uri, upload, roots, settings.file_rules))

    def causal_lm(self, uri: str) -> LoadedModel:
        spec = self.spec(uri)
        if spec.kind != "causal_lm":
            raise PermanentError(f"model kind {spec.kind} is not supported by these checks")
        return cached_causal_lm(spec)

    def classifier(self, uri: str) -> LoadedClassifier:
        return cached_classifier(self.spec(uri))


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


# Classifier checks score this many records per chunk between writes and cancel checks.
CLASSIFIER_CHUNK = 256


def _score_shard(db: Database, settings: Settings, claim: shard_store.Claim) -> dict[str, Any]:
    audit = shard_store.load_audit(db, claim.audit_id)
    with ExitStack() as files:
        access = Access(settings, db, audit, shard_store.audit_grants(db, audit), files)
        return _score_audit(access, claim)


def _score_audit(access: Access, claim: shard_store.Claim) -> dict[str, Any]:
    started = time.perf_counter()
    db, settings, audit = access.db, access.settings, access.audit
    checks = parse_checks(audit.checks)
    dataset = access.open_dataset(audit.dataset_uri)
    records = list(iter_records(dataset, claim.start, claim.stop))
    for record in records:  # a file named by path was only sampled at submit time
        check_text_length(record.data, record.line_no, settings.max_record_chars)
    spec = access.spec(audit.model_uri)
    unsupported = [kind.name for kind, _ in checks if spec.kind not in kind.model_kinds]
    if unsupported:
        raise PermanentError(f"checks {unsupported} do not support {spec.kind} models")
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


Batches = Iterator[tuple[list[int], list[list[dict[str, Any]]], int]]


def _batches(
    access: Access,
    checks: list,
    dataset: Path,
    records: list[Record],
    spec: ModelSpec,
) -> tuple[Batches, dict[str, Any]]:
    """Per batch of records, every check's values in the audit's order.

    LM checks share the teacher-forced passes; classifier checks (on a causal LM: `diversity`
    and `capacity`) read the same model through the classifier interface, batch for batch.
    """
    settings, audit = access.settings, access.audit
    lm = [i for i, (kind, _) in enumerate(checks) if kind.family == "lm"]
    other = [i for i, (kind, _) in enumerate(checks) if kind.family == "classifier"]
    generated = [i for i, (kind, _) in enumerate(checks) if kind.family == "generate"]
    diffused = [i for i, (kind, _) in enumerate(checks) if kind.family == "diffusion"]
    speaker: GenerationContext | None = None
    if spec.kind == "chat_endpoint":
        endpoint = chat_endpoints.parse_uri(spec.uri, settings.chat_hosts)
        remote = chat_endpoints.EndpointChat(
            endpoint,
            settings.chat_endpoint_api_key,
            timeout=settings.chat_endpoint_timeout_seconds,
        )
        target = classifier = None
        speaker = GenerationContext(remote.generate, chat=remote)
        info = {"device": "remote", "dtype": None, "model_sha256": None}
    elif spec.kind == "diffusion":
        target = classifier = None
        pipeline = cached_pipeline(spec)
        info = {
            "device": pipeline.device,
            "dtype": pipeline.dtype,
            "model_sha256": pipeline.content_sha256,
        }
        painter = DiffusionContext(
            pipeline,
            settings.batch_size,
            lambda uri: training_images(access.open_dataset(uri)),
            load_embedder=access.classifier,
            load_clip=lambda uri: cached_clip(access.spec(uri)),
        )
    elif spec.kind == "causal_lm":
        target = cached_causal_lm(spec)
        classifier = as_classifier(target)
        info = {
            "device": target.device,
            "dtype": target.dtype,
            "model_sha256": target.content_sha256,
        }
    else:
        target, classifier = None, cached_classifier(spec)
        info = {
            "device": classifier.device,
            "dtype": classifier.dtype,
            "model_sha256": classifier.content_sha256,
        }
    context = None
    if other:
        need_label = any("label" in checks[i][0].required_fields for i in other)
        inputs = [labelled(r, classifier.input_kind, need_label) for r in records]
        context = ClassifierContext(
            classifier,
            dataset,
            settings.batch_size,
            n_records=audit.n_samples,
            load_model=access.classifier,
        )
        info["model_facts"] = {
            checks[i][0].name: checks[i][0].model_facts(context, checks[i][1])
            for i in other
            if checks[i][0].model_facts is not None
        }
    if generated and speaker is None:
        speaker = GenerationContext(
            model_generator(target, settings.batch_size),
            chat=model_chat(target, settings.batch_size),
            load=lambda uri: model_generator(
                cached_causal_lm(access.spec(uri)), settings.batch_size
            ),
        )
    if lm:
        lm_checks = [checks[i] for i in lm]
        plan, max_tokens = audit_plan(lm_checks, target, audit.reference_model_uri is not None)
        reference = access.causal_lm(audit.reference_model_uri) if plan.reference else None
        info["reference_model_sha256"] = reference.content_sha256 if reference else None
        texts = [
            TextRecord(r.sample_id, require_text(r), _member(r), _duplicates(r)) for r in records
        ]
        order = plan_batches([len(item.text) for item in texts], settings.batch_size)
    else:
        # Diffusion samples a whole trajectory per record: progress after every batch of them.
        chunk = settings.batch_size if diffused else CLASSIFIER_CHUNK
        order = [
            list(range(start, min(start + chunk, len(records))))
            for start in range(0, len(records), chunk)
        ]

    def batches() -> Batches:
        for batch in order:
            values: list[list[dict[str, Any]]] = [[] for _ in checks]
            n_tokens = 0
            if lm:
                lm_values, n_tokens = compute_batch(
                    [texts[i] for i in batch],
                    lm_checks,
                    plan,
                    target,
                    reference,
                    max_tokens,
                    settings.batch_size,
                )
                for position, found in zip(lm, lm_values, strict=True):
                    values[position] = found
            for position in other:
                kind, params = checks[position]
                values[position] = kind.compute(context, [inputs[i] for i in batch], params)
            for position in generated:
                kind, params = checks[position]
                values[position] = kind.compute(speaker, [records[i] for i in batch], params)
            for position in diffused:
                kind, params = checks[position]
                values[position] = kind.compute(painter, [records[i] for i in batch], params)
            yield batch, values, n_tokens

    return batches(), info
