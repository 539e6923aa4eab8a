"""W&B registry automations end to end, against a LOCAL FAKE of W&B (tests/wandb_fake.py:
memaudit's WandbClient over a folder, named by MEMAUDIT_WANDB_CLIENT; W&B's servers cannot be
reached here, so this shows memaudit's side of the contract: the webhook W&B's documentation
describes, and the client interface the `wandb` package is wrapped behind).

A version linked to a registry collection is announced by a signed delivery; a real worker
process resolves the policy, fetches the version's safe files through the fake, audits the
model and writes the verdict back as the version's metadata. The same delivery again starts
nothing; an alias added to the audited version is its own event and reuses that audit; a team
without the W&B grant is refused its policy's audit.
"""

from __future__ import annotations

import pytest

from core.models import WebhookDelivery
from tests.conftest import wait_for
from tests.wandb_fake import FakeWandb, deliver

pytestmark = pytest.mark.slow
TOKEN = "wandb-webhook-access-token-e2e-0123456789"
SECRET = "wandb-webhook-signing-secret-e2e-0123456789"
URL = "/v1/hooks/wandb"
PATH = "acme/wandb-registry-model/support-lm"
REFUSED = {
    "pytorch_model.bin": b"\x80\x04pickled",
    "modeling_custom.py": b"import os\nos.system('id')\n",
}


def _policy(stack, tiny_lm, name: str, pattern: str, team: str | None = None) -> dict:
    body = {
        "name": name,
        "source": "wandb",
        "model_pattern": pattern,
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [
            {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
            {"kind": "loss", "params": {}},
        ],
        "thresholds": [{"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01}],
        **({"team": team} if team else {}),
    }
    response = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _audits(stack, **params: str) -> list[dict]:
    response = stack.client.get("/v1/audits", headers=stack.headers, params=params)
    return response.json()["data"]


def _handled(stack, key: str) -> WebhookDelivery:
    def done() -> WebhookDelivery | None:
        with stack.db.session() as session:
            row = session.get(WebhookDelivery, key)
            return row if row is not None and row.status != "received" else None

    return wait_for(done, 60, f"delivery {key} handled")


def test_a_linked_version_is_audited_once_and_its_verdict_written_back(
    make_stack, tiny_lm, tmp_path
) -> None:
    fake = FakeWandb(tmp_path / "wandb")
    stack = make_stack(
        wandb_webhook_token=TOKEN,
        wandb_webhook_secret=SECRET,
        wandb_client="tests.wandb_fake:client",
        wandb_base_url=str(fake.root),
        shard_size=64,
    )
    worker = stack.start_worker()
    policy = _policy(stack, tiny_lm, "acme-registry", "acme/wandb-registry-model/support-*")
    version = fake.link(PATH, tiny_lm.model_dir, REFUSED)
    link = fake.payload("LINK_ARTIFACT", version)
    accepted = deliver(stack.client, URL, link, token=TOKEN, secret=SECRET)
    assert accepted.status_code == 202, accepted.text

    def finished() -> dict | None:
        found = _audits(stack, model=version.uri)
        return found[0] if found and found[0]["status"] in ("succeeded", "failed") else None

    final = wait_for(finished, 180, f"the audit of {version.uri}: {worker.tail(20)}")
    assert final["status"] == "succeeded", final
    assert final["policy_id"] == policy["id"]
    assert final["model_version"] == "v0" and final["labels"]["wandb.event"] == "LINK_ARTIFACT"
    # The demo model reproduces its canaries: above the 1% the policy allows.
    assert final["verdict"]["status"] == "fail"

    # Fetched through the client: the safe files, never the pickle or the code.
    fetched = {name.rsplit("/", 1)[1] for name in fake.fetched()}
    assert {"config.json", "model.safetensors"} <= fetched
    assert not fetched & set(REFUSED)

    metadata = wait_for(
        lambda: (m := fake.metadata(version)).get("memaudit.verdict", "pending") != "pending" and m,
        60,
        "the verdict in the version's metadata",
    )
    assert metadata["memaudit.verdict"] == "fail"
    assert metadata["memaudit.promotion"] == "blocked"
    assert metadata["memaudit.audit_id"] == final["id"]
    assert float(metadata["memaudit.greedy_extraction_rate"]) > 0.01  # the threshold

    # W&B retries, or someone replays the request: answered, and nothing starts.
    replay = deliver(stack.client, URL, link, token=TOKEN, secret=SECRET)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert replay.json()["earlier"]["detail"]["audits"] == [final["id"]]

    # The audited version promoted: its own event, handled, and the audit is not run again.
    fake.add_alias(version, "production")
    promoted = fake.payload(
        "ADD_ARTIFACT_ALIAS", version, "production", version_string=f"{PATH}:production"
    )
    response = deliver(stack.client, URL, promoted, token=TOKEN, secret=SECRET)
    assert response.status_code == 202, response.text
    row = _handled(stack, response.json()["delivery"])
    assert row.status == "processed" and row.detail["model_uri"] == version.uri
    assert row.detail["audits"] == []
    assert [a["id"] for a in _audits(stack, family=f"wandb:{PATH}")] == [final["id"]]

    # A team without the W&B grant: its policy's audit is refused, nothing is fetched.
    team = stack.client.post(
        "/v1/teams", headers=stack.headers, json={"name": "no-wandb", "data_folders": ["*"]}
    )
    assert team.status_code == 201, team.text
    _policy(stack, tiny_lm, "no-grant", "acme/wandb-registry-model/secret-*", team="no-wandb")
    secret = fake.link("acme/wandb-registry-model/secret-lm", tiny_lm.model_dir)
    count = len(fake.fetched())
    response = deliver(
        stack.client, URL, fake.payload("LINK_ARTIFACT", secret), token=TOKEN, secret=SECRET
    )
    row = _handled(stack, response.json()["delivery"])
    assert row.detail["audits"] == []
    [refusal] = row.detail["refused"]
    assert refusal["policy"] == "no-grant" and "not granted" in refusal["error"]
    assert _audits(stack, model=secret.uri) == []
    assert len(fake.fetched()) == count
