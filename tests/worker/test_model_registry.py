"""Which registry events start audits, and which tags a finished audit writes back."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from core.config import Settings
from core.models import Audit, AuditPolicy, WebhookDelivery
from core.policies import policy_idempotency_key
from worker.mlflow_results import masked_report, result_metrics
from worker.model_registry import (
    RECONCILED_REASON,
    REGISTRY_PAGE_SIZE,
    _huggingface_action,
    _mlflow_action,
    reconcile,
)
from worker.registry_verdicts import HEADLINE_TAGS, version_tags


def test_mlflow_version_created_starts_and_our_own_tags_are_ignored() -> None:
    created = {
        "entity": "model_version",
        "action": "created",
        "data": {"name": "fraud-lm", "version": "4", "run_id": "r1"},
    }
    assert _mlflow_action(created) == (
        "start",
        "fraud-lm",
        "mlflow:models:/fraud-lm/4",
        {"mlflow.run_id": "r1"},
    )
    own_tag = {"entity": "model_version_tag", "action": "set", "data": {"key": "memaudit.verdict"}}
    assert _mlflow_action(own_tag) == ("ignore", "our own memaudit.* tag")
    other = {"entity": "registered_model", "action": "created", "data": {"name": "x"}}
    assert _mlflow_action(other)[0] == "ignore"
    assert _mlflow_action({"entity": "model_version", "action": "created", "data": {}})[0] == (
        "ignore"
    )


def test_hub_content_updates_of_model_repos_start() -> None:
    update = {
        "event": {"action": "update", "scope": "repo.content"},
        "repo": {"type": "model", "name": "acme/lm", "headSha": "abc"},
    }
    assert _huggingface_action(update) == ("start", "acme/lm", "hf:acme/lm@abc", {})
    dataset = {**update, "repo": {"type": "dataset", "name": "acme/d", "headSha": "abc"}}
    assert _huggingface_action(dataset)[0] == "ignore"
    discussion = {**update, "event": {"action": "create", "scope": "discussion"}}
    assert _huggingface_action(discussion)[0] == "ignore"
    assert _huggingface_action({"event": "junk"})[0] == "ignore"  # lenient: never raises


def test_version_tags_carry_the_verdict_and_the_headline_numbers(tmp_path) -> None:
    audit = Audit(
        id="a1",
        status="succeeded",
        summary={"extraction": {"all": {"greedy_rate": 0.125}}, "loss": {"mean_sample_loss": 2.5}},
        verdict={"status": "fail", "results": [], "promotion": "blocked"},
    )
    tags = version_tags(audit, Settings(data_dir=tmp_path, public_url="https://audit.example"))
    assert tags == {
        "memaudit.verdict": "fail",
        "memaudit.promotion": "blocked",
        "memaudit.status": "succeeded",
        "memaudit.audit_id": "a1",
        "memaudit.report_url": "https://audit.example/audits/a1",
        "memaudit.greedy_extraction_rate": "0.125",
        "memaudit.mean_loss": "2.5",
    }
    failed = Audit(id="a2", status="failed", summary={}, verdict=None)
    tags = version_tags(failed, Settings(data_dir=tmp_path))
    assert tags["memaudit.verdict"] == "error" and tags["memaudit.promotion"] == "blocked"
    inconclusive = Audit(
        id="a3",
        status="succeeded",
        summary={},
        verdict={"status": "inconclusive", "results": [], "promotion": "allowed"},
    )
    tags = version_tags(inconclusive, Settings(data_dir=tmp_path))
    assert tags["memaudit.verdict"] == "inconclusive" and tags["memaudit.promotion"] == "allowed"
    assert "memaudit.verdict_reason" not in tags  # only an unknown verdict has one
    reason = "unknown: 48 of 48 records shorter than prefix+suffix (100 tokens)"
    unknown = Audit(
        id="a4",
        status="succeeded",
        summary={},
        verdict={"status": "unknown", "results": [], "promotion": "blocked", "reason": reason},
    )
    tags = version_tags(unknown, Settings(data_dir=tmp_path))
    assert tags["memaudit.verdict"] == "unknown" and tags["memaudit.verdict_reason"] == reason


def test_a_reaudit_tag_starts_keyed_on_its_value_and_other_own_tags_stay_ignored() -> None:
    def tag(key: str, value: object, version: object = "4") -> dict:
        data = {"name": "fraud-lm", "version": version, "key": key, "value": value}
        return {"entity": "model_version_tag", "action": "set", "data": data}

    assert _mlflow_action(tag("memaudit.reaudit", "2026-12-05")) == (
        "start",
        "fraud-lm",
        "mlflow:models:/fraud-lm/4",
        {"reaudit": "2026-12-05"},
    )
    # Our own write-back, and any other tag a person sets, start nothing.
    assert _mlflow_action(tag("memaudit.run_id", "r9")) == ("ignore", "our own memaudit.* tag")
    assert _mlflow_action(tag("stage", "prod")) == (
        "ignore",
        "event model_version_tag.set starts nothing",
    )
    for refused in (
        tag("memaudit.reaudit", ""),
        tag("memaudit.reaudit", "  "),
        tag("memaudit.reaudit", "x", version="latest"),
        tag("memaudit.reaudit", "x" * 201),
    ):
        assert _mlflow_action(refused)[0] == "ignore", refused
    deleted = {**tag("memaudit.reaudit", "x"), "action": "deleted"}
    assert _mlflow_action(deleted) == ("ignore", "our own memaudit.* tag")


def test_a_reaudit_is_keyed_apart_from_the_first_audit_and_once_per_value() -> None:
    policy = AuditPolicy(id="p1")
    uri = "mlflow:models:/fraud-lm/4"
    first = policy_idempotency_key(policy, uri)
    keys = {policy_idempotency_key(policy, uri, value) for value in ("a", "a", "b")}
    assert len(keys) == 2 and first not in keys
    assert first == policy_idempotency_key(policy, uri)  # announcements stay one audit


def test_results_metrics_are_the_headlines_and_each_thresholds_value(tmp_path) -> None:
    audit = Audit(
        id="a1",
        team_id="t1",
        status="succeeded",
        model_uri="mlflow:models:/fraud-lm/4",
        dataset_uri="path:/data/canaries.jsonl",
        summary={
            "extraction": {
                "all": {"greedy_rate": 0.25},
                "exemplars": [{"text": "mail jane.doe@example.com for the key"}],
            },
            "loss": {"mean_sample_loss": 2.5},
        },
        verdict={
            "status": "fail",
            "promotion": "blocked",
            "results": [
                {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.25},
                {"metric": "membership.best.auc", "op": "<=", "value": None},
                {"metric": "membership.min_k++.auc", "op": "<=", "value": 0.5},
            ],
            "comparisons": [
                {
                    "metric": "extraction.greedy_extraction_rate",
                    "status": "fail",
                    "value": 0.25,
                    "baseline_value": 0.1,
                    "difference": 0.15,
                    "low": 0.08,
                    "high": 0.22,
                    "p_value": 0.0004,
                    "method": "mcnemar",
                    "n_shared": 48,
                    "newly": 8,
                    "no_longer": 1,
                    "relative": True,
                },
                {"metric": "loss.mean_loss", "status": "not_compared", "explanation": "..."},
            ],
        },
    )
    comparison = "memaudit.comparison.extraction.greedy_extraction_rate"
    assert result_metrics(audit, HEADLINE_TAGS) == {
        "memaudit.greedy_extraction_rate": 0.25,
        "memaudit.mean_loss": 2.5,
        "memaudit.verdict.extraction.greedy_extraction_rate": 0.25,
        "memaudit.verdict.membership.min_k__.auc": 0.5,  # MLflow's key alphabet
        f"{comparison}.value": 0.25,
        f"{comparison}.baseline_value": 0.1,
        f"{comparison}.difference": 0.15,
        f"{comparison}.low": 0.08,
        f"{comparison}.high": 0.22,
        f"{comparison}.p_value": 0.0004,
        f"{comparison}.n_shared": 48.0,
        f"{comparison}.newly": 8.0,
        f"{comparison}.no_longer": 1.0,
    }
    settings = Settings(data_dir=tmp_path, callback_secret="s" * 32)
    report = masked_report(audit, settings, "https://audit.example/audits/a1")
    assert "jane.doe@example.com" not in report and "for the key" in report
    parsed = json.loads(report)
    assert parsed["summary"]["loss"] == {"mean_sample_loss": 2.5}
    assert parsed["verdict"]["status"] == "fail" and parsed["audit_id"] == "a1"


@pytest.mark.slow
def test_reconciliation_pages_past_the_first_hundred_models_and_lists_its_catches(
    make_stack, tmp_path, tiny_lm
) -> None:
    """A real MLflow registry (a local SQLite store) with more registered models than one page:
    the only version a policy matches belongs to the last model, on the second page."""
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    total = REGISTRY_PAGE_SIZE + 20
    for i in range(total):
        registry.create_registered_model(f"bulk-{i:03d}")
    last = f"bulk-{total - 1:03d}"
    registry.create_model_version(last, source=str(tiny_lm.model_dir))
    first_page = registry.search_registered_models()
    assert last not in {m.name for m in first_page} and first_page.token  # it really pages

    stack = make_stack(mlflow_tracking_uri=tracking_uri)
    body = {
        "name": "the-last-one",
        "source": "mlflow",
        "model_pattern": last,
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    created = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert created.status_code == 201, created.text
    celery = stack.client.app.state.celery

    started = reconcile(stack.db, stack.settings, celery)
    assert len(started) == 1
    with stack.db.session() as session:
        audit = session.get(Audit, started[0])
        assert audit.model_uri == f"mlflow:models:/{last}/1"
        catches = list(session.scalars(select(WebhookDelivery)))
    assert [(c.event, c.status) for c in catches] == [("reconciliation", "reconciled")]
    listed = stack.client.get("/v1/deliveries", headers=stack.headers).json()["data"]
    assert listed[0]["outcome"] == "reconciled" and listed[0]["reason"] == RECONCILED_REASON
    assert listed[0]["model_uri"] == f"mlflow:models:/{last}/1"
    assert [a["id"] for a in listed[0]["audits"]] == started
    assert listed[0]["audits"][0]["report_url"].endswith(f"/audits/{started[0]}")
    # A second round finds the version audited: nothing new started, nothing new listed.
    assert reconcile(stack.db, stack.settings, celery) == []
    assert stack.client.get("/v1/deliveries", headers=stack.headers).json()["count"] == 1


def test_a_reaudit_tag_starts_nothing_while_that_version_is_still_being_audited(
    make_stack, tmp_path, tiny_lm
) -> None:
    """Whoever may set tags in MLflow may not queue audits without bound: a new value starts a
    re-audit only once the policy's earlier audit of that version has ended."""

    from core.models import AuditStatus
    from worker.model_registry import handle_delivery

    _, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    celery = stack.client.app.state.celery

    def tag_set(value: str) -> dict:
        key = f"mlflow:tag-{value}"
        data = {"name": "fraud-lm", "version": "1", "key": "memaudit.reaudit", "value": value}
        with stack.db.session() as session:
            session.add(
                WebhookDelivery(
                    id=key,
                    source="mlflow",
                    event="model_version_tag.set",
                    payload={"entity": "model_version_tag", "action": "set", "data": data},
                )
            )
        return handle_delivery(stack.db, stack.settings, celery, key)

    first = tag_set("a")
    assert len(first["audits"]) == 1
    flood = [tag_set(f"v{i}") for i in range(5)]
    assert all(outcome["audits"] == [] for outcome in flood)
    assert "still queued or running" in flood[0]["refused"][0]["error"]
    with stack.db.session() as session:
        assert session.query(Audit).count() == 1
        session.get(Audit, first["audits"][0]).status = AuditStatus.SUCCEEDED
    assert len(tag_set("after")["audits"]) == 1


