"""The Hub integration against a LOCAL FAKE of the Hub's HTTP API (tests/hub_fake.py; the real
Hub cannot be reached here): a revision is downloaded with its safe files only, and a finished
policy audit's verdict becomes one discussion and one tag on the audited commit, however often
the write-back runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.migrate import upgrade
from core.config import Settings
from core.db import Database
from core.models import Audit
from tests.conftest import make_settings, stored_policy_audit
from tests.hub_fake import FakeHub
from worker import hub_registry
from worker.demo import DemoArtifacts
from worker.loaders.materialize import materialize
from worker.model_registry import _huggingface_action

TOKEN = "hf_fake_write_token_0123456789"
REFUSED = {
    "pytorch_model.bin": b"\x80\x04pickled",  # a pickle: runs code when loaded
    "modeling_custom.py": b"import os\nos.system('id')\n",  # custom code: never trusted
    "tf_model.h5": b"\x89HDF",
}


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's Hub is online (the suite runs with HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(TOKEN) as fake:
        yield fake


def _settings(tmp_path: Path, hub: FakeHub, **overrides: object) -> Settings:
    values = {
        "hf_endpoint": hub.url,
        "hf_token": TOKEN,
        "hf_cache_dir": str(tmp_path / "hub-cache"),
        "public_url": "https://audit.example",
        **overrides,
    }
    return make_settings(tmp_path / "state", tmp_path / "models", tmp_path / "data", **values)


def _audit(db: Database, uri: str, *, policy: bool = True, status: str = "succeeded") -> str:
    return stored_policy_audit(db, uri, "huggingface", policy=policy, status=status)


@pytest.fixture
def db(tmp_path: Path, hub: FakeHub) -> Iterator[Database]:
    settings = _settings(tmp_path, hub)
    settings.ensure_dirs()
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    yield database
    database.dispose()


def test_a_revision_is_downloaded_from_the_endpoint_with_its_safe_files_only(
    tmp_path, hub: FakeHub, online, tiny_lm: DemoArtifacts
) -> None:
    commit = hub.push("acme/support-lm", tiny_lm.model_dir, REFUSED)
    settings = _settings(tmp_path, hub)
    spec = materialize(
        f"hf:acme/support-lm@{commit}",
        [],
        mlflow_tracking_uri="",
        cache_root=settings.model_cache_dir,
        hf_cache_dir=settings.hf_cache_dir,
        hf_endpoint=settings.hf_endpoint,
        hf_token=settings.hf_token,
    )
    assert spec.path.name == commit and (spec.path / "model.safetensors").is_file()
    fetched = {path.rsplit("/", 1)[1] for path in hub.fetched}
    assert "model.safetensors" in fetched and "config.json" in fetched
    assert not fetched & set(REFUSED), hub.fetched
    assert not any((spec.path / name).exists() for name in REFUSED)


def test_an_unknown_revision_is_a_clear_model_error(tmp_path, hub: FakeHub, online) -> None:
    from core.inspection.errors import ModelError
    from core.inspection.hf_models import snapshot

    with pytest.raises(ModelError, match="not available on the Hub"):
        snapshot(
            f"hf:acme/missing@{'a' * 40}",
            download=True,
            cache_dir=str(tmp_path),
            endpoint=hub.url,
        )


def test_the_verdict_is_written_back_once_as_a_discussion_and_a_tag(
    tmp_path, hub: FakeHub, db: Database, online, tiny_lm: DemoArtifacts, caplog
) -> None:
    commit = hub.push("acme/support-lm", tiny_lm.model_dir)
    audit_id = _audit(db, f"hf:acme/support-lm@{commit}")
    settings = _settings(tmp_path, hub)
    with caplog.at_level(logging.DEBUG):
        first = hub_registry.write_back(db, settings, audit_id)
        again = hub_registry.write_back(db, settings, audit_id)  # a retried task
    assert first == again
    assert first["memaudit.verdict"] == "fail" and first["hub.tag"].startswith("memaudit-")
    repo = hub.repos["acme/support-lm"]
    assert len(repo.discussions) == 1
    discussion = repo.discussions[0]
    assert discussion["title"] == f"memaudit: fail for {commit[:12]} (audit {audit_id})"
    body = discussion["description"]
    assert "promotion: **blocked**" in body
    assert f"https://audit.example/audits/{audit_id}" in body
    assert "| `memaudit.greedy_extraction_rate` | 0.75 |" in body
    assert first["hub.discussion"].endswith("/acme/support-lm/discussions/1")
    assert repo.tags == {
        f"memaudit-blocked-{audit_id}": {
            "commit": commit,
            "message": f"memaudit verdict fail: https://audit.example/audits/{audit_id}",
        }
    }
    # A gate reads the tags on the commit through the library's own call.
    from huggingface_hub import HfApi

    on_commit = [
        ref.name
        for ref in HfApi(endpoint=hub.url).list_repo_refs("acme/support-lm").tags
        if ref.target_commit == commit
    ]
    assert on_commit == [f"memaudit-blocked-{audit_id}"]
    # The write token is a secret: sent as the bearer, never returned or logged.
    assert hub.refused_writes == 0
    assert TOKEN not in repr(first) and TOKEN not in caplog.text
    assert TOKEN not in repr(settings)


def test_nothing_is_written_without_a_token_or_for_an_audit_no_policy_started(
    tmp_path, hub: FakeHub, db: Database, online, tiny_lm: DemoArtifacts
) -> None:
    commit = hub.push("acme/support-lm", tiny_lm.model_dir)
    uri = f"hf:acme/support-lm@{commit}"
    assert hub_registry.write_back(db, _settings(tmp_path, hub, hf_token=""), _audit(db, uri)) == {}
    by_hand = _audit(db, uri, policy=False)
    assert hub_registry.write_back(db, _settings(tmp_path, hub), by_hand) == {}
    running = _audit(db, uri, status="running")
    assert hub_registry.write_back(db, _settings(tmp_path, hub), running) == {}
    mlflow = _audit(db, "mlflow:models:/support-bot/1")
    assert hub_registry.write_back(db, _settings(tmp_path, hub), mlflow) == {}
    assert (
        hub.repos["acme/support-lm"].discussions == [] and hub.repos["acme/support-lm"].tags == {}
    )


def test_a_wrong_token_is_refused_by_the_hub_and_the_task_retries(
    tmp_path, hub: FakeHub, db: Database, online, tiny_lm: DemoArtifacts
) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    commit = hub.push("acme/support-lm", tiny_lm.model_dir)
    audit_id = _audit(db, f"hf:acme/support-lm@{commit}")
    with pytest.raises(HfHubHTTPError) as refused:
        hub_registry.write_back(db, _settings(tmp_path, hub, hf_token="hf_wrong"), audit_id)
    assert "hf_wrong" not in str(refused.value)
    assert hub.refused_writes == 1


def test_the_announcement_of_our_own_tag_starts_nothing(hub: FakeHub, tiny_lm) -> None:
    hub.push("acme/support-lm", tiny_lm.model_dir)
    own = hub.payload("acme/support-lm", [{"ref": "refs/tags/memaudit-blocked-a1", "newSha": "x"}])
    assert _huggingface_action(own) == ("ignore", "our own memaudit-* tag")
    commit = hub.payload("acme/support-lm", [{"ref": "refs/heads/main", "newSha": "x"}])
    assert _huggingface_action(commit)[0] == "start"
    other_tag = hub.payload("acme/support-lm", [{"ref": "refs/tags/v1.0", "newSha": "x"}])
    assert _huggingface_action(other_tag)[0] == "start"


def test_a_placeholder_hub_token_is_refused_in_production(tmp_path) -> None:
    from tests.core.test_config import PRODUCTION

    with pytest.raises(ValueError, match="MEMAUDIT_HF_TOKEN is a well-known default"):
        Settings(data_dir=tmp_path, **PRODUCTION, hf_token="huggingface")
    # Unset, huggingface_hub's own endpoint (its HF_ENDPOINT, a mirror a site may already use).
    assert Settings(data_dir=tmp_path).hf_endpoint == ""


def test_each_policy_keeps_its_own_verdict_and_the_aggregate_waits_for_all(
    tmp_path, hub: FakeHub, db: Database, online, tiny_lm: DemoArtifacts
) -> None:
    """Two policies audit one commit: each discussion and tag carry the policy's own verdict
    (`memaudit.<policy>.verdict`); the aggregate is `pending` until both have ended, then the
    worst of the two."""
    commit = hub.push("acme/support-lm", tiny_lm.model_dir)
    uri = f"hf:acme/support-lm@{commit}"
    failing, passing = _audit(db, uri, status="running"), _audit(db, uri)
    with db.session() as session:
        audit = session.get(Audit, passing)
        audit.verdict = {"status": "pass", "results": [], "promotion": "allowed"}
        name = audit.labels["policy"]
    settings = _settings(tmp_path, hub)
    early = hub_registry.write_back(db, settings, passing)
    assert (early[f"memaudit.{name}.verdict"], early[f"memaudit.{name}.promotion"]) == (
        "pass",
        "allowed",
    )
    assert (early["memaudit.verdict"], early["memaudit.promotion"]) == ("pending", "blocked")
    assert early["hub.tag"] == f"memaudit-allowed-{passing}"
    repo = hub.repos["acme/support-lm"]
    assert repo.discussions[0]["title"] == f"memaudit: pass for {commit[:12]} (audit {passing})"
    assert "| `memaudit.verdict` | pending |" in repo.discussions[0]["description"]
    with db.session() as session:
        session.get(Audit, failing).status = "succeeded"
    late = hub_registry.write_back(db, settings, failing)
    assert (late["memaudit.verdict"], late["memaudit.promotion"]) == ("fail", "blocked")
    assert late["hub.tag"] == f"memaudit-blocked-{failing}"
