"""The Celery app. The broker only carries shard ids; every state change is a database row."""

from __future__ import annotations

from celery import Celery

from core import embedded_broker
from core.config import Settings
from core.task_names import REAP_STALE_SHARDS, RECONCILE_REGISTRY


def _schedule(settings: Settings) -> dict[str, dict]:
    schedule = {
        "reap-stale-shards": {
            "task": REAP_STALE_SHARDS,
            "schedule": settings.reaper_interval_seconds,
        }
    }
    if settings.mlflow_tracking_uri:
        schedule["reconcile-registry"] = {
            "task": RECONCILE_REGISTRY,
            "schedule": settings.registry_poll_seconds,
        }
    return schedule


def create_celery(settings: Settings) -> Celery:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.broker_url.startswith(("sqla+", "sqlalchemy+")):
        embedded_broker.register()
    app = Celery("memaudit", broker=settings.broker_url)
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only after it ran, and a killed worker's task goes back:
        # together with the shard lease this makes a crash delay work, never lose it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=200,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=_schedule(settings),
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Redis redelivers unacknowledged messages after this; it must outlast the hard limit
        # or a long shard would be handed to a second worker while the first still runs it.
        app.conf.broker_transport_options = {"visibility_timeout": settings.task_time_limit + 600}
    return app
