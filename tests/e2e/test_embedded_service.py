"""`memaudit serve` as a user starts it: SQLite, the SQLite broker, a supervised worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, filler_records, make_settings, settings_env, write_jsonl
from tests.flows import FINAL, run_canary_audit, submit, upload, wait_final
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    client: httpx.Client
    headers: dict[str, str]
    data_root: Path
    batch_size: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    data_root = root / "inputs"
    data_root.mkdir()
    settings = make_settings(
        root / "data", tiny_lm.model_dir.parent, data_root, shard_size=64, batch_size=4
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
        yield Served(client, {"Authorization": f"Bearer {key}"}, data_root, 4)
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
    marker = f"MEMAUDIT_DATA_DIR={data_dir}".encode()
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


def test_canary_audit_end_to_end(served: Served, tiny_lm: DemoArtifacts) -> None:
    audit = run_canary_audit(served.client, served.headers, tiny_lm)
    page = served.client.get(f"/audits/{audit['id']}", headers=served.headers)
    assert page.status_code == 200 and audit["id"] in page.text and "succeeded" in page.text
    assert audit["report_url"].endswith(f"/audits/{audit['id']}")


def test_malformed_line_fails_only_its_audit(served: Served, tiny_lm: DemoArtifacts) -> None:
    records = filler_records(80)
    bad = write_jsonl(served.data_root / "bad.jsonl", records)
    lines = bad.read_text().splitlines()
    lines[36] = '{"id": "r36", "text": "unterminated'  # physical line 37
    bad.write_text("\n".join(lines) + "\n")
    good = write_jsonl(served.data_root / "good.jsonl", filler_records(80, seed=2))

    failing = submit(served.client, served.headers, tiny_lm.model_dir, f"path:{bad}")
    passing = submit(served.client, served.headers, tiny_lm.model_dir, f"path:{good}")
    failing = wait_final(served.client, served.headers, failing["id"])
    passing = wait_final(served.client, served.headers, passing["id"])
    assert failing["status"] == "failed"
    assert "line 37" in failing["error"], failing["error"]
    assert passing["status"] == "succeeded"
    assert passing["summary"]["loss"]["n_samples"] == 80


def _row_count(served: Served, audit_id: str) -> int:
    response = served.client.get(
        f"/v1/audits/{audit_id}/samples", headers=served.headers, params={"limit": 1}
    )
    return response.json()["count"]


def test_cancel_stops_a_running_audit_within_one_batch(
    served: Served, tiny_lm: DemoArtifacts
) -> None:
    big = write_jsonl(served.data_root / "big.jsonl", filler_records(3000, seed=3))
    audit = submit(served.client, served.headers, tiny_lm.model_dir, f"path:{big}")
    deadline = time.monotonic() + 120
    while (
        served.client.get(f"/v1/audits/{audit['id']}", headers=served.headers).json()["progress"][
            "done"
        ]
        < 2 * served.batch_size
    ):
        assert time.monotonic() < deadline, "the audit never started"
        time.sleep(0.05)

    response = served.client.post(f"/v1/audits/{audit['id']}/cancel", headers=served.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    at_cancel = _row_count(served, audit["id"])

    # Wait until the row count has been still for two seconds: the worker has stopped.
    last, still_since = at_cancel, time.monotonic()
    while time.monotonic() - still_since < 2.0:
        time.sleep(0.2)
        now = _row_count(served, audit["id"])
        if now != last:
            last, still_since = now, time.monotonic()
    assert last - at_cancel <= served.batch_size, (at_cancel, last)
    assert last < 3000
    final = served.client.get(f"/v1/audits/{audit['id']}", headers=served.headers).json()
    assert final["status"] == "cancelled" and final["status"] in FINAL
    again = served.client.post(f"/v1/audits/{audit['id']}/cancel", headers=served.headers)
    assert again.status_code == 409


def test_extraction_and_membership_through_the_service(
    served: Served, tiny_lm: DemoArtifacts
) -> None:
    body = {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "reference_model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": upload(served.client, served.headers, tiny_lm.dataset_path)["uri"]},
        "checks": [
            {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
            {"kind": "membership", "params": {"bootstrap": 100}},
        ],
    }
    response = served.client.post("/v1/audits", headers=served.headers, json=body)
    assert response.status_code == 202, response.text
    audit = wait_final(served.client, served.headers, response.json()["id"])
    assert audit["status"] == "succeeded", audit

    extraction = audit["summary"]["extraction"]
    assert extraction["members"]["greedy_rate"] > 0.5
    assert extraction["nonmembers"]["greedy_rate"] == 0.0
    membership = audit["summary"]["membership"]["scores"]
    assert membership["loss"]["auroc"]["value"] >= 0.95
    assert membership["ref"]["auroc"]["value"] == 0.5  # own reference: every score is 0
    assert audit["provenance"]["checks"][0]["params"]["suffix_tokens"] == 16

    page = served.client.get(
        f"/v1/audits/{audit['id']}/samples",
        headers=served.headers,
        params={"check": "extraction", "order_by": "log10_pz.topk40_T1", "desc": True, "limit": 48},
    ).json()
    ranked = [row["values"]["log10_pz"]["topk40_T1"] for row in page["data"]]
    finite = [value for value in ranked if value is not None]
    assert finite == sorted(finite, reverse=True) and ranked[: len(finite)] == finite
    assert page["data"][0]["sample_id"].startswith("canary")
