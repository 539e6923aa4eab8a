"""The audits list and the model page show each policy verdict and promotion, linked to the
audited version's page in MLflow's UI (at the address a browser uses, not the worker's)."""

from __future__ import annotations

import re

import pytest

from bench.report_data import seed_audit
from core.config import Settings
from core.inspection.mlflow_models import version_ui_url
from core.models import Audit
from tests.flows import session_cookie

UI = "https://mlflow.example"


@pytest.fixture
def stack(make_stack):
    return make_stack(mlflow_tracking_uri="http://mlflow:5000", mlflow_ui_url=f"{UI}/")


def _row(page: str, audit_id: str) -> str:
    return re.search(rf'<tr data-audit="{audit_id}".*?</tr>', page, re.S).group(0)


def test_verdicts_link_to_the_mlflow_version_on_both_pages(stack, tiny_lm) -> None:
    policy = stack.client.post(
        "/v1/policies",
        headers=stack.headers,
        json={
            "name": "support",
            "source": "mlflow",
            "model_pattern": "support-*",
            "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
            "checks": [{"kind": "loss", "params": {}}],
        },
    ).json()
    failed = seed_audit(stack.db, 40, model_uri="mlflow:models:/support-bot/1", seed=1)
    running = seed_audit(
        stack.db, 40, model_uri="mlflow:models:/support-bot/2", status="running", seed=2
    )
    local = seed_audit(stack.db, 40, model_uri="path:/models/other", seed=3)
    plain = seed_audit(stack.db, 40, model_uri="path:/models/plain", seed=4)
    with stack.db.session() as session:
        session.get(Audit, failed).verdict = {
            "status": "fail",
            "results": [],
            "promotion": "blocked",
        }
        session.get(Audit, failed).policy_id = policy["id"]
        session.get(Audit, running).policy_id = policy["id"]
        session.get(Audit, local).verdict = {
            "status": "pass",
            "results": [],
            "promotion": "allowed",
        }
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    link = f'href="{UI}/#/models/support-bot/versions/1"'

    listed = stack.client.get("/audits").text
    assert '<th scope="col">Verdict</th>' in listed
    row = _row(listed, failed)
    assert 'data-verdict="fail"' in row and 'data-promotion="blocked"' in row
    assert row.count(link) == 2  # the verdict and the promotion, each to the version
    assert 'data-verdict="pending"' in _row(listed, running)
    local_row = _row(listed, local)  # a local model: the verdict, and no registry to link to
    assert 'data-verdict="pass"' in local_row and "data-registry-link" not in local_row
    assert 'data-verdict="none"' in _row(listed, plain)

    model = stack.client.get("/models", params={"family": "mlflow:models:/support-bot"}).text
    assert '<th scope="col">Verdict</th>' in model
    assert _row(model, failed).count(link) == 2
    assert 'data-verdict="pending"' in _row(model, running)


def test_the_ui_address_defaults_to_the_tracking_uri_and_names_are_quoted(tmp_path) -> None:
    assert Settings(data_dir=tmp_path).mlflow_ui_base == ""
    tracking = Settings(data_dir=tmp_path, mlflow_tracking_uri="http://mlflow:5000/")
    assert tracking.mlflow_ui_base == "http://mlflow:5000"
    assert (
        version_ui_url("mlflow:models:/team/support bot/12", tracking.mlflow_ui_base)
        == "http://mlflow:5000/#/models/team%2Fsupport%20bot/versions/12"
    )
    assert version_ui_url("mlflow:models:/support-bot/12", "") is None
    assert version_ui_url("hf:acme/lm@main", "http://mlflow:5000") is None
    assert version_ui_url("mlflow:models:/support-bot/latest", "http://mlflow:5000") is None


def test_the_ui_address_never_carries_the_tracking_uris_credentials(tmp_path) -> None:
    """The links are rendered for every dashboard reader: a password in the workers' tracking
    URI must not reach them (the start-up line redacts it too)."""
    tracking = Settings(data_dir=tmp_path, mlflow_tracking_uri="http://ci:s3cret-pw@mlflow:5000/")
    assert tracking.mlflow_ui_base == "http://mlflow:5000"
    url = version_ui_url("mlflow:models:/support-bot/1", tracking.mlflow_ui_base)
    assert url == "http://mlflow:5000/#/models/support-bot/versions/1"
    given = Settings(data_dir=tmp_path, mlflow_ui_url="https://u:pw@mlflow.example:8443/ml")
    assert given.mlflow_ui_base == "https://mlflow.example:8443/ml"
