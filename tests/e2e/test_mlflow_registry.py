"""MLflow end to end: a real `mlflow server` delivers its own webhook, the worker audits the
registered version and tags it; a version whose delivery was lost is found by reconciliation.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import Database
from core.models import WebhookDelivery
from tests.conftest import wait_for
from tests.e2e.conftest import MlflowServer, Served, free_port, serve
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
HOOK_SECRET = "memaudit-mlflow-hook-secret"


@pytest.fixture(scope="module")
def memaudit(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts, mlflow_server: MlflowServer
) -> Iterator[Served]:
    with serve(
        tmp_path_factory.mktemp("memaudit"),
        tiny_lm,
        mlflow_tracking_uri=mlflow_server.url,
        mlflow_webhook_secret=HOOK_SECRET,
        registry_poll_seconds=15.0,
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def registry(mlflow_server: MlflowServer):  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_server.url)
    return MlflowClient(mlflow_server.url)


def _register(model_dir: Path, name: str) -> str:
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


def _policy(memaudit: Served, tiny_lm: DemoArtifacts) -> dict:
    dataset = shutil.copy(tiny_lm.dataset_path, memaudit.data_root / "canaries.jsonl")
    body = {
        "name": "support-models",
        "source": "mlflow",
        "model_pattern": "support-*",
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


def _audit_of(memaudit: Served, uri: str) -> dict | None:
    listed = memaudit.client.get(
        "/v1/audits", headers=memaudit.headers, params={"model": uri}
    ).json()["data"]
    return listed[0] if listed else None


def _finished(memaudit: Served, uri: str) -> dict:
    def ended() -> dict | None:
        audit = _audit_of(memaudit, uri)
        return audit if audit and audit["status"] in ("succeeded", "failed") else None

    return wait_for(ended, 240, f"the audit of {uri} to finish")


def _tags(registry, name: str, version: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(registry.get_model_version(name, version).tags)


def _written_back(registry, name: str, version: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The version's tags once the verdict (written last) is among them."""
    return wait_for(
        lambda: (t := _tags(registry, name, version)).get("memaudit.verdict") and t,
        60,
        f"the memaudit.* tags on {name}/{version}",
    )


def test_mlflow_delivers_the_webhook_and_the_version_gets_its_verdict(
    memaudit: Served, mlflow_server: MlflowServer, registry, tiny_lm: DemoArtifacts
) -> None:
    from mlflow.entities.webhook import WebhookEvent

    policy = _policy(memaudit, tiny_lm)
    hook = registry.create_webhook(
        name="memaudit",
        url=f"{memaudit.base_url}/v1/hooks/mlflow",
        events=[
            WebhookEvent("model_version", "created"),
            WebhookEvent("model_version_tag", "set"),
        ],
        secret=HOOK_SECRET,
    )
    try:
        version = _register(tiny_lm.model_dir, "support-bot")
        uri = f"mlflow:models:/support-bot/{version}"
        audit = wait_for(lambda: _audit_of(memaudit, uri), 60, "the webhook's audit")
        assert audit["policy_id"] == policy["id"]
        assert audit["model_family"] == "mlflow:models:/support-bot"
        assert audit["model_version"] == version
        final = _finished(memaudit, uri)
        assert final["status"] == "succeeded", final
        # The demo model reproduces every canary: far above the 1% the policy allows.
        assert final["verdict"]["status"] == "fail"
        assert final["summary"]["extraction"]["members"]["greedy_rate"] > 0.5

        tags = _written_back(registry, "support-bot", version)
        assert tags["memaudit.verdict"] == "fail"
        assert tags["memaudit.audit_id"] == final["id"]
        assert tags["memaudit.report_url"].endswith(f"/audits/{final['id']}")
        rate = float(tags["memaudit.greedy_extraction_rate"])
        assert rate == pytest.approx(final["summary"]["extraction"]["all"]["greedy_rate"])

        # MLflow announced our own tags back to us: recorded, ignored, no second audit.
        db = Database(f"sqlite:///{Path(memaudit.data_root).parent / 'data' / 'memaudit.db'}")

        def handled() -> list[WebhookDelivery] | None:
            with db.session() as session:
                rows = list(session.scalars(select(WebhookDelivery)))
            tag_events = [d for d in rows if d.event == "model_version_tag.set"]
            done = all(d.status != "received" for d in rows)
            return rows if done and len(tag_events) >= len(tags) else None

        deliveries = wait_for(handled, 60, "every delivery handled")
        db.dispose()
        created = [d for d in deliveries if d.event == "model_version.created"]
        assert created[0].detail["audits"] == [final["id"]]
        tag_events = [d for d in deliveries if d.event == "model_version_tag.set"]
        assert {d.status for d in tag_events} == {"ignored"}
        listed = memaudit.client.get(
            "/v1/audits", headers=memaudit.headers, params={"family": "mlflow:models:/support-bot"}
        ).json()
        assert listed["count"] == 1
    finally:
        registry.delete_webhook(hook.webhook_id)


