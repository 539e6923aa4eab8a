"""Client-side flows shared by the end-to-end tests (TestClient and httpx alike)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.browser_sessions import SESSION_COOKIE, origin_of
from worker.demo import DemoArtifacts

FINAL = ("succeeded", "failed", "cancelled")
NONCE = re.compile(r'name="nonce" value="([^"]+)"')
PUBLIC_URL = "http://127.0.0.1:8000"  # Settings' default: the origin a browser would send


def sign_in(
    client, key: str, next_path: str = "/audits", public_url: str = PUBLIC_URL, **post_options
):
    """The dashboard's sign-in as a browser does it: the form (its nonce), then the post from
    the service's own origin. Returns the response to the post."""
    form = client.get("/login")
    nonce = NONCE.search(form.text).group(1)
    return client.post(
        "/login",
        data={"key": key, "nonce": nonce, "next": next_path},
        headers={"Origin": origin_of(public_url)},
        follow_redirects=False,
        **post_options,
    )


def session_cookie(client, key: str) -> dict[str, str]:
    """The cookie a signed-in browser holds."""
    response = sign_in(client, key)
    assert response.status_code == 303, response.text
    return {SESSION_COOKIE: client.cookies[SESSION_COOKIE]}


def upload(client, headers: dict[str, str], path: Path) -> dict:
    with path.open("rb") as stream:
        response = client.post(
            "/v1/datasets",
            headers=headers,
            files={"file": (path.name, stream, "application/x-ndjson")},
        )
    assert response.status_code in (200, 201), response.text
    return response.json()


def submit(
    client,
    headers: dict[str, str],
    model_dir: Path | None,
    dataset_uri: str,
    checks: list[dict] | None = None,
) -> dict:
    """An audit accepted (202); `model_dir` None submits a dataset audit (`"model": null`)."""
    body = {
        "model": {"uri": f"path:{model_dir}"} if model_dir is not None else None,
        "dataset": {"uri": dataset_uri},
        "checks": checks or [{"kind": "loss", "params": {}}],
    }
    response = client.post("/v1/audits", headers=headers, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def wait_final(client, headers: dict[str, str], audit_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        audit = client.get(f"/v1/audits/{audit_id}", headers=headers).json()
        if audit["status"] in FINAL:
            return audit
        assert time.monotonic() < deadline, f"audit still {audit['status']}: {audit}"
        time.sleep(0.3)


def all_samples(client, headers: dict[str, str], audit_id: str, check: str = "loss") -> list:
    rows, offset = [], 0
    while True:
        page = client.get(
            f"/v1/audits/{audit_id}/samples",
            headers=headers,
            params={"check": check, "limit": 1000, "offset": offset},
        ).json()
        rows += page["data"]
        offset += len(page["data"])
        if offset >= page["count"] or not page["data"]:
            return rows


def run_canary_audit(client, headers: dict[str, str], lm: DemoArtifacts) -> dict:
    """Upload the canary dataset, audit the model, and check that memorization shows."""
    dataset = upload(client, headers, lm.dataset_path)
    assert dataset["n_records"] == lm.n_members + lm.n_nonmembers
    audit = submit(client, headers, lm.model_dir, dataset["uri"])
    assert audit["status"] == "queued"
    audit = wait_final(client, headers, audit["id"])
    assert audit["status"] == "succeeded", audit
    assert audit["progress"] == {
        "done": audit["progress"]["total"],
        "total": lm.n_members + lm.n_nonmembers,
    }

    rows = all_samples(client, headers, audit["id"])
    assert len(rows) == lm.n_members + lm.n_nonmembers
    assert sorted(r["sample_index"] for r in rows) == list(range(len(rows)))
    canary = [r["values"]["loss"] for r in rows if r["sample_id"].startswith("canary")]
    heldout = [r["values"]["loss"] for r in rows if r["sample_id"].startswith("heldout")]
    assert len(canary) == lm.n_members and len(heldout) == lm.n_nonmembers
    assert max(canary) < min(heldout), (max(canary), min(heldout))

    by_loss = client.get(
        f"/v1/audits/{audit['id']}/samples",
        headers=headers,
        params={"check": "loss", "order_by": "loss", "desc": True},
    ).json()
    losses = [row["values"]["loss"] for row in by_loss["data"]]
    assert losses == sorted(losses, reverse=True) and losses[0] == max(heldout)

    summary = audit["summary"]["loss"]
    assert summary["n_samples"] == len(rows)
    assert (
        summary["by_member"]["members"]["mean_nll"] < summary["by_member"]["nonmembers"]["mean_nll"]
    )
    assert audit["provenance"]["dataset_sha256"] == dataset["sha256"]
    assert len(audit["provenance"]["model_sha256"]) == 64
    return audit


def scrape(client, headers: dict[str, str]) -> dict[str, float]:
    """/metrics read by Prometheus's own parser: `name` or `name{label="value",...}` (labels
    sorted) to its value."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found
