"""Shared fixtures: a really memorizing tiny GPT-2, real databases, real worker processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
for name in [n for n in os.environ if n.startswith("MEMAUDIT_")]:
    del os.environ[name]  # the tests set every value they rely on

from app.migrate import upgrade  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import Database  # noqa: E402
from worker.demo import DemoArtifacts, build_demo, canary_text  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "MEMAUDIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MEMAUDIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def digit_ddpms(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two class-conditional DDPMs on 8×8 digits (tests/worker/checks/diffusion/builders.py),
    trained once."""
    pytest.importorskip("diffusers")
    from tests.worker.checks.diffusion.builders import digit_models

    found = digit_models(tmp_path_factory.mktemp("digits"))
    print(f"\ntrained both DDPMs in {found.seconds:.0f}s")
    return found


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> DemoArtifacts:
    """The demo model: trained here until greedy decoding reproduces every canary's secret."""
    root = tmp_path_factory.mktemp("tiny_lm")
    return build_demo(root / "models" / "canary-gpt2", root / "data" / "canaries.jsonl")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def filler_records(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"r{i}", "text": canary_text(rng)} for i in range(n)]


# ---- databases -----------------------------------------------------------------------------


def _admin_conninfo() -> str:
    return (
        make_url(POSTGRES_ADMIN_URL)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"memaudit_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_admin_conninfo(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


# ---- settings and processes ----------------------------------------------------------------


def make_settings(data_dir: Path, model_root: Path, data_root: Path, **overrides) -> Settings:
    values = {
        "data_dir": data_dir,
        "model_roots": str(model_root),
        "data_roots": str(data_root),
        "queue": f"memaudit-test-{uuid.uuid4().hex[:8]}",
        "lease_seconds": 4,
        "reaper_interval_seconds": 1.0,
        "orphan_after_seconds": 60,
        "shard_size": 16,
        "batch_size": 4,
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process the same Settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAUDIT_")}
    for name, value in settings.model_dump().items():
        env[f"MEMAUDIT_{name.upper()}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """A real `memaudit worker --beat` process in its own process group."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--beat", "--loglevel", "INFO", *args],
            env={**settings_env(settings), **(extra_env or {})},
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_hard(self) -> None:
        """kill -9 of the worker and its pool children: a crash, no cleanup."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@dataclass
class Stack:
    """A migrated database, an in-process API client with an admin key, and worker processes."""

    settings: Settings
    db: Database
    client: object  # fastapi.testclient.TestClient
    headers: dict[str, str]
    start_worker: Callable[..., WorkerProcess]


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def make_stack(tmp_path: Path, tiny_lm: DemoArtifacts) -> Iterator[Callable[..., Stack]]:
    from fastapi.testclient import TestClient

    from app.keys import create_key
    from app.main import create_app

    workers: list[WorkerProcess] = []
    clients: list[TestClient] = []

    def build(database_url: str = "", broker_url: str = "", **overrides) -> Stack:
        settings = make_settings(
            tmp_path / "data",
            tiny_lm.model_dir.parent,
            tiny_lm.dataset_path.parent,
            database_url=database_url,
            broker_url=broker_url,
            **overrides,
        )
        settings.ensure_dirs()
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        with db.session() as session:
            key = create_key(session, "test-admin", "admin")
        client = TestClient(create_app(settings))
        clients.append(client)

        def start_worker(
            extra_env: dict[str, str] | None = None, args: Sequence[str] = ()
        ) -> WorkerProcess:
            log_path = tmp_path / f"worker-{len(workers)}.log"
            worker = WorkerProcess(settings, log_path, extra_env, args)
            workers.append(worker)
            return worker

        return Stack(settings, db, client, {"Authorization": f"Bearer {key}"}, start_worker)

    yield build
    for worker in workers:
        worker.stop()
    for client in clients:
        client.app.state.db.dispose()
        client.close()


def stored_policy_audit(
    db: Database,
    uri: str,
    source: str,
    *,
    policy: bool = True,
    status: str = "succeeded",
    verdict: dict | None = None,
) -> str:
    """A finished audit of `uri` stored as a registry write-back reads it: under a policy of
    `source` (or by hand), a greedy extraction rate of 0.75 and a `fail` verdict unless given."""
    from core.models import Audit, AuditPolicy

    with db.session() as session:
        policy_row = AuditPolicy(
            name=f"{source}-{uuid.uuid4().hex[:8]}",
            source=source,
            model_pattern="acme/*",
            dataset_uri="dataset:unused",
            checks=[],
            thresholds=[],
        )
        session.add(policy_row)
        session.flush()
        audit = Audit(
            status=status,
            model_uri=uri,
            dataset_uri="dataset:unused",
            dataset_sha256="0" * 64,
            n_samples=1,
            checks=[],
            labels={"policy": policy_row.name},
            summary={"extraction": {"all": {"greedy_rate": 0.75}}},
            verdict=verdict or {"status": "fail", "results": [], "promotion": "blocked"},
            policy_id=policy_row.id if policy else None,
        )
        session.add(audit)
        session.commit()
        return audit.id
