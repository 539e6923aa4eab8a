from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_embedded_defaults_live_in_the_data_dir(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path}/memaudit.db"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/broker.db"
    assert settings.model_root_paths == [tmp_path / "models"]
    assert settings.data_root_paths == [tmp_path / "data"]


def test_roots_are_path_separated_lists(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, model_roots=f"{tmp_path}/a:{tmp_path}/b")
    assert settings.model_root_paths == [tmp_path / "a", tmp_path / "b"]


def test_production_refuses_sqlite(tmp_path) -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(data_dir=tmp_path, environment="production")


def test_hard_time_limit_must_exceed_soft(tmp_path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, task_soft_time_limit=100, task_time_limit=50)
