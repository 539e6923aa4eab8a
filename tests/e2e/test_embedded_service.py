"""`memaudit serve` as a user starts it: SQLite, the SQLite broker, a supervised worker."""

from __future__ import annotations

import time

import pytest

from tests.conftest import filler_records, write_jsonl
from tests.e2e.conftest import Served
from tests.flows import FINAL, run_canary_audit, submit, upload, wait_final
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow


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
    # Its own reference: every score is 0 up to float noise (the two passes batch and pad the
    # texts differently). The AUROC of noise is a coin toss (sd ~0.085 at 24 + 24 samples), so
    # the scores themselves are what is asserted, below.
    assert membership["ref"]["auroc"]["value"] is not None
    refs = served.client.get(
        f"/v1/audits/{audit['id']}/samples",
        headers=served.headers,
        params={"check": "membership", "limit": 1000},
    ).json()["data"]
    assert max(abs(row["values"]["ref"]) for row in refs) < 1e-6
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
