"""Celery tasks: thin wrappers that hand a shard id to the runner and route what follows."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import beat_init, setup_logging, task_postrun, task_prerun, worker_process_init

from core.celery_app import create_celery
from core.config import get_settings
from core.db import Database
from core.integrations import reconciliation_line, scrubbed
from core.logs import configure_logging, replace_context
from core.submission import model_queue
from core.task_names import (
    BUILD_SPLIT,
    DELIVER_CALLBACK,
    FINALIZE_AUDIT,
    HANDLE_REGISTRY_EVENT,
    NOTIFY_CHANNELS,
    REAP_STALE_SHARDS,
    RECONCILE_REGISTRY,
    RUN_SHARD,
    SEND_NOTIFICATION,
    WRITE_BACK_TO_REGISTRY,
)
from worker import gates, hub_registry, notifications, shard_store, wandb_registry
from worker.callbacks import deliver
from worker.delivery import Attempt, backoff
from worker.finalize import finalize_audit as finalize
from worker.model_registry import (
    WRITE_BACK_BACKOFF_SECONDS,
    WRITE_BACK_RETRIES,
    handle_delivery,
    mark_failed,
    reconcile,
    write_back,
)
from worker.runner import run_shard as run
from worker.split_job import run_split

log = logging.getLogger(__name__)
# The worker's app (`celery -A worker.tasks`); the API builds its own from its own Settings.
celery_app = create_celery(get_settings())
_db: Database | None = None


def database() -> Database:
    """One engine per worker process, created after the fork (connections never cross it)."""
    global _db
    if _db is None:
        _db = Database(get_settings().database_url)
    return _db


@worker_process_init.connect
def _reset_after_fork(**_kwargs: object) -> None:
    global _db
    _db = None


@setup_logging.connect
def _memaudit_logging(loglevel: str | None = None, **_kwargs: object) -> None:
    """Celery leaves logging to us: its lines and ours share one (JSON) format."""
    settings = get_settings()
    configure_logging(settings.log_format, loglevel or settings.log_level)


@beat_init.connect
def _announce_schedule(**_kwargs: object) -> None:
    """The beat owns the reconciliation: say once whether it runs, how often and where."""
    log.info(reconciliation_line(get_settings()))


# Tasks whose first argument is an audit id; a shard task learns its audit on claiming.
AUDIT_TASKS = {FINALIZE_AUDIT, DELIVER_CALLBACK, WRITE_BACK_TO_REGISTRY, NOTIFY_CHANNELS}


@task_prerun.connect
def _task_log_context(task_id: str, task: object, args: tuple = (), **_kwargs: object) -> None:
    name = getattr(task, "name", "")
    first = str(args[0]) if args else None
    replace_context(
        task_id=task_id,
        audit_id=first if name in AUDIT_TASKS else None,
        shard_id=first if name == RUN_SHARD else None,
    )


@task_postrun.connect
def _clear_log_context(**_kwargs: object) -> None:
    replace_context()


@celery_app.task(name=RUN_SHARD)
def run_shard(shard_id: str) -> str:
    settings = get_settings()
    try:
        outcome = run(database(), settings, shard_id)
    except Exception:
        # The shard is back in the queue (the runner released it); try again after a pause.
        log.exception("shard %s hit an unexpected error; it will be retried", shard_id)
        # Back to the queue it came from (the large-model one included); no database read,
        # since the error may be the database's.
        delivery = run_shard.request.delivery_info or {}
        queue = delivery.get("routing_key") or settings.queue
        run_shard.apply_async((shard_id,), countdown=settings.retry_delay_seconds, queue=queue)
        return "retry"
    if outcome.audit_complete:
        finalize_audit.delay(outcome.audit_id)
    elif outcome.status == "failed" and outcome.audit_id:
        _announce_end(outcome.audit_id)
        _release_waiting(outcome.audit_id)
    log.info("shard %s: %s", shard_id, outcome.status)
    return outcome.status


@celery_app.task(name=FINALIZE_AUDIT)
def finalize_audit(audit_id: str) -> str:
    outcome = finalize(database(), get_settings(), audit_id)
    if outcome.ended_now:
        log.info("audit %s finalized: %s", audit_id, outcome.status)
        # A verdict that waits for its baseline is announced by whoever reaches it: here, when
        # the baseline ended meanwhile, else when it ends (_release_waiting).
        if not outcome.verdict_pending or gates.reach_pending(database(), audit_id):
            _announce_end(audit_id)
        else:  # the registry shows the policy's verdict pending, never an earlier one
            write_back_to_registry.delay(audit_id)
        _release_waiting(audit_id)
    return outcome.status


def _release_waiting(audit_id: str) -> None:
    """An audit ended: the candidates that compared with it reach their verdicts, and each is
    announced as its own audit's end."""
    for waiting in gates.reach_waiting(database(), audit_id):
        log.info("audit %s: verdict reached now that its baseline %s ended", waiting, audit_id)
        _announce_end(waiting)


def _announce_end(audit_id: str) -> None:
    """An audit ended: its callback, its registry tags when a registry model was audited, and
    its team's notification channels (a policy outcome, a failure)."""
    deliver_callback.delay(audit_id)
    write_back_to_registry.delay(audit_id)
    notify_channels.delay(audit_id)


class WriteBackFailed(RuntimeError):
    """The registry was down or refused; the message is scrubbed of credentials."""