class _RecordingCelery:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list]] = []

    def send_task(self, name: str, args: list, **_options: object) -> None:
        self.sent.append((name, args))


def test_reconciliation_writes_back_a_finished_verdict_the_version_never_got(
    make_stack, tmp_path, tiny_lm
) -> None:
    """MLflow down longer than the write-back's retries: the version must not stay without its
    verdict for ever; the next reconciliation round queues the write-back again, once it sees
    the version's tags lack that audit."""

    from core.db import utcnow
    from core.models import AuditStatus
    from core.task_names import WRITE_BACK_TO_REGISTRY
    from worker.model_registry import WRITE_BACK_RETRY_SPAN

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    (audit_id,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)

    celery = _RecordingCelery()
    assert reconcile(stack.db, stack.settings, celery) == [] and celery.sent == []  # running
    with stack.db.session() as session:
        audit = session.get(Audit, audit_id)
        audit.status = AuditStatus.SUCCEEDED
        audit.verdict = {"status": "pass", "results": [], "promotion": "allowed"}
        audit.finished_at = utcnow()
    reconcile(stack.db, stack.settings, celery)
    assert celery.sent == []  # just finished: its own write-back may still be retrying
    with stack.db.session() as session:
        session.get(Audit, audit_id).finished_at = utcnow() - WRITE_BACK_RETRY_SPAN
    assert reconcile(stack.db, stack.settings, celery) == []
    assert celery.sent == [(WRITE_BACK_TO_REGISTRY, [audit_id])]
    registry.set_model_version_tag("fraud-lm", "1", "memaudit.audit_id", audit_id)
    celery.sent.clear()
    reconcile(stack.db, stack.settings, celery)
    assert celery.sent == []  # written back: nothing more to do


