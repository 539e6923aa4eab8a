"""A local FAKE of Weights & Biases, for tests: W&B's servers cannot be reached here.

`FakeWandb` implements memaudit's `WandbClient` interface (core/inspection/wandb_models.py) over
a folder, so a worker process and the test read and write the same registry:

    <root>/<entity>/<project>/<collection>/v<N>/files/...   a version's files
    <root>/<entity>/<project>/<collection>/v<N>/metadata.json
    <root>/<entity>/<project>/<collection>/v<N>/references.json  {"name": "file:///..."}
    <root>/<entity>/<project>/<collection>/aliases.json     {"alias": "v<N>"}
    <root>/fetched.log                                       every file a client downloaded

A service names it with MEMAUDIT_WANDB_CLIENT=tests.wandb_fake:client and the folder in
MEMAUDIT_WANDB_BASE_URL. `payload` renders the JSON template README gives a W&B automation, as
W&B renders it (`${event_type}` is LINK_ARTIFACT or ADD_ARTIFACT_ALIAS); `deliver` POSTs it
the way W&B's documentation says a webhook is called: the access token as
`Authorization: Bearer`, and X-Wandb-Signature computed by W&B's own troubleshooting recipe
(`openssl dgst -sha256 -hmac "$SECRET" -binary | base64`), run through openssl here so the
service's signature code is checked against an independent one. A reference entry (the SDK's
`add_reference`, an entry whose `ref` is set) is downloaded as the SDK would a `file://` one:
copied from that path, so a test sees what a client that fetched it would leak. Nothing here is
W&B's behaviour beyond these shapes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.config import Settings
from core.inspection.wandb_models import ArtifactVersion, parse_version_string


class FakeWandb:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- the registry, as a test fills it ------------------------------------------------------
    def _collection(self, path: str) -> Path:
        return self.root / path

    def _version_dir(self, version: ArtifactVersion) -> Path:
        return self._collection(version.path) / version.version

    def _aliases(self, path: str) -> dict[str, str]:
        file = self._collection(path) / "aliases.json"
        return json.loads(file.read_text()) if file.exists() else {}

    def link(
        self,
        path: str,
        folder: Path,
        extra: Mapping[str, bytes] | None = None,
        references: Mapping[str, str] | None = None,
    ) -> ArtifactVersion:
        """A new version of the collection holding `folder`'s files (and `extra`), and entries
        referencing `references`' URIs (`add_reference`), `latest`."""
        collection = self._collection(path)
        collection.mkdir(parents=True, exist_ok=True)
        number = sum(1 for d in collection.iterdir() if d.is_dir() and d.name.startswith("v"))
        entity, project, name = path.split("/")
        version = ArtifactVersion(entity, project, name, f"v{number}")
        files = self._version_dir(version) / "files"
        shutil.copytree(folder, files)
        for name, content in (extra or {}).items():
            (files / name).parent.mkdir(parents=True, exist_ok=True)
            (files / name).write_bytes(content)
        (self._version_dir(version) / "metadata.json").write_text("{}")
        (self._version_dir(version) / "references.json").write_text(json.dumps(references or {}))
        self.add_alias(version, "latest")
        return version

    def add_alias(self, version: ArtifactVersion, alias: str) -> None:
        aliases = {**self._aliases(version.path), alias: version.version}
        (self._collection(version.path) / "aliases.json").write_text(json.dumps(aliases))

    def fetched(self) -> list[str]:
        log = self.root / "fetched.log"
        return log.read_text().split() if log.exists() else []

    # -- WandbClient ---------------------------------------------------------------------------
    def resolve(self, path: str, ref: str) -> str:
        if (self._collection(path) / ref / "files").is_dir():
            return ref
        try:
            return self._aliases(path)[ref]
        except KeyError:
            raise LookupError(f"artifact {path}:{ref} not found") from None

    def _references(self, version: ArtifactVersion) -> dict[str, str]:
        file = self._version_dir(version) / "references.json"
        return json.loads(file.read_text()) if file.exists() else {}

    def files(self, version: ArtifactVersion) -> dict[str, str | None]:
        files = self._version_dir(version) / "files"
        if not files.is_dir():
            raise LookupError(f"artifact {version.name} not found")
        stored = {p.relative_to(files).as_posix(): None for p in files.rglob("*") if p.is_file()}
        return {**stored, **self._references(version)}

    def download(self, version: ArtifactVersion, names: Sequence[str], target: Path) -> None:
        files, references = self._version_dir(version) / "files", self._references(version)
        for name in names:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            source = Path(references[name].removeprefix("file://")) if name in references else None
            shutil.copyfile(source or files / name, target / name)
            with (self.root / "fetched.log").open("a") as log:
                log.write(f"{version.name}/{name}\n")

    def metadata(self, version: ArtifactVersion) -> dict[str, Any]:
        return json.loads((self._version_dir(version) / "metadata.json").read_text())

    def update_metadata(
        self, version: ArtifactVersion, values: Mapping[str, str], remove: Sequence[str]
    ) -> None:
        metadata = {k: v for k, v in self.metadata(version).items() if k not in remove}
        metadata.update(values)
        self._save_metadata(version, metadata)

    def _save_metadata(self, version: ArtifactVersion, metadata: Mapping[str, Any]) -> None:
        """Whole, as W&B saves it: a reader (a test polling, another worker) sees the old
        metadata or the new, never a file half written."""
        path = self._version_dir(version) / "metadata.json"
        staged = path.with_name(f".metadata.{os.getpid()}.{threading.get_ident()}.json")
        staged.write_text(json.dumps(metadata))
        os.replace(staged, path)

    # -- the automation's webhook --------------------------------------------------------------
    def payload(
        self,
        event: str,
        version: ArtifactVersion,
        alias: str = "",
        *,
        version_string: str | None = None,
    ) -> dict[str, str]:
        """README's template as W&B renders it; `version_string` as W&B may render it for an
        alias event (`<path>:<alias>`)."""
        rendered = version_string or version.name
        parse_version_string(rendered)
        identity = base64.b64encode(f"Artifact:{version.name}".encode()).decode()
        return {
            "event_type": event,
            "artifact_version_string": rendered,
            "artifact_version": f"wandb-artifact://_id/{identity}",
            "artifact_collection_name": version.collection,
            "entity_name": version.entity,
            "project_name": version.project,
            "alias": alias,
            "event_author": "ada",
        }


def openssl_signature(secret: str, body: bytes) -> str:
    """W&B's troubleshooting script, verbatim in substance: HMAC-SHA256 by openssl, base64."""
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(digest).decode()


def deliver(
    client: Any,
    url: str,
    payload: Mapping[str, Any],
    *,
    token: str,
    secret: str | None = None,
) -> Any:
    """POST a rendered payload as W&B calls a webhook (any httpx-like client: a TestClient)."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if secret is not None:
        headers["X-Wandb-Signature"] = openssl_signature(secret, body)
    return client.post(url, content=body, headers=headers)


def client(settings: Settings) -> FakeWandb:
    """MEMAUDIT_WANDB_CLIENT=tests.wandb_fake:client: the fake at MEMAUDIT_WANDB_BASE_URL."""
    return FakeWandb(Path(settings.wandb_base_url))
