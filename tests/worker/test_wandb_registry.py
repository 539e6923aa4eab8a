"""The W&B integration against a LOCAL FAKE of W&B (tests/wandb_fake.py, memaudit's WandbClient
over a folder; W&B's servers cannot be reached here): a version is fetched with its safe files
only and loads through the usual local-model path, an automation event becomes the version
to audit, and a finished policy audit's verdict becomes the version's metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.migrate import upgrade
from core.config import Settings
from core.db import Database
from core.inspection import wandb_models
from core.inspection.errors import ModelError
from tests.conftest import make_settings, stored_policy_audit
from tests.wandb_fake import FakeWandb
from worker import wandb_events, wandb_registry
from worker.demo import DemoArtifacts
from worker.loaders.materialize import materialize

PATH = "acme/wandb-registry-model/support-lm"
REFUSED = {
    "pytorch_model.bin": b"\x80\x04pickled",  # a pickle: runs code when loaded
    "modeling_custom.py": b"import os\nos.system('id')\n",  # custom code: never trusted
    ".hidden/config.json": b"{}",
}


@pytest.fixture
def fake(tmp_path: Path) -> FakeWandb:
    return FakeWandb(tmp_path / "wandb")


def _settings(tmp_path: Path, fake: FakeWandb, **overrides: object) -> Settings:
    values = {
        "wandb_client": "tests.wandb_fake:client",
        "wandb_base_url": str(fake.root),
        "public_url": "https://audit.example",
        **overrides,
    }
    return make_settings(tmp_path / "state", tmp_path / "models", tmp_path / "data", **values)


@pytest.mark.parametrize(
    "uri",
    [
        "wandb:acme/proj/lm",  # no version
        "wandb:acme/proj/lm:production",  # an alias moves
        "wandb:acme/proj/lm:v1/../../x",
        "wandb:acme/../lm:v1",
        "wandb:acme/proj:v1",
        "wandb:/etc/passwd:v1",
    ],
)
def test_a_uri_names_one_version_by_number(uri: str) -> None:
    with pytest.raises(ModelError):
        wandb_models.parse_uri(uri)


def test_a_version_is_fetched_with_its_safe_files_only_and_loads_locally(
    tmp_path, fake: FakeWandb, tiny_lm: DemoArtifacts
) -> None:
    fake.link(PATH, tiny_lm.model_dir)  # v0
    version = fake.link(PATH, tiny_lm.model_dir, REFUSED)  # v1
    settings = _settings(tmp_path, fake)
    spec = materialize(
        version.uri,
        [],
        mlflow_tracking_uri="",
        cache_root=settings.model_cache_dir,
        wandb_client=lambda: FakeWandb(fake.root),
    )
    assert spec.uri == version.uri and spec.kind == "causal_lm"
    assert spec.path.is_relative_to(settings.model_cache_dir / "wandb")
    assert spec.path.name == "v1" and (spec.path / "model.safetensors").is_file()
    fetched = {name.rsplit("/", 1)[1] for name in fake.fetched()}
    assert {"config.json", "model.safetensors"} <= fetched
    assert not fetched & {"pytorch_model.bin", "modeling_custom.py"}
    assert not any(name.endswith(".hidden/config.json") for name in fake.fetched())
    assert not (spec.path / "pytorch_model.bin").exists()
    # A version's files never change: the second fetch reads the cache.
    count = len(fake.fetched())
    materialize(
        version.uri,
        [],
        mlflow_tracking_uri="",
        cache_root=settings.model_cache_dir,
        wandb_client=lambda: FakeWandb(fake.root),
    )
    assert len(fake.fetched()) == count


def test_a_missing_version_is_a_clear_model_error(tmp_path, fake: FakeWandb) -> None:
    with pytest.raises(ModelError, match="could not download wandb:acme/p/lm:v9 from W&B"):
        wandb_models.fetch("wandb:acme/p/lm:v9", fake, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_an_event_names_the_version_to_audit(tmp_path, fake, tiny_lm) -> None:
    v0 = fake.link(PATH, tiny_lm.model_dir)
    v1 = fake.link(PATH, tiny_lm.model_dir)
    fake.add_alias(v0, "production")
    settings = _settings(tmp_path, fake, wandb_aliases="production, staging")
    link = wandb_events.action(fake.payload("LINK_ARTIFACT", v1), settings)
    assert link == ("start", PATH, v1.uri, {"wandb.event": "LINK_ARTIFACT", "wandb.author": "ada"})
    # An alias rendered in place of the number is resolved through the client.
    by_alias = fake.payload(
        "ADD_ARTIFACT_ALIAS", v0, "production", version_string=f"{PATH}:production"
    )
    started = wandb_events.action(by_alias, settings)
    assert started[:3] == ("start", PATH, v0.uri) and started[3]["wandb.alias"] == "production"
    ignored = wandb_events.action(fake.payload("ADD_ARTIFACT_ALIAS", v1, "latest"), settings)
    assert ignored[0] == "ignore" and "production, staging" in ignored[1]
    unknown = fake.payload("ADD_ARTIFACT_ALIAS", v1, "staging", version_string=f"{PATH}:staging")
    # W&B cannot resolve it (down, or not showing the alias yet): the delivery must fail, so
    # that W&B's redelivery is handled again, not be ignored for good.
    with pytest.raises(ModelError, match=f"could not resolve {PATH}:staging"):
        wandb_events.action(unknown, settings)
    fake.add_alias(v1, "staging")
    assert wandb_events.action(unknown, settings)[:3] == ("start", PATH, v1.uri)
    other = wandb_events.action({"event_type": "RUN_METRIC"}, settings)
    assert other == ("ignore", "event RUN_METRIC starts nothing")


def test_a_version_whose_safe_files_are_references_is_refused(tmp_path, fake: FakeWandb) -> None:
    """A reference entry (`add_reference`) would be read from wherever it points, here a file
    on the worker: the version is refused, naming it, and nothing is fetched."""
    folder, secret = tmp_path / "model", tmp_path / "worker-secret.json"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    secret.write_text('{"password": "hunter2"}')
    version = fake.link(PATH, folder, references={"tokenizer.json": f"file://{secret}"})
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match=r"references to storage outside W&B \(tokenizer.json\)"):
        wandb_models.fetch(version.uri, fake, cache)
    assert fake.fetched() == []
    assert not any("hunter2" in p.read_text() for p in cache.rglob("*.json"))


def test_a_reference_the_audit_would_not_read_is_passed_over(tmp_path, fake: FakeWandb) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    version = fake.link(PATH, folder, references={"train.bin": "s3://bucket/train.bin"})
    target = wandb_models.fetch(version.uri, fake, tmp_path / "cache")
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        "model.safetensors",
    ]
    assert all(not name.endswith("train.bin") for name in fake.fetched())


@pytest.fixture
def db(tmp_path: Path, fake: FakeWandb):
    settings = _settings(tmp_path, fake)
    settings.ensure_dirs()
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    yield database
    database.dispose()


def _audit(db: Database, uri: str, *, policy: bool = True, verdict: dict | None = None) -> str:
    return stored_policy_audit(db, uri, "wandb", policy=policy, verdict=verdict)


def test_the_verdict_is_written_back_as_the_versions_metadata(
    tmp_path, fake: FakeWandb, db: Database, tiny_lm: DemoArtifacts
) -> None:
    version = fake.link(PATH, tiny_lm.model_dir)
    fake.update_metadata(version, {"owner": "ml-team"}, [])
    settings = _settings(tmp_path, fake)
    earlier = _audit(
        db,
        version.uri,
        verdict={"status": "unknown", "promotion": "blocked", "reason": "too short"},
    )
    wandb_registry.write_back(db, settings, earlier)
    assert fake.metadata(version)["memaudit.verdict_reason"] == "too short"

    audit_id = _audit(db, version.uri)
    written = wandb_registry.write_back(db, settings, audit_id)
    again = wandb_registry.write_back(db, settings, audit_id)  # a retried task
    assert written == again and written["wandb.version"] == version.name
    metadata = fake.metadata(version)
    assert metadata["owner"] == "ml-team"  # what others wrote stays
    assert metadata["memaudit.verdict"] == "fail"
    assert metadata["memaudit.promotion"] == "blocked"
    assert metadata["memaudit.audit_id"] == audit_id
    assert metadata["memaudit.report_url"] == f"https://audit.example/audits/{audit_id}"
    assert metadata["memaudit.greedy_extraction_rate"] == "0.75"
    assert "memaudit.verdict_reason" not in metadata  # the earlier audit's reason is gone

    by_hand = _audit(db, version.uri, policy=False)
    assert wandb_registry.write_back(db, settings, by_hand) == {}
    assert fake.metadata(version)["memaudit.audit_id"] == audit_id
    elsewhere = _audit(db, f"path:{tiny_lm.model_dir}")
    assert wandb_registry.write_back(db, settings, elsewhere) == {}


class _SavedOverOnce(FakeWandb):
    """The fake whose first save reads the metadata, lets `race` (another worker's write-back)
    run, then saves what it read with its values: W&B's save replaces the metadata whole."""

    def __init__(self, root: Path, race) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root)
        self._race = race

    def update_metadata(self, version, values, remove) -> None:  # type: ignore[no-untyped-def]
        metadata = {k: v for k, v in self.metadata(version).items() if k not in remove}
        race, self._race = self._race, None
        if race is not None:
            race()
        metadata.update(values)
        self._save_metadata(version, metadata)