def test_reconciliation_reads_a_model_whose_name_holds_a_quote(
    make_stack, tmp_path, tiny_lm
) -> None:
    """MLflow allows `'` in a registered model's name: its versions are still listed, and no
    one model can stop the round before the models after it."""

    _, stack = _registry_and_stack(
        make_stack, tmp_path, tiny_lm, names=("bob's-lm", "zed-lm"), pattern="*-lm"
    )
    started = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    with stack.db.session() as session:
        uris = {session.get(Audit, audit_id).model_uri for audit_id in started}
    assert uris == {"mlflow:models:/bob's-lm/1", "mlflow:models:/zed-lm/1"}


def test_only_a_policys_audit_writes_back_to_the_version(make_stack, tmp_path, tiny_lm) -> None:
    """A real MLflow registry (local SQLite store): an audit of a version submitted by hand
    leaves the version's tags alone (no submit key may replace a policy's verdict or block a
    promotion); the policy's own audit of the same version tags it."""

    from core.db import utcnow
    from core.models import AuditStatus
    from worker.model_registry import write_back

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    body = {
        "model": {"uri": "mlflow:models:/fraud-lm/1"},
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    by_hand = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert by_hand.status_code == 202, by_hand.text
    (by_policy,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    with stack.db.session() as session:
        for audit_id, verdict in ((by_hand.json()["id"], None), (by_policy, "pass")):
            audit = session.get(Audit, audit_id)
            audit.status, audit.finished_at = AuditStatus.SUCCEEDED, utcnow()
            audit.verdict = {"status": verdict, "results": [], "promotion": "allowed"}
    assert write_back(stack.db, stack.settings, by_hand.json()["id"]) == {}
    assert not registry.get_model_version("fraud-lm", "1").tags
    tags = write_back(stack.db, stack.settings, by_policy)
    assert tags["memaudit.audit_id"] == by_policy and tags["memaudit.verdict"] == "pass"
    written = registry.get_model_version("fraud-lm", "1").tags
    assert written["memaudit.audit_id"] == by_policy and written["memaudit.promotion"] == "allowed"


def _registry_and_stack(make_stack, tmp_path, tiny_lm, names=("fraud-lm",), pattern="fraud-*"):  # type: ignore[no-untyped-def]
    """A real MLflow registry (a local SQLite store) holding version 1 of each named model, and
    a stack that reads it, with a loss policy over `pattern`."""
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for name in names:
        registry.create_registered_model(name)
        registry.create_model_version(name, source=str(tiny_lm.model_dir))
    stack = make_stack(mlflow_tracking_uri=tracking_uri)
    body = {
        "name": "policy",
        "source": "mlflow",
        "model_pattern": pattern,
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    assert stack.client.post("/v1/policies", headers=stack.headers, json=body).status_code == 201
    return registry, stack


def test_a_reaudit_makes_the_versions_verdict_pending_from_its_start(
    make_stack, tmp_path, tiny_lm
) -> None:
    """A real MLflow registry (local SQLite store): the version passed; a re-audit queues its
    write-back as it starts, which turns the aggregate and the policy's verdict to `pending`
    (promotion `blocked`) until the re-audit's own verdict is written."""
    from core.db import utcnow
    from core.models import AuditStatus
    from core.policies import start_policy_audit
    from core.task_names import WRITE_BACK_TO_REGISTRY
    from worker.checks.registry import REGISTRY
    from worker.model_registry import write_back

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    (first,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    passed = {"status": "pass", "results": [], "promotion": "allowed"}
    with stack.db.session() as session:
        audit = session.get(Audit, first)
        audit.status, audit.finished_at, audit.verdict = AuditStatus.SUCCEEDED, utcnow(), passed
    write_back(stack.db, stack.settings, first)
    assert registry.get_model_version("fraud-lm", "1").tags["memaudit.promotion"] == "allowed"

    celery = _RecordingCelery()
    with stack.db.session() as session:
        policy = session.scalar(select(AuditPolicy).where(AuditPolicy.name == "policy"))
        again, created = start_policy_audit(
            session, stack.settings, celery, REGISTRY, policy, "mlflow:models:/fraud-lm/1", {}, "2"
        )
        again_id = again.id
    assert created and (WRITE_BACK_TO_REGISTRY, [again_id]) in celery.sent
    write_back(stack.db, stack.settings, again_id)
    tags = registry.get_model_version("fraud-lm", "1").tags
    assert (tags["memaudit.verdict"], tags["memaudit.promotion"]) == ("pending", "blocked")
    assert (tags["memaudit.policy.verdict"], tags["memaudit.policy.promotion"]) == (
        "pending",
        "blocked",
    )
    assert tags["memaudit.verdict_reason"] == f"waiting for policy's audit {again_id}"
    assert tags["memaudit.audit_id"] == first  # the last reached verdict's audit, still
    with stack.db.session() as session:
        audit = session.get(Audit, again_id)
        audit.status, audit.finished_at, audit.verdict = AuditStatus.SUCCEEDED, utcnow(), passed
    write_back(stack.db, stack.settings, again_id)
    tags = registry.get_model_version("fraud-lm", "1").tags
    assert (tags["memaudit.verdict"], tags["memaudit.promotion"]) == ("pass", "allowed")
    assert tags["memaudit.audit_id"] == again_id and "memaudit.verdict_reason" not in tags


def test_a_failed_baseline_audit_is_not_reused_a_fresh_one_starts(
    make_stack, tmp_path, tiny_lm
) -> None:
    """The champion's own audit failed; the baseline audit started for v2 under a key of its
    own failed too: v3's comparison starts a fresh baseline audit instead of waiting on it."""
    from core.models import AuditStatus
    from core.policies import start_policy_audit
    from worker.checks.registry import REGISTRY

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    for _ in range(2):
        registry.create_model_version("fraud-lm", source=str(tiny_lm.model_dir))
    registry.set_registered_model_alias("fraud-lm", "champion", "1")
    body = {
        "name": "gate",
        "source": "mlflow",
        "model_pattern": "fraud-*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
        "baseline": "champion",
        "thresholds": [{"metric": "loss.mean_loss", "greater_is_better": False}],
    }
    created = stack.client.post("/v1/policies", headers=stack.headers, json=body)
    assert created.status_code == 201, created.text
    celery = _RecordingCelery()

    def start(version: int) -> Audit:
        with stack.db.session() as session:
            policy = session.get(AuditPolicy, created.json()["id"])
            uri = f"mlflow:models:/fraud-lm/{version}"
            audit = start_policy_audit(session, stack.settings, celery, REGISTRY, policy, uri, {})
            return audit[0]

    def fail(audit_id: str) -> None:
        with stack.db.session() as session:
            session.get(Audit, audit_id).status = AuditStatus.FAILED

    champion = start(1)
    assert champion.baseline_audit_id == champion.id
    fail(champion.id)
    first_try = start(2).baseline_audit_id
    assert first_try not in (None, champion.id)
    fail(first_try)
    second_try = start(3).baseline_audit_id
    assert second_try not in (None, champion.id, first_try)
    with stack.db.session() as session:
        fresh, failed = session.get(Audit, second_try), session.get(Audit, first_try)
        assert fresh.status == AuditStatus.QUEUED
        assert fresh.model_uri == "mlflow:models:/fraud-lm/1"
        assert fresh.idempotency_key != failed.idempotency_key


def _passed(stack, audit_id: str) -> None:  # type: ignore[no-untyped-def]
    from core.db import utcnow
    from core.models import AuditStatus

    with stack.db.session() as session:
        audit = session.get(Audit, audit_id)
        audit.status, audit.finished_at = AuditStatus.SUCCEEDED, utcnow()
        audit.verdict = {"status": "pass", "results": [], "promotion": "allowed"}


def _passed_reaudit(stack) -> str:  # type: ignore[no-untyped-def]
    """A re-audit of fraud-lm v1 under the stack's policy, started and passed."""
    from core.policies import start_policy_audit
    from worker.checks.registry import REGISTRY

    with stack.db.session() as session:
        policy = session.scalar(select(AuditPolicy).where(AuditPolicy.name == "policy"))
        uri = "mlflow:models:/fraud-lm/1"
        again, _ = start_policy_audit(
            session, stack.settings, _RecordingCelery(), REGISTRY, policy, uri, {}, "2"
        )
        again_id = again.id
    _passed(stack, again_id)
    return again_id


def test_a_reaudit_removes_the_optional_tags_the_earlier_audit_left(
    make_stack, tmp_path, tiny_lm
) -> None:
    """A real MLflow registry (local SQLite store): an earlier `unknown` left its reason and a
    headline number; the re-audit that passes without them must not leave them behind, and
    a person's tags stay."""
    from worker.model_registry import write_back

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    for key, value in {
        "memaudit.verdict": "unknown",
        "memaudit.verdict_reason": "unknown: 48 of 48 records shorter than prefix+suffix",
        "memaudit.best_membership_auc": "0.9",
        "memaudit.policy.explanation": "an earlier sentence",
        "memaudit.reaudit": "2026-12-05",  # a person's tag: never ours to remove
        "stage": "candidate",
    }.items():
        registry.set_model_version_tag("fraud-lm", "1", key, value)
    (audit_id,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    _passed(stack, audit_id)
    write_back(stack.db, stack.settings, audit_id)
    left = registry.get_model_version("fraud-lm", "1").tags
    assert left["memaudit.verdict"] == "pass" and left["memaudit.audit_id"] == audit_id
    assert left["memaudit.reaudit"] == "2026-12-05" and left["stage"] == "candidate"
    for stale in (
        "memaudit.verdict_reason",
        "memaudit.best_membership_auc",
        "memaudit.policy.explanation",
    ):
        assert stale not in left


class _ClientRacedOnce:
    """The real MLflow client; just before the first tag it sets, `race` runs: another worker's
    whole write-back of the same version, landing between this one's read and its writes."""

    def __init__(self, client, race) -> None:  # type: ignore[no-untyped-def]
        self._client, self._race = client, race

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._client, name)

    def set_model_version_tag(self, *args: str) -> None:
        race, self._race = self._race, None
        if race is not None:
            race()
        self._client.set_model_version_tag(*args)


def test_a_write_back_that_read_before_the_verdict_and_wrote_after_leaves_the_verdict(
    make_stack, tmp_path, tiny_lm, monkeypatch
) -> None:
    """The race CI caught: a policy audit's write-back read the database while its verdict was
    pending; before it wrote, the verdict was reached and that write-back wrote `pass`; the
    first then wrote its `pending` over it. The version must end as the database says."""
    from core.inspection import mlflow_models
    from worker.model_registry import write_back

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    (audit_id,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    real = mlflow_models.client
    raced: list[dict[str, str]] = []

    def reached_meanwhile() -> None:
        _passed(stack, audit_id)
        raced.append(write_back(stack.db, stack.settings, audit_id))

    clients = iter([lambda uri: _ClientRacedOnce(real(uri), reached_meanwhile)])
    monkeypatch.setattr(mlflow_models, "client", lambda uri: next(clients, real)(uri))
    write_back(stack.db, stack.settings, audit_id)
    assert raced and raced[0]["memaudit.policy.verdict"] == "pass"  # the race did happen
    tags = registry.get_model_version("fraud-lm", "1").tags
    assert (tags["memaudit.policy.verdict"], tags["memaudit.verdict"]) == ("pass", "pass")
    assert tags["memaudit.promotion"] == "allowed" and "memaudit.verdict_reason" not in tags


def test_a_retried_write_back_of_an_older_audit_leaves_the_newer_verdict(
    make_stack, tmp_path, tiny_lm
) -> None:
    """MLflow was down when the first audit ended; its write-back, retried after a re-audit
    wrote its own verdict, must not put the older one back."""
    from worker.model_registry import write_back

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    (first,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    with stack.db.session() as session:
        audit = session.get(Audit, first)
        audit.verdict = {"status": "fail", "results": [], "promotion": "blocked"}
        audit.status = "succeeded"
    again_id = _passed_reaudit(stack)
    write_back(stack.db, stack.settings, again_id)
    write_back(stack.db, stack.settings, first)  # the retry, late
    tags = registry.get_model_version("fraud-lm", "1").tags
    assert tags["memaudit.policy.audit_id"] == tags["memaudit.audit_id"] == again_id
    assert (tags["memaudit.policy.verdict"], tags["memaudit.verdict"]) == ("pass", "pass")


def test_a_retried_write_back_logs_the_audits_results_once(
    make_stack, tmp_path, tiny_lm, monkeypatch
) -> None:
    """The task retries a write-back whose tags kept changing, or whose registry call failed
    after the run was logged: the run gets the audit's numbers and report once (a file store
    would chart each repeated point), and no second run is made."""
    from core.inspection import mlflow_models
    from worker.mlflow_results import EXPERIMENT, RUN_TAG
    from worker.model_registry import write_back

    registry, stack = _registry_and_stack(make_stack, tmp_path, tiny_lm)
    (audit_id,) = reconcile(stack.db, stack.settings, stack.client.app.state.celery)
    _passed(stack, audit_id)
    batches: list[str] = []
    real = mlflow_models.client

    def counting(uri: str):  # type: ignore[no-untyped-def]
        client = real(uri)
        log_batch = client.log_batch
        client.log_batch = lambda run_id, **kw: (batches.append(run_id), log_batch(run_id, **kw))
        return client

    monkeypatch.setattr(mlflow_models, "client", counting)
    first = write_back(stack.db, stack.settings, audit_id)
    again = write_back(stack.db, stack.settings, audit_id)
    assert first[RUN_TAG] == again[RUN_TAG] and batches == [first[RUN_TAG]]
    experiment = registry.get_experiment_by_name(EXPERIMENT).experiment_id
    assert len(registry.search_runs([experiment])) == 1
    # Another audit of the version logs to the same run; the first one's retry still finds
    # its own results there.
    other_id = _passed_reaudit(stack)
    write_back(stack.db, stack.settings, other_id)
    write_back(stack.db, stack.settings, audit_id)
    assert batches == [first[RUN_TAG], first[RUN_TAG]]
