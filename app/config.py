"""The one typed configuration object, read from `MEMAUDIT_*` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _split_roots(value: str) -> list[Path]:
    return [Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part]


class Settings(BaseSettings):
    """Embedded defaults (SQLite, a SQLite broker) unless production URLs are given."""

    model_config = SettingsConfigDict(env_prefix="MEMAUDIT_", extra="ignore")

    environment: str = Field("development", description="development or production")
    data_dir: Path = Path(".memaudit")
    database_url: str = ""
    broker_url: str = ""
    # os.pathsep-separated allow-lists; nothing outside them is ever opened.
    model_roots: str = ""
    data_roots: str = ""
    public_url: str = "http://127.0.0.1:8000"
    queue: str = "memaudit"

    # Shards are the unit of retry: small enough that a crash loses little work.
    shard_size: int = Field(256, ge=1)
    batch_size: int = Field(16, ge=1)
    # A shard whose worker stops heartbeating for this long is given to another worker.
    lease_seconds: int = Field(300, ge=2)
    reaper_interval_seconds: float = Field(30.0, gt=0)
    # A queued shard whose message may have been lost is re-sent after this long.
    orphan_after_seconds: int = Field(600, ge=1)
    max_attempts: int = Field(3, ge=1)
    task_soft_time_limit: int = Field(6 * 3600, ge=10)
    task_time_limit: int = Field(6 * 3600 + 300, ge=20)
    worker_concurrency: int = Field(1, ge=1)
    max_upload_bytes: int = Field(2 * 1024**3, ge=1)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'memaudit.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if self.task_time_limit <= self.task_soft_time_limit:
            raise ValueError("task_time_limit must exceed task_soft_time_limit")
        if self.environment == "production" and self.database_url.startswith("sqlite"):
            raise ValueError("production needs MEMAUDIT_DATABASE_URL (PostgreSQL), not SQLite")
        return self

    @property
    def model_root_paths(self) -> list[Path]:
        return _split_roots(self.model_roots) or [self.data_dir / "models"]

    @property
    def data_root_paths(self) -> list[Path]:
        return _split_roots(self.data_roots) or [self.data_dir / "data"]

    @property
    def datasets_dir(self) -> Path:
        """Where uploaded datasets live, content-addressed by sha256."""
        return self.data_dir / "datasets"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    def ensure_dirs(self) -> None:
        for path in [
            self.data_dir,
            self.datasets_dir,
            *self.model_root_paths,
            *self.data_root_paths,
        ]:
            path.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
