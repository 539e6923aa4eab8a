"""Many clients submitting and polling audits against a running service on 127.0.0.1.

    .venv/bin/python -m bench.api_load                        # embedded: SQLite + SQLite broker
    .venv/bin/python -m bench.api_load \\
        --postgres postgresql+psycopg://postgres@127.0.0.1/EMPTY_DB --redis redis://127.0.0.1:6379/5

Starts `memaudit serve --no-worker` (the API alone, as on an API host) and drives it with N
concurrent clients (asyncio + httpx, in this process) for a fixed time: each submits an audit
of an uploaded dataset, polls its status three times, and starts again, waiting `--think`
seconds between calls (default 1 s, as a CI job or the dashboard polls; 0 drives the service
flat out, where latency is concurrency over throughput). It prints
submissions/s and p50/p99 latency of the submit and status calls; the baseline is `/healthz`
from the same clients in the same run. Then a worker is started and, with the queue idle,
audits are submitted one at a time: their queue-to-start delay (submitted until a worker has
claimed a shard) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.percentiles import percentile
from worker.demo import build_demo

POLLS_PER_SUBMIT = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _summary(name: str, seconds: list[float]) -> str:
    return (
        f"{name}: n={len(seconds)}, p50 {statistics.median(seconds) * 1000:.1f} ms, "
        f"p99 {percentile(seconds, 99) * 1000:.1f} ms"
    )


async def _timed(http: httpx.AsyncClient, times: dict, name: str, method: str, url: str, **kw):
    """One request, its latency recorded; a failure is counted, never hidden."""
    start = time.perf_counter()
    try:
        response = await http.request(method, url, **kw)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        times["errors"].append(f"{name}: {type(exc).__name__} {exc}"[:200])
        return None
    times[name].append(time.perf_counter() - start)
    return response


async def _client(
    http: httpx.AsyncClient, body: dict, until: float, think: float, times: dict[str, list]
) -> None:
    rng = random.Random()

    async def pause() -> None:  # clients are not in step: each waits 0.5-1.5x the think time
        await asyncio.sleep(think * rng.uniform(0.5, 1.5))

    # Start offsets spread over one whole round: arrivals are steady from the first second.
    await asyncio.sleep(think * (POLLS_PER_SUBMIT + 1) * rng.random())
    while True:  # at least one round, so a warm-up (until=0) opens every connection once
        response = await _timed(http, times, "submit", "POST", "/v1/audits", json=body)
        if response is not None:
            audit_id = response.json()["id"]
            for _ in range(POLLS_PER_SUBMIT):
                await pause()
                await _timed(http, times, "status", "GET", f"/v1/audits/{audit_id}")
        await _timed(http, times, "healthz", "GET", "/healthz")
        if time.monotonic() >= until:
            return
        await pause()


async def _load(
    base_url: str, key: str, body: dict, clients: int, seconds: float, think: float
) -> dict:
    times: dict[str, list] = {"submit": [], "status": [], "healthz": [], "errors": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as http:
        # Warm-up, not recorded: a running service has its connections (database pool, broker
        # producers) open and its statements compiled; a cold one pays that in its first second.
        warm: dict[str, list] = {name: [] for name in times}
        await asyncio.gather(*[_client(http, body, 0, 0, warm) for _ in range(clients)])
        until = time.monotonic() + seconds
        await asyncio.gather(*[_client(http, body, until, think, times) for _ in range(clients)])
    return times


def _serve(
    env: dict[str, str], port: int, worker: bool, log: Path, processes: int = 1
) -> subprocess.Popen:
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    command += ["--api-processes", str(processes)]
    process = subprocess.Popen(
        command if worker else [*command, "--no-worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start; see {log}")
        time.sleep(0.3)


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=60)


def _queue_to_start(base_url: str, key: str, body: dict, n: int) -> list[float]:
    """Submitted to claimed, one audit at a time on an idle worker (from the audit's own
    created_at and started_at, both written by the service)."""
    from datetime import datetime

    delays = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        for _ in range(n):
            audit = http.post("/v1/audits", json=body).json()
            while audit["status"] in ("queued", "running"):
                time.sleep(0.2)
                audit = http.get(f"/v1/audits/{audit['id']}").json()
            started = datetime.fromisoformat(audit["started_at"])
            delays.append((started - datetime.fromisoformat(audit["created_at"])).total_seconds())
    return delays


def _environment(root: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAUDIT_")}
    env.update(
        MEMAUDIT_DATA_DIR=str(root / "data"),
        MEMAUDIT_MODEL_ROOTS=str(root / "models"),
        MEMAUDIT_DATA_ROOTS=str(root / "inputs"),
        # Every client submits under one key; the per-key limit is not what is measured.
        MEMAUDIT_MAX_ACTIVE_AUDITS_PER_KEY="1000000",
        MEMAUDIT_LOG_LEVEL="WARNING",  # an access line per request would measure the logger
        MEMAUDIT_QUEUE=f"memaudit-bench-{uuid.uuid4().hex[:8]}",  # no backlog of another phase
        HF_HUB_OFFLINE="1",
    )
    if args.postgres:
        env["MEMAUDIT_DATABASE_URL"] = args.postgres
    if args.redis:
        env["MEMAUDIT_BROKER_URL"] = args.redis
    return env


def _audit_body(base_url: str, key: str, root: Path) -> dict:
    """The demo model and its canaries, uploaded: what every submission audits."""
    artifacts = build_demo(root / "models" / "bench-gpt2", root / "inputs" / "canaries.jsonl")
    with artifacts.dataset_path.open("rb") as stream:
        dataset = httpx.post(
            f"{base_url}/v1/datasets",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("canaries.jsonl", stream)},
        ).json()
    return {
        "model": {"uri": f"path:{artifacts.model_dir}"},
        "dataset": {"uri": dataset["uri"]},
        "checks": [{"kind": "loss", "params": {}}],
    }


def _new_key(env: dict[str, str]) -> str:
    """A shared PostgreSQL database already has its first admin key: make one for this phase."""
    command = [sys.executable, "-m", "app.cli", "keys", "create", "bench", "--scope", "submit"]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def _phase(args: argparse.Namespace, worker: bool, run) -> object:  # type: ignore[no-untyped-def]
    """A fresh service (its own data dir, database rows and queue) for one measurement."""
    root = Path(tempfile.mkdtemp(prefix="memaudit-load-"))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = _environment(root, args)
    service = _serve(env, port, worker, root / "serve.log", args.api_processes)
    try:
        key_file = root / "data" / "admin.key"
        key = key_file.read_text().strip() if key_file.exists() else _new_key(env)
        return run(base_url, key, _audit_body(base_url, key, root))
    finally:
        _stop(service)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="seconds a client waits between its calls (a CI job or dashboard polls about "
        "once a second); 0 drives the service flat out",
    )
    parser.add_argument("--api-processes", type=int, default=1, help="memaudit serve's")
    parser.add_argument("--postgres", help="an empty PostgreSQL database (default: SQLite)")
    parser.add_argument("--redis", help="a Redis URL for the broker (default: embedded)")
    args = parser.parse_args()

    times = _phase(
        args,
        False,
        lambda url, key, body: asyncio.run(
            _load(url, key, body, args.clients, args.seconds, args.think)
        ),
    )
    backend = "PostgreSQL" if args.postgres else "SQLite"
    broker = "Redis" if args.redis else "the embedded broker"
    print(f"{args.clients} clients, {args.think:g}s between calls, for {args.seconds:.0f}s, "
          f"{args.api_processes} API process(es), {backend} and {broker}, "
          f"{os.cpu_count()} cores (clients and server share them)")  # fmt: skip
    print(f"submissions/s: {len(times['submit']) / args.seconds:.1f}; failed requests: "
          f"{len(times['errors'])} {sorted(set(times['errors']))[:3]}")  # fmt: skip
    for name in ("submit", "status", "healthz"):
        print(_summary(name if name != "healthz" else "healthz (baseline)", times[name]))
    base = percentile(times["healthz"], 99)
    print(f"p99 ratio to /healthz: submit {percentile(times['submit'], 99) / base:.1f}x, "
          f"status {percentile(times['status'], 99) / base:.1f}x")  # fmt: skip

    delays = _phase(args, True, lambda url, key, body: _queue_to_start(url, key, body, 10))
    print(f"queue-to-start on an idle worker: median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {max(delays) * 1000:.0f} ms over {len(delays)} audits")  # fmt: skip


if __name__ == "__main__":
    main()
