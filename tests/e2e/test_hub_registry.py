"""The Hugging Face Hub end to end, against a LOCAL FAKE of the Hub's HTTP API (tests/hub_fake.py):
the real Hub cannot be reached from here, so this shows memaudit's side of the contract (the
webhook it receives, the library calls it makes) in the shapes huggingface_hub parses, not the
Hub's own behaviour.

A commit pushed to the fake Hub is announced by its webhook (a `repo.content` update carrying
the shared secret); the running service records it, its worker downloads that revision from
the fake Hub (HF_HUB_OFFLINE=0 for this service, MEMAUDIT_HF_ENDPOINT pointing at the fake),
audits it and writes the verdict back as one discussion and one tag; the announcement of that
tag is ignored. A delivery with the wrong secret is refused and starts nothing; pickled weights
and custom code in the repository are never fetched.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from core.db import Database
from core.models import WebhookDelivery
from tests.conftest import wait_for
from tests.e2e.conftest import Served, serve
from tests.hub_fake import FakeHub, deliver
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
HOOK_SECRET = "memaudit-hub-hook-secret"
TOKEN = "hf_fake_write_token_e2e_0123456789"
REPO = "acme/support-lm"
REFUSED = {
    "pytorch_model.bin": b"\x80\x04pickled",
    "modeling_custom.py": b"import os\nos.system('id')\n",
}


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def memaudit(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts, hub: FakeHub
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("memaudit-hub")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "0")  # the suite runs offline; this service's Hub is online
        with serve(
            root,
            tiny_lm,
            hf_webhook_secret=HOOK_SECRET,
            hf_endpoint=hub.url,
            hf_token=TOKEN,
            hf_cache_dir=str(root / "hub-cache"),
        ) as instance:
            yield instance
    # The write token is a secret: never in the service's log.
    assert TOKEN not in (root / "serve.log").read_text()


def _policy(memaudit: Served, tiny_lm: DemoArtifacts) -> dict:
    dataset = shutil.copy(tiny_lm.dataset_path, memaudit.data_root / "canaries.jsonl")
    body = {
        "name": "acme-hub",
        "source": "huggingface",
        "model_pattern": "acme/*",
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [
            {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
            {"kind": "loss", "params": {}},
        ],
        "thresholds": [{"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01}],
    }
    response = memaudit.client.post("/v1/policies", headers=memaudit.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _audits(memaudit: Served, **params: str) -> list[dict]:
    return memaudit.client.get("/v1/audits", headers=memaudit.headers, params=params).json()["data"]


def _deliveries(memaudit: Served) -> list[WebhookDelivery]:
    """The Hub deliveries the service accepted (refused ones may be kept for display)."""
    db = Database(f"sqlite:///{memaudit.data_root.parent / 'data' / 'memaudit.db'}")
    try:
        with db.session() as session:
            rows = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.source == "huggingface")
            )
            return [d for d in rows if d.status in ("received", "processed", "ignored")]
    finally:
        db.dispose()


def test_a_hub_push_is_audited_and_its_verdict_written_back_to_the_hub(
    memaudit: Served, hub: FakeHub, tiny_lm: DemoArtifacts
) -> None:
    policy = _policy(memaudit, tiny_lm)
    hub.subscribe(f"{memaudit.base_url}/v1/hooks/huggingface", HOOK_SECRET)
    try:
        commit = hub.push(REPO, tiny_lm.model_dir, REFUSED)
        assert hub.deliveries[-1][1] == 202
        uri = f"hf:{REPO}@{commit}"

        def finished() -> dict | None:
            found = _audits(memaudit, model=uri)
            return found[0] if found and found[0]["status"] in ("succeeded", "failed") else None

        final = wait_for(finished, 240, f"the audit of {uri} to finish")
        assert final["status"] == "succeeded", final
        assert final["policy_id"] == policy["id"]
        assert final["model_version"] == commit
        # The demo model reproduces every canary: far above the 1% the policy allows.
        assert final["verdict"]["status"] == "fail"

        # Downloaded from the fake Hub: its safe files, never the pickle or the custom code.
        fetched = {path.rsplit("/", 1)[1] for path in hub.fetched}
        assert {"config.json", "model.safetensors"} <= fetched
        assert not fetched & set(REFUSED), hub.fetched

        repo = hub.repos[REPO]
        tag = f"memaudit-blocked-{final['id']}"
        wait_for(lambda: tag in repo.tags, 60, "the verdict's tag on the fake Hub")
        assert repo.tags[tag]["commit"] == commit
        assert len(repo.discussions) == 1
        discussion = repo.discussions[0]
        assert discussion["title"] == f"memaudit: fail for {commit[:12]} (audit {final['id']})"
        assert f"/audits/{final['id']}" in discussion["description"]
        assert "policy `acme-hub`" in discussion["description"]
        assert hub.refused_writes == 0

        # The Hub announced our tag back to us: recorded, ignored, no second audit.
        def handled() -> list[WebhookDelivery] | None:
            rows = _deliveries(memaudit)
            return rows if len(rows) == 2 and all(d.status != "received" for d in rows) else None

        rows = wait_for(handled, 60, "both Hub deliveries handled")
        outcomes = sorted((d.status, d.detail.get("reason", "")) for d in rows)
        assert outcomes == [("ignored", "our own memaudit-* tag"), ("processed", "")]
        assert [d.detail["audits"] for d in rows if d.status == "processed"] == [[final["id"]]]
        assert len(_audits(memaudit, family=f"hf:{REPO}")) == 1
    finally:
        hub.webhook = None


def test_a_delivery_with_the_wrong_secret_is_refused_and_starts_nothing(
    memaudit: Served, hub: FakeHub, tiny_lm: DemoArtifacts
) -> None:
    if not memaudit.client.get("/v1/policies", headers=memaudit.headers).json()["count"]:
        _policy(memaudit, tiny_lm)
    commit = hub.push(REPO, tiny_lm.model_dir, {"README.md": b"# a second commit\n"})
    before = len(_deliveries(memaudit))
    fetched = len(hub.fetched)
    payload = hub.payload(REPO, [{"ref": "refs/heads/main", "newSha": commit}])
    response = deliver(f"{memaudit.base_url}/v1/hooks/huggingface", "not-the-hub-secret", payload)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "bad_secret"
    time.sleep(3)  # what a wrongly queued delivery would have started by now
    assert _audits(memaudit, model=f"hf:{REPO}@{commit}") == []
    assert len(_deliveries(memaudit)) == before
    assert len(hub.fetched) == fetched  # nothing was downloaded for it
    # The same delivery with the Hub's secret is accepted.
    accepted = deliver(f"{memaudit.base_url}/v1/hooks/huggingface", HOOK_SECRET, payload)
    assert accepted.status_code == 202, accepted.text
    wait_for(lambda: _audits(memaudit, model=f"hf:{REPO}@{commit}"), 60, "the accepted audit")
