"""Which registry events start audits, and which tags a finished audit writes back."""

from __future__ import annotations

from core.config import Settings
from core.models import Audit
from worker.model_registry import _huggingface_action, _mlflow_action, version_tags


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