@celery_app.task(
    name=WRITE_BACK_TO_REGISTRY,
    autoretry_for=(WriteBackFailed,),
    max_retries=WRITE_BACK_RETRIES,
    retry_backoff=WRITE_BACK_BACKOFF_SECONDS,
    retry_jitter=True,  # full jitter: workers that failed together retry apart
)
def write_back_to_registry(audit_id: str) -> dict[str, str]:
    try:
        db, settings = database(), get_settings()
        return {
            **write_back(db, settings, audit_id),
            **hub_registry.write_back(db, settings, audit_id),
            **wandb_registry.write_back(db, settings, audit_id),
        }
    except Exception as exc:  # the registry is down or refused: try again later
        # MLflow's errors name the URL they called: its credentials stay out of every log.
        failure = WriteBackFailed(f"{type(exc).__name__}: {scrubbed(str(exc))}")
        log.warning("write-back of audit %s failed (%s); retrying", audit_id, failure)
        raise failure from None


class DeliveryFailed(RuntimeError):
    """Handling a registry delivery raised; the message is scrubbed of credentials."""


@celery_app.task(name=HANDLE_REGISTRY_EVENT)
def handle_registry_event(key: str) -> dict:
    db = database()
    try:
        outcome = handle_delivery(db, get_settings(), celery_app, key)
    except Exception as exc:
        # Not log.exception: a registry client's errors may name the URL it called.
        reason = f"{type(exc).__name__}: {scrubbed(str(exc))[:300]}"
        log.warning("registry delivery %s failed: %s", key, reason)
        try:
            mark_failed(db, key, reason)
        except Exception:  # the database is down too: the delivery stays `received`
            log.warning("could not mark registry delivery %s failed", key)
        raise DeliveryFailed(reason) from None
    log.info("registry delivery %s: %s", key, outcome)
    return outcome


@celery_app.task(name=RECONCILE_REGISTRY)
def reconcile_registry() -> list[str]:
    try:
        return reconcile(database(), get_settings(), celery_app)
    except Exception as exc:  # the registry may be down; the next round tries again
        # Not log.exception: MLflow's errors name the URL they called, credentials included.
        log.warning(
            "registry reconciliation failed: %s: %s", type(exc).__name__, scrubbed(str(exc))
        )
        return []


def _next_attempt(task: Any, args: tuple[str, ...], attempt: int, outcome: Attempt) -> str:
    """After a retryable failure, the same task again with backoff, up to the attempt limit."""
    settings = get_settings()
    if outcome.retry and attempt < settings.callback_max_attempts:
        task.apply_async((*args, attempt + 1), countdown=backoff(settings, attempt))
        return "retrying"
    return "delivered" if outcome.delivered else "not delivered"


@celery_app.task(name=DELIVER_CALLBACK)
def deliver_callback(audit_id: str, attempt: int = 1) -> str:
    """POST the result; on a retryable failure, schedule the next attempt with backoff."""
    outcome = deliver(database(), get_settings(), audit_id, attempt)
    return _next_attempt(deliver_callback, (audit_id,), attempt, outcome)


@celery_app.task(name=NOTIFY_CHANNELS)
def notify_channels(audit_id: str) -> list[str]:
    """One message per channel of the audit's team that takes its outcome, each on its own
    (a slow relay does not hold up a chat room)."""
    channel_ids = notifications.channels_to_tell(database(), audit_id)
    for channel_id in channel_ids:
        send_notification.delay(channel_id, audit_id)
    return channel_ids


@celery_app.task(name=SEND_NOTIFICATION)
def send_notification(channel_id: str, audit_id: str, attempt: int = 1) -> str:
    outcome = notifications.deliver(database(), get_settings(), channel_id, audit_id, attempt)
    return _next_attempt(send_notification, (channel_id, audit_id), attempt, outcome)


@celery_app.task(name=BUILD_SPLIT)
def build_split(split_id: str) -> str:
    """A member / non-member split measured (and matched), stored with its labelled dataset."""
    return run_split(database(), get_settings(), split_id)


def _send_shards(shard_ids: list[str]) -> None:
    """Each shard to the queue its model belongs on (as enqueue_audit chose it)."""
    if not shard_ids:
        return
    settings = get_settings()
    models = shard_store.shard_models(database(), shard_ids)
    queues = {uri: model_queue(settings, uri) for uri in set(models.values())}
    for shard_id in shard_ids:
        queue = queues.get(models.get(shard_id), settings.queue)
        run_shard.apply_async((shard_id,), queue=queue)


@celery_app.task(name=REAP_STALE_SHARDS)
def reap_stale_shards() -> dict[str, int]:
    result = shard_store.reap(database(), get_settings().orphan_after_seconds)
    _send_shards(result.shards_to_enqueue)
    for audit_id in gates.reach_stale(database()):  # a baseline cancelled through the API
        _announce_end(audit_id)
    for audit_id in result.audits_to_finalize:
        finalize_audit.delay(audit_id)
    if result.shards_to_enqueue or result.audits_to_finalize:
        log.info(
            "reaper re-sent %d shards, finalizing %d audits",
            len(result.shards_to_enqueue),
            len(result.audits_to_finalize),
        )
    return {"shards": len(result.shards_to_enqueue), "audits": len(result.audits_to_finalize)}
