"""The embedded service as a user starts it, shared by the end-to-end modules."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, make_settings, settings_env, wait_for
from worker.demo import DemoArtifacts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    base_url: str
    key: str
    client: httpx.Client
    headers: dict[str, str]
    data_root: Path
    batch_size: int


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    from tests.e2e.browsers import CHROMIUM

    assert Path(CHROMIUM).exists(), "install Debian's chromium package (apt-get install chromium)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("served"), tiny_lm) as instance:
        yield instance


@contextmanager
def serve(root: Path, tiny_lm: DemoArtifacts, **overrides: object) -> Iterator[Served]:
    """`memaudit serve` on a free port with its supervised worker, stopped afterwards."""
    data_root = root / "inputs"
    data_root.mkdir()
    settings = make_settings(
        root / "data", tiny_lm.model_dir.parent, data_root, shard_size=64, batch_size=4, **overrides
    )
    env = settings_env(settings)
    del env["MEMAUDIT_PUBLIC_URL"]
    port = free_port()
    log = (root / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (root / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.3)
        key_file = root / "data" / "admin.key"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        key = key_file.read_text().strip()
        yield Served(
            f"http://127.0.0.1:{port}",
            key,
            client,
            {"Authorization": f"Bearer {key}"},
            data_root,
            4,
        )
    finally:
        client.close()
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()
    # `serve` stops the worker it supervises: nothing of this data dir may outlive it.
    deadline = time.monotonic() + 30
    while processes_using(root / "data") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_using(root / "data"), "serve left its worker running"


def processes_using(data_dir: Path) -> list[int]:
    """Live processes whose environment names this data dir."""
    return processes_with("MEMAUDIT_DATA_DIR", str(data_dir))


def processes_with(variable: str, value: str) -> list[int]:
    """Live processes whose environment has `variable=value` (children inherit it)."""
    marker = f"{variable}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            if marker in (proc / "environ").read_bytes().split(b"\0") and "zombie" not in status:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


# ---- a real MLflow server, shared by the registry modules ----------------------------------


@dataclass
class MlflowServer:
    url: str
    root: Path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real `mlflow server` (SQLite store) that may deliver webhooks to this host over http."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
        "MLFLOW_WEBHOOK_CACHE_TTL": "0",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job runner, no /dev/shm folder
    }
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url, process, root), 120, "mlflow server", interval=0.5)
        yield MlflowServer(url, root)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def _healthy(url: str, process: subprocess.Popen, root: Path) -> bool:
    assert process.poll() is None, (root / "server.log").read_text()[-3000:]
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def registry(mlflow_server: MlflowServer):  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_server.url)
    return MlflowClient(mlflow_server.url)


def register(model_dir: Path, name: str) -> str:
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with mlflow.start_run():
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            registered_model_name=name,
            pip_requirements=["transformers", "torch"],  # no environment inference offline
        )
    return str(info.registered_model_version)


def audit_of(memaudit: Served, uri: str) -> dict | None:
    listed = memaudit.client.get(
        "/v1/audits", headers=memaudit.headers, params={"model": uri}
    ).json()["data"]
    return listed[0] if listed else None


def finished(memaudit: Served, uri: str) -> dict:
    def ended() -> dict | None:
        audit = audit_of(memaudit, uri)
        return audit if audit and audit["status"] in ("succeeded", "failed") else None

    return wait_for(ended, 240, f"the audit of {uri} to finish")


def version_tags_of(registry, name: str, version: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(registry.get_model_version(name, version).tags)


def written_back(registry, name: str, version: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The version's tags once a reached verdict (written last) is among them: a policy audit
    writes `pending` as it starts."""
    return wait_for(
        lambda: (
            (t := version_tags_of(registry, name, version)).get("memaudit.verdict", "pending")
            != "pending"
            and t
        ),
        60,
        f"the memaudit.* tags on {name}/{version}",
    )
