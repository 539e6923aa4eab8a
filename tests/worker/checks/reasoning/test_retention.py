"""`retention` along a real two-version chain: facts taught, then partly forgotten."""

from __future__ import annotations

import pytest

from tests.flows import all_samples, wait_final
from tests.worker.checks.reasoning.builders import factoid_versions

pytestmark = pytest.mark.slow


def test_forgetting_is_measured_and_the_lost_factoids_listed(make_stack, tmp_path) -> None:
    versions = factoid_versions(tmp_path)
    stack = make_stack(
        model_roots=str(versions.first.parent), data_roots=str(versions.dataset.parent)
    )
    worker = stack.start_worker()
    body = {
        "model": {"uri": f"path:{versions.second}"},
        "dataset": {"uri": f"path:{versions.dataset}"},
        "checks": [
            {
                "kind": "retention",
                "params": {"versions": [f"path:{versions.first}"], "max_new_tokens": 8},
            }
        ],
    }
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
    audit = wait_final(stack.client, stack.headers, response.json()["id"], timeout=300)
    assert audit["status"] == "succeeded", (audit, worker.tail())
    summary = audit["summary"]["retention"]
    assert summary["accuracy"]["v0"] == 1.0  # stage 1 memorized every factoid
    change = summary["from_reference"]["v1"]
    assert change["retention"] == summary["accuracy"]["v1"]
    assert 0 < change["retention"] < 1  # some facts survive stage 2, some do not
    assert change["forgetting_pp"] == pytest.approx(100 * (1.0 - change["retention"]))
    assert change["transitions"]["forgotten"] == len(summary["forgotten"]) > 0
    rows = all_samples(stack.client, stack.headers, audit["id"], "retention")
    lost = {r["sample_id"] for r in rows if r["values"]["lost_at"] == "v1"}
    assert lost == {entry["id"] for entry in summary["forgotten"]}
    assert summary["matrix"][0][1] == change["retention"]


def test_version_uris_are_checked_at_submit(make_stack, tmp_path) -> None:
    versions = factoid_versions(tmp_path, n=4)
    stack = make_stack(
        model_roots=str(versions.first.parent), data_roots=str(versions.dataset.parent)
    )
    body = {
        "model": {"uri": f"path:{versions.second}"},
        "dataset": {"uri": f"path:{versions.dataset}"},
        "checks": [{"kind": "retention", "params": {"versions": [f"path:{tmp_path}/nowhere"]}}],
    }
    refused = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_model"
    # The registry chain needs a registered model; listing versions and reading them conflict.
    body["checks"][0]["params"] = {"versions_from": "previous"}
    unregistered = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert unregistered.status_code == 422
    assert "mlflow:models:/<name>/<version>" in unregistered.json()["error"]["message"]
    body["checks"][0]["params"] = {
        "versions_from": "registry",
        "versions": [f"path:{versions.first}"],
    }
    both = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert both.status_code == 422 and "list none" in both.json()["error"]["message"]