def test_a_save_racing_another_policys_verdict_ends_with_both(
    tmp_path, fake: FakeWandb, db: Database, tiny_lm: DemoArtifacts, monkeypatch
) -> None:
    """One policy's write-back read the metadata while another policy's audit still ran; that
    audit ended and its write-back saved `pass`; the first then saved its whole metadata, with
    `pending`, over it. The version must end with both verdicts as the database has them."""
    from core.models import Audit, AuditStatus
    from worker.registry_verdicts import policy_tag

    version = fake.link(PATH, tiny_lm.model_dir)
    settings = _settings(tmp_path, fake)
    first = _audit(db, version.uri)
    second = stored_policy_audit(db, version.uri, "wandb", status=AuditStatus.RUNNING)
    with db.session() as session:
        names = [session.get(Audit, a).labels["policy"] for a in (first, second)]

    def other_worker() -> None:
        with db.session() as session:
            audit = session.get(Audit, second)
            audit.status = AuditStatus.SUCCEEDED
            audit.verdict = {"status": "pass", "results": [], "promotion": "allowed"}
        wandb_registry.write_back(db, settings, second)
        assert fake.metadata(version)[policy_tag(names[1], "verdict")] == "pass"

    clients = iter([_SavedOverOnce(fake.root, other_worker)])
    monkeypatch.setattr(
        wandb_registry, "wandb_client", lambda _settings: next(clients, FakeWandb(fake.root))
    )
    wandb_registry.write_back(db, settings, first)
    metadata = fake.metadata(version)
    assert metadata[policy_tag(names[0], "verdict")] == "fail"
    assert metadata[policy_tag(names[1], "verdict")] == "pass"
    assert (metadata["memaudit.verdict"], metadata["memaudit.promotion"]) == ("fail", "blocked")
