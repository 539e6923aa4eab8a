"""The one door to Weights & Biases: read a registry version's files, write its metadata.

`WandbClient` (core/inspection/wandb_models.py) is what memaudit needs of W&B, small enough
that a test implements it over a folder (tests/wandb_fake.py). `PackageClient` wraps the
`wandb` package (the optional extra `memaudit[wandb]`, imported only when a W&B model is
audited); it is written against the package's public API (`wandb.Api().artifact`, an
artifact's `version`, `get_entry(name).download(root)`, `manifest.entries` and each entry's
`ref`, `metadata` and `save()`) and has NOT been run against W&B's servers from this
repository's tests. The package makes its own HTTP requests to MEMAUDIT_WANDB_BASE_URL, as the
MLflow and Hub clients do, with MEMAUDIT_WANDB_API_KEY, which is never logged.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.config import Settings
from core.inspection.errors import ModelError
from core.inspection.wandb_models import ArtifactVersion, WandbClient


class PackageClient:
    """`WandbClient` over the `wandb` package's public API (not run against W&B here)."""

    def __init__(self, settings: Settings) -> None:
        try:
            import wandb
        except ImportError:
            raise ModelError(
                "W&B model URIs need the `wandb` extra (pip install memaudit[wandb])"
            ) from None
        overrides = {"base_url": settings.wandb_base_url} if settings.wandb_base_url else {}
        self._api = wandb.Api(api_key=settings.wandb_api_key or None, overrides=overrides)

    def _artifact(self, name: str) -> Any:
        return self._api.artifact(name)

    def resolve(self, path: str, ref: str) -> str:
        return str(self._artifact(f"{path}:{ref}").version)

    def files(self, version: ArtifactVersion) -> dict[str, str | None]:
        # `ref` is set on an entry made by `add_reference`: the SDK downloads it through its
        # storage handlers (a local path, S3, GCS, any URL), not from W&B.
        entries = self._artifact(version.name).manifest.entries
        return {str(name): entry.ref for name, entry in entries.items()}

    def download(self, version: ArtifactVersion, names: Sequence[str], target: Path) -> None:
        artifact = self._artifact(version.name)
        for name in names:  # one entry at a time: only the files asked for are fetched
            entry = artifact.get_entry(name)
            if entry.ref is not None:  # never read a reference, whoever asks
                raise ModelError(f"{version.name}: {name} is a reference, not stored in W&B")
            entry.download(root=str(target))

    def metadata(self, version: ArtifactVersion) -> dict[str, Any]:
        return dict(self._artifact(version.name).metadata or {})

    def update_metadata(
        self, version: ArtifactVersion, values: Mapping[str, str], remove: Sequence[str]
    ) -> None:
        artifact = self._artifact(version.name)
        metadata = dict(artifact.metadata or {})
        for key in remove:
            metadata.pop(key, None)
        metadata.update(values)
        artifact.metadata = metadata
        artifact.save()


def wandb_client(settings: Settings) -> WandbClient:
    """The configured client: `MEMAUDIT_WANDB_CLIENT` (`module:callable`, given the Settings),
    else the `wandb` package's."""
    if not settings.wandb_client:
        return PackageClient(settings)
    module, _, attribute = settings.wandb_client.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError):
        raise ModelError(
            f"MEMAUDIT_WANDB_CLIENT={settings.wandb_client!r} names no importable callable"
        ) from None
    return factory(settings)
