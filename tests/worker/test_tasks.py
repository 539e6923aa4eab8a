"""The registry write-back task's retries: Celery's exponential backoff with full jitter."""

from __future__ import annotations

import pytest

from core.config import get_settings


@pytest.fixture
def unreachable_database(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """Settings whose database refuses every connection: a write-back that fails for real."""
    from worker import tasks

    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(
        "MEMAUDIT_DATABASE_URL", "postgresql+psycopg://memaudit@127.0.0.1:1/memaudit"
    )
    get_settings.cache_clear()
    monkeypatch.setattr(tasks, "_db", None)
    yield tasks
    get_settings.cache_clear()


def test_a_failing_write_back_retries_with_jittered_doubling_waits(
    unreachable_database, monkeypatch
) -> None:
    tasks = unreachable_database
    from worker.model_registry import WRITE_BACK_BACKOFF_SECONDS, WRITE_BACK_RETRIES

    task = tasks.write_back_to_registry
    countdowns: list[float] = []
    celery_retry = task.retry

    def recorded_retry(*args, **kwargs):  # type: ignore[no-untyped-def]
        countdowns.append(kwargs["countdown"])
        return celery_retry(*args, **kwargs)

    monkeypatch.setattr(task, "retry", recorded_retry)
    result = task.apply(args=["audit-1"])  # eager: the retries run at once, waits recorded

    assert result.state == "FAILURE"
    assert isinstance(result.result, tasks.WriteBackFailed)
    # The first run and WRITE_BACK_RETRIES retries; the last call finds none left and fails.
    assert len(countdowns) == WRITE_BACK_RETRIES + 1
    bounds = [WRITE_BACK_BACKOFF_SECONDS * 2**n for n in range(len(countdowns))]
    assert all(0 <= wait <= bound for wait, bound in zip(countdowns, bounds, strict=True))
    assert countdowns != bounds  # jittered, not the bare doubling


def test_a_delivery_whose_handling_raises_ends_failed(monkeypatch, tmp_path) -> None:
    """Not `received` for ever: a W&B redelivery of the event is then queued again."""
    from app.migrate import upgrade
    from core.db import Database
    from core.models import WebhookDelivery
    from worker import tasks

    url = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMAUDIT_DATABASE_URL", url)
    get_settings.cache_clear()
    monkeypatch.setattr(tasks, "_db", None)
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        session.add(
            WebhookDelivery(id="wandb:k", source="wandb", event="LINK_ARTIFACT", payload={})
        )

    def broken(*_: object) -> dict:
        raise RuntimeError("failed calling https://user:hunter2@wandb.example/graphql")

    monkeypatch.setattr(tasks, "handle_delivery", broken)
    try:
        result = tasks.handle_registry_event.apply(args=["wandb:k"])
        assert result.state == "FAILURE" and isinstance(result.result, tasks.DeliveryFailed)
        with db.session() as session:
            delivery = session.get(WebhookDelivery, "wandb:k")
            assert delivery.status == "failed"
            assert delivery.detail["reason"].startswith("RuntimeError: failed calling")
            assert "hunter2" not in delivery.detail["reason"]
    finally:
        db.dispose()
        get_settings.cache_clear()
