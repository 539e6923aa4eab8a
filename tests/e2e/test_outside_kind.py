"""A kind from an outside package, installed through the `memaudit.checks` entry point: the API
lists it, a real worker runs it, and the report draws it; nothing of the project changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import serve
from tests.flows import submit, wait_final
from tests.worker.checks.toy_package import write_toy_package
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow


def test_outside_kind_is_listed_run_and_drawn(
    tmp_path: Path, tiny_lm: DemoArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = write_toy_package(tmp_path / "site")
    # The service and the worker it supervises both load the entry points from this path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    (tmp_path / "serve").mkdir()
    with serve(tmp_path / "serve", tiny_lm) as served:
        listed = served.client.get("/v1/checks", headers=served.headers).json()["data"]
        toy = next(kind for kind in listed if kind["kind"] == "toy_tokens")
        assert toy["defaults"] == {"lowercase": False}
        assert toy["metrics"][0]["name"] == "n_tokens"

        dataset = shutil.copy(tiny_lm.dataset_path, served.data_root / "canaries.jsonl")
        checks = [{"kind": "toy_tokens", "params": {}}, {"kind": "loss", "params": {}}]
        audit = submit(served.client, served.headers, tiny_lm.model_dir, f"path:{dataset}", checks)
        audit = wait_final(served.client, served.headers, audit["id"])
        assert audit["status"] == "succeeded", audit["error"]
        n_records = tiny_lm.n_members + tiny_lm.n_nonmembers
        summary = audit["summary"]["toy_tokens"]
        assert summary["n"] == n_records and summary["max_tokens"] > 1
        assert audit["summary"]["loss"]["n_samples"] == n_records  # the built-in kinds beside it

        rows = served.client.get(
            f"/v1/audits/{audit['id']}/samples",
            headers=served.headers,
            params={"check": "toy_tokens", "order_by": "n_tokens", "desc": "true", "limit": 3},
        ).json()["data"]
        assert rows[0]["values"]["n_tokens"] == summary["max_tokens"]

        page = served.client.get(f"/audits/{audit['id']}", headers=served.headers)
        assert page.status_code == 200
        assert "Toy tokens" in page.text and 'id="toy-counts"' in page.text
        export = served.client.get(f"/v1/audits/{audit['id']}/report.html", headers=served.headers)
        assert "Toy tokens" in export.text and "at most" in export.text

        # Its params are checked at submit like a built-in kind's.
        body = {
            "model": {"uri": f"path:{tiny_lm.model_dir}"},
            "dataset": {"uri": f"path:{dataset}"},
            "checks": [{"kind": "toy_tokens", "params": {"lowercase": "maybe"}}],
        }
        refused = served.client.post("/v1/audits", headers=served.headers, json=body)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_params"
