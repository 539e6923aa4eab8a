"""MLflow-native results against a real `mlflow server`: the audit's numbers logged to a run
linked to the version (the registering run, or memaudit's own for a version registered without
one), the masked report attached when asked for, and re-audits started by a `memaudit.reaudit`
tag delivered through MLflow's own `model_version_tag.set` webhook, once per value.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities.webhook import WebhookEvent
from sqlalchemy import select

from core.db import Database
from core.models import WebhookDelivery
from tests.conftest import wait_for
from tests.e2e.browsers import Watched
from tests.e2e.conftest import (
    MlflowServer,
    Served,
    audit_of,
    finished,
    register,
    serve,
    version_tags_of,
    written_back,
)
from worker.demo import DemoArtifacts
from worker.mlflow_results import EXPERIMENT

pytestmark = pytest.mark.slow
HOOK_SECRET = "memaudit-mlflow-results-secret"


@pytest.fixture(scope="module")
def memaudit(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts, mlflow_server: MlflowServer
) -> Iterator[Served]:
    with serve(
        tmp_path_factory.mktemp("memaudit"),
        tiny_lm,
        mlflow_tracking_uri=mlflow_server.url,
        mlflow_webhook_secret=HOOK_SECRET,
        mlflow_attach_report=True,
        # Reconciliation runs through the test: it must never start a re-audit.
        registry_poll_seconds=10.0,
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def policy(memaudit: Served, tiny_lm: DemoArtifacts) -> dict:
    dataset = shutil.copy(tiny_lm.dataset_path, memaudit.data_root / "canaries.jsonl")
    body = {
        "name": "results-models",
        "source": "mlflow",
        "model_pattern": "results-*",
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [
            {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
            {"kind": "loss", "params": {}},
        ],
        "thresholds": [
            {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.01},
            {"metric": "loss.perplexity", "op": "<=", "value": 1000},
        ],
    }
    response = memaudit.client.post("/v1/policies", headers=memaudit.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def hook(memaudit: Served, registry) -> Iterator[None]:  # type: ignore[no-untyped-def]
    created = registry.create_webhook(
        name="memaudit-results",
        url=f"{memaudit.base_url}/v1/hooks/mlflow",
        events=[WebhookEvent("model_version", "created"), WebhookEvent("model_version_tag", "set")],
        secret=HOOK_SECRET,
    )
    assert registry.test_webhook(created.webhook_id).success
    yield
    registry.delete_webhook(created.webhook_id)


def _audits_of(memaudit: Served, uri: str) -> list[dict]:
    response = memaudit.client.get("/v1/audits", headers=memaudit.headers, params={"model": uri})
    return response.json()["data"]


def _register_without_run(registry, tiny_lm: DemoArtifacts, name: str):  # type: ignore[no-untyped-def]
    """A version whose registering run is deleted right away: long before its audit ends."""
    version = register(tiny_lm.model_dir, name)
    registered = registry.get_model_version(name, version)
    registry.delete_run(registered.run_id)
    return registered


def _history(registry, run_id: str, key: str) -> list[float]:  # type: ignore[no-untyped-def]
    return [m.value for m in registry.get_metric_history(run_id, key)]


def test_the_registering_run_gets_the_numbers_and_the_masked_report(
    memaudit: Served, registry, policy: dict, hook: None, tiny_lm: DemoArtifacts, tmp_path
) -> None:
    version = register(tiny_lm.model_dir, "results-bot")
    uri = f"mlflow:models:/results-bot/{version}"
    final = finished(memaudit, uri)
    assert final["status"] == "succeeded", final
    tags = written_back(registry, "results-bot", version)
    registered = registry.get_model_version("results-bot", version)
    # The version was logged by a run: that run is where its audit results go.
    assert tags["memaudit.run_id"] == registered.run_id
    run = registry.get_run(registered.run_id)
    metrics = run.data.metrics
    assert metrics["memaudit.greedy_extraction_rate"] == pytest.approx(
        float(tags["memaudit.greedy_extraction_rate"]), rel=1e-5
    )
    assert metrics["memaudit.mean_loss"] == pytest.approx(float(tags["memaudit.mean_loss"]), 1e-5)
    for result in final["verdict"]["results"]:
        assert metrics[f"memaudit.verdict.{result['metric']}"] == pytest.approx(result["value"])
    assert run.data.tags["memaudit.report_url"] == tags["memaudit.report_url"]
    assert run.data.tags["memaudit.verdict"] == "fail"
    # MLflow 3: the metrics are linked to the version's logged model too.
    assert registered.source.startswith("models:/m-")
    logged = registry.get_logged_model(registered.source.removeprefix("models:/"))
    assert "memaudit.greedy_extraction_rate" in {m.key for m in logged.metrics or []}

    path = registry.download_artifacts(
        run.info.run_id, f"memaudit/{final['id']}/report.json", str(tmp_path)
    )
    report = json.loads(Path(path).read_text())
    assert report["audit_id"] == final["id"] and report["verdict"]["status"] == "fail"
    assert report["summary"]["loss"]["mean_sample_loss"] == pytest.approx(
        final["summary"]["loss"]["mean_sample_loss"]
    )
    texts = [r["text"] for r in map(json.loads, tiny_lm.dataset_path.read_text().splitlines())]
    attached = json.dumps(report)
    assert not [text for text in texts if text in attached]  # no record whole, as trained on


def test_a_version_whose_run_is_gone_gets_a_run_of_its_own(
    memaudit: Served, registry, policy: dict, hook: None, tiny_lm: DemoArtifacts
) -> None:
    created = _register_without_run(registry, tiny_lm, "results-plain")
    uri = f"mlflow:models:/results-plain/{created.version}"
    final = finished(memaudit, uri)
    assert final["status"] == "succeeded", final
    tags = written_back(registry, "results-plain", created.version)
    assert tags["memaudit.run_id"] != created.run_id
    run = registry.get_run(tags["memaudit.run_id"])
    assert run.info.experiment_id == registry.get_experiment_by_name(EXPERIMENT).experiment_id
    assert run.data.tags["memaudit.model_name"] == "results-plain"
    assert run.data.tags["memaudit.model_version"] == created.version
    assert final["id"] in run.data.tags["mlflow.note.content"]
    assert "memaudit.greedy_extraction_rate" in run.data.metrics


def test_a_reaudit_tag_starts_one_audit_per_new_value(
    memaudit: Served, registry, policy: dict, hook: None, tiny_lm: DemoArtifacts
) -> None:
    created = _register_without_run(registry, tiny_lm, "results-again")
    version = created.version
    uri = f"mlflow:models:/results-again/{version}"
    first = finished(memaudit, uri)
    run_id = written_back(registry, "results-again", version)["memaudit.run_id"]

    registry.set_model_version_tag("results-again", version, "memaudit.reaudit", "retrained")
    again = wait_for(
        lambda: [a for a in _audits_of(memaudit, uri) if a["id"] != first["id"]],
        60,
        "the re-audit the tag asked for",
    )
    assert len(again) == 1 and again[0]["labels"]["reaudit"] == "retrained"
    assert again[0]["policy_id"] == policy["id"]
    done = finished(memaudit, uri)  # the newest: the re-audit
    assert done["id"] == again[0]["id"] and done["status"] == "succeeded", done
    # The re-audit's numbers are a second point on the same run's metrics.
    wait_for(
        lambda: len(_history(registry, run_id, "memaudit.mean_loss")) == 2,
        60,
        "the re-audit's metrics on the version's run",
    )
    tags = wait_for(
        lambda: (
            (t := version_tags_of(registry, "results-again", version))["memaudit.audit_id"]
            == done["id"]
            and t
        ),
        60,
        "the re-audit's tags on the version",
    )
    assert tags["memaudit.run_id"] == run_id

    # The same value again, and a reconciliation round: no further audit.
    registry.set_model_version_tag("results-again", version, "memaudit.reaudit", "retrained")
    handled = wait_for(lambda: _reaudit_deliveries(memaudit, 2), 60, "both tag deliveries")
    assert [d.detail["audits"] for d in handled] == [[done["id"]], []]
    assert {d.detail["reaudit"] for d in handled} == {"retrained"}
    assert {d.detail["model_uri"] for d in handled} == {uri}
    time.sleep(12)  # longer than the reconciliation interval
    assert [a["id"] for a in _audits_of(memaudit, uri)] == [done["id"], first["id"]]
    assert audit_of(memaudit, uri)["id"] == done["id"]


def _reaudit_deliveries(memaudit: Served, count: int) -> list[WebhookDelivery] | None:
    """The handled deliveries of `memaudit.reaudit` tags, oldest first, once there are `count`."""
    db = Database(f"sqlite:///{memaudit.data_root.parent / 'data' / 'memaudit.db'}")
    try:
        with db.session() as session:
            rows = session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.event == "model_version_tag.set")
                .order_by(WebhookDelivery.received_at)
            ).all()
            found = [
                d for d in rows if (d.payload.get("data") or {}).get("key") == "memaudit.reaudit"
            ]
    finally:
        db.dispose()
    done = [d for d in found if d.status != "received"]
    return done if len(done) >= count and len(done) == len(found) else None


def test_the_audits_list_links_each_verdict_to_the_version_in_mlflows_ui(
    memaudit: Served, mlflow_server: MlflowServer, policy: dict, browser, tiny_lm: DemoArtifacts
) -> None:
    """The link the dashboard draws opens the version's page in the real MLflow UI."""
    audit = audit_of(memaudit, "mlflow:models:/results-bot/1") or finished(
        memaudit, f"mlflow:models:/results-bot/{register(tiny_lm.model_dir, 'results-bot')}"
    )
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{memaudit.base_url}/login")
    page.fill("input[name=key]", memaudit.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/audits")
    row = page.locator(f'tr[data-audit="{audit["id"]}"]')
    verdict = row.locator("[data-verdict] a")
    assert verdict.inner_text() == audit["verdict"]["status"]
    version = audit["model_version"]
    assert verdict.get_attribute("href") == (
        f"{mlflow_server.url}/#/models/results-bot/versions/{version}"
    )
    assert row.locator("[data-promotion] a").inner_text() == "blocked"
    assert not watched.errors, watched.errors

    mlflow_page = watched.context.new_page()
    mlflow_page.goto(verdict.get_attribute("href"))
    mlflow_page.get_by_text(f"Version {version}").first.wait_for(timeout=60_000)
    assert "results-bot" in mlflow_page.content()
    watched.close()
