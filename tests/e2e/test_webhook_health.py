"""Webhook health end to end: a real `mlflow server` whose webhook was created with the wrong
secret. Its deliveries are listed as refused, with the reason and no audit; the version they
announced is caught by the reconciliation, listed as such; both pages work in a real Chromium.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.browsers import Watched
from tests.e2e.conftest import MlflowServer, Served, serve
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
HOOK_SECRET = "memaudit-health-hook-secret"
WRONG_SECRET = "a-secret-memaudit-never-had"
POLL_SECONDS = 10


@pytest.fixture(scope="module")
def memaudit(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts, mlflow_server: MlflowServer
) -> Iterator[Served]:
    with serve(
        tmp_path_factory.mktemp("health"),
        tiny_lm,
        mlflow_tracking_uri=mlflow_server.url,
        mlflow_webhook_secret=HOOK_SECRET,
        registry_poll_seconds=float(POLL_SECONDS),
    ) as instance:
        yield instance


def _serve_log(memaudit: Served) -> str:
    return (Path(memaudit.data_root).parent / "serve.log").read_text()


def _deliveries(memaudit: Served, **params: str) -> list[dict]:
    response = memaudit.client.get("/v1/deliveries", headers=memaudit.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _policy(memaudit: Served, tiny_lm: DemoArtifacts) -> dict:
    dataset = shutil.copy(tiny_lm.dataset_path, memaudit.data_root / "canaries.jsonl")
    body = {
        "name": "health-models",
        "source": "mlflow",
        "model_pattern": "health-*",
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [{"kind": "loss", "params": {}}],
        "thresholds": [{"metric": "loss.mean_loss", "op": ">=", "value": 0.5}],
    }
    response = memaudit.client.post("/v1/policies", headers=memaudit.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _register(registry, model_dir: Path, name: str):  # type: ignore[no-untyped-def]
    """A `save_pretrained` directory logged to a run, then registered from the run's artifacts."""
    run = registry.create_run(registry.get_experiment_by_name("Default").experiment_id)
    registry.log_artifacts(run.info.run_id, str(model_dir), "model")
    registry.set_terminated(run.info.run_id)
    return registry.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )


def test_the_service_says_at_start_which_integrations_are_on(
    memaudit: Served, mlflow_server: MlflowServer
) -> None:
    log = _serve_log(memaudit)
    assert (
        f"integration mlflow: webhook on (POST /v1/hooks/mlflow); tracking URI {mlflow_server.url}"
        in log
    )
    assert "integration huggingface: webhook off (set MEMAUDIT_HF_WEBHOOK_SECRET" in log
    assert HOOK_SECRET not in log
    # The worker's beat owns the reconciliation and says so when it starts.
    wait_for(
        lambda: f"MLflow reconciliation every {POLL_SECONDS} s" in _serve_log(memaudit),
        60,
        "the beat's start-up line",
    )


def test_a_webhook_with_the_wrong_secret_is_listed_refused_with_no_audit(
    memaudit: Served, mlflow_server: MlflowServer, tiny_lm: DemoArtifacts, browser
) -> None:
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookEvent

    _policy(memaudit, tiny_lm)
    registry = MlflowClient(mlflow_server.url)
    hook = registry.create_webhook(
        name="wrong-secret",
        url=f"{memaudit.base_url}/v1/hooks/mlflow",
        events=[WebhookEvent("model_version", "created")],
        secret=WRONG_SECRET,
    )
    try:
        tested = registry.test_webhook(hook.webhook_id)
        # What the user setting up the webhook reads: which two secrets to compare.
        assert not tested.success and tested.response_status == 401
        assert "MEMAUDIT_MLFLOW_WEBHOOK_SECRET" in tested.response_body
        assert HOOK_SECRET not in tested.response_body
        registry.create_registered_model("health-bot")
        version = _register(registry, tiny_lm.model_dir, "health-bot")
        uri = f"mlflow:models:/health-bot/{version.version}"

        refused = wait_for(
            lambda: (rows := _deliveries(memaudit, outcome="refused")) and len(rows) >= 2 and rows,
            60,
            "the test delivery and the version's delivery, refused",
        )
        for row in refused:
            assert row["source"] == "mlflow" and row["event"] == "model_version.created"
            assert row["reason"].startswith("bad_signature: the signature does not match")
            assert row["delivery_id"] and row["audits"] == []
        assert _deliveries(memaudit, outcome="processed") == []  # no delivery started anything
        # The webhook missed the version; the reconciliation finds it and says so.
        caught = wait_for(
            lambda: next(
                (r for r in _deliveries(memaudit, outcome="reconciled") if r["model_uri"] == uri),
                None,
            ),
            POLL_SECONDS * 6,
            "the reconciliation's catch",
        )
        assert caught["event"] == "reconciliation" and len(caught["audits"]) == 1
    finally:
        registry.delete_webhook(hook.webhook_id)

    watched = Watched(browser, 1280)
    page = watched.page
    try:
        page.goto(f"{memaudit.base_url}/audits")
        page.fill("input[name=key]", memaudit.key)
        page.click("button[type=submit]")
        page.wait_for_url("**/audits")
        page.click("nav >> text=Deliveries")
        page.wait_for_url("**/deliveries")
        watched.shot("deliveries")
        reasons = page.locator("tr[data-outcome=refused] td[data-reason]").all_inner_texts()
        assert len(reasons) >= 2 and all("MEMAUDIT_MLFLOW_WEBHOOK_SECRET" in r for r in reasons)
        assert page.locator("tr[data-outcome=refused] [data-no-audit]").count() == len(reasons)
        assert "bad_signature" in page.locator("[data-refusal-counts]").inner_text()
        page.select_option("select[name=outcome]", "reconciled")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**outcome=reconciled**")
        assert page.locator("tr[data-outcome=refused]").count() == 0
        audit_id = caught["audits"][0]["id"]
        page.click(f"[data-started='{audit_id}'] a")
        page.wait_for_url(f"**/audits/{audit_id}")
        page.click("nav >> text=Policies")
        page.wait_for_url("**/policies")
        watched.shot("policies")
        policy = page.locator("[data-policy='health-models']")
        assert policy.locator("[data-pattern]").inner_text() == "health-*"
        assert "loss.mean_loss >= 0.5" in policy.locator("[data-thresholds]").inner_text()
        assert policy.locator(f"tr[data-audit='{audit_id}']").count() == 1
        assert watched.errors == []  # nothing the CSP or a script refused
        assert watched.hosts == {"127.0.0.1"}
    finally:
        watched.close()
