from __future__ import annotations

from core.celery_app import create_celery
from core.config import Settings


def test_execution_settings_follow_the_design(tmp_path) -> None:
    conf = create_celery(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/7")).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_the_embedded_broker_polls_quickly(tmp_path) -> None:
    app = create_celery(Settings(data_dir=tmp_path))
    with app.connection_for_write() as connection:
        assert type(connection.transport).__name__ == "EmbeddedTransport"
        assert connection.transport.polling_interval <= 0.1