def test_a_version_whose_delivery_was_lost_is_audited_by_reconciliation(
    memaudit: Served, mlflow_server: MlflowServer, registry, tiny_lm: DemoArtifacts
) -> None:
    from mlflow.entities.webhook import WebhookEvent

    if not memaudit.client.get("/v1/policies", headers=memaudit.headers).json()["count"]:
        _policy(memaudit, tiny_lm)
    # The receiver is down: MLflow's delivery goes nowhere and it keeps no outbox.
    dead = registry.create_webhook(
        name="lost",
        url=f"http://127.0.0.1:{free_port()}/v1/hooks/mlflow",
        events=[WebhookEvent("model_version", "created")],
        secret=HOOK_SECRET,
    )
    try:
        version = _register(tiny_lm.model_dir, "support-assistant")
        uri = f"mlflow:models:/support-assistant/{version}"
        audit = wait_for(lambda: _audit_of(memaudit, uri), 90, "reconciliation's audit")
        assert audit["labels"]["policy"] == "support-models"
        final = _finished(memaudit, uri)
        assert final["status"] == "succeeded", final
        tags = _written_back(registry, "support-assistant", version)
        assert tags["memaudit.audit_id"] == final["id"]
    finally:
        registry.delete_webhook(dead.webhook_id)


def test_a_retention_policy_compares_each_new_version_with_the_previous(
    memaudit: Served, registry, tmp_path
) -> None:
    """Two registered versions of a factoid model: the policy's retention check reads the chain
    from the registry, so version 2 is compared with version 1, and its forgetting fails it."""
    from tests.worker.checks.reasoning.builders import factoid_versions

    versions = factoid_versions(tmp_path)
    dataset = shutil.copy(versions.dataset, memaudit.data_root / "factoids.jsonl")
    body = {
        "name": "kv-retention",
        "source": "mlflow",
        "model_pattern": "kv-*",
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [
            {"kind": "retention", "params": {"versions_from": "previous", "max_new_tokens": 8}}
        ],
        "thresholds": [{"metric": "retention.previous.forgetting_pp", "op": "<=", "value": 0}],
    }
    created = memaudit.client.post("/v1/policies", headers=memaudit.headers, json=body)
    assert created.status_code == 201, created.text
    first = _register(versions.first, "kv-facts")
    second = _register(versions.second, "kv-facts")
    # No webhook: reconciliation finds both versions.
    one = _finished(memaudit, f"mlflow:models:/kv-facts/{first}")
    two = _finished(memaudit, f"mlflow:models:/kv-facts/{second}")
    assert one["status"] == two["status"] == "succeeded", (one, two)
    assert one["checks"][0]["params"]["versions"] == []  # the first version: nothing before it
    assert one["summary"]["retention"]["accuracy"] == {"v0": 1.0}
    assert one["verdict"]["status"] == "unknown"
    assert two["checks"][0]["params"]["versions"] == [f"mlflow:models:/kv-facts/{first}"]
    change = two["summary"]["retention"]["consecutive"]["v0->v1"]
    assert change["accuracy_before"] == 1.0 and change["forgetting_pp"] > 0
    assert two["verdict"]["status"] == "fail"
    assert two["verdict"]["results"][0]["value"] == pytest.approx(change["forgetting_pp"])
    tags = _written_back(registry, "kv-facts", second)
    assert tags["memaudit.verdict"] == "fail"
