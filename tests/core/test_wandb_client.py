"""`PackageClient` over a stand-in for the `wandb` package (not installed here, W&B's servers
unreachable): the stand-in models only what the client reads of the SDK, the manifest entries
and their `ref` (set by `add_reference`, None for a file stored in W&B)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.inspection.errors import ModelError
from core.inspection.wandb_models import parse_uri
from core.wandb_client import PackageClient

VERSION = parse_uri("wandb:acme/wandb-registry-model/lm:v3")


class Entry:
    def __init__(self, path: str, ref: str | None) -> None:
        self.path, self.ref, self.downloaded = path, ref, False

    def download(self, root: str) -> str:
        self.downloaded = True
        (Path(root) / self.path).write_text("fetched")
        return str(Path(root) / self.path)


class Artifact:
    def __init__(self, entries: dict[str, Entry]) -> None:
        self.manifest = types.SimpleNamespace(entries=entries)

    def get_entry(self, name: str) -> Entry:
        return self.manifest.entries[name]


@pytest.fixture
def entries(monkeypatch) -> dict[str, Entry]:
    entries = {
        "config.json": Entry("config.json", None),
        "model.safetensors": Entry("model.safetensors", "file:///etc/shadow"),
    }

    class Api:
        def __init__(self, **_: Any) -> None:
            pass

        def artifact(self, name: str) -> Artifact:
            assert name == VERSION.name
            return Artifact(entries)

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=Api))
    return entries


def test_files_name_each_entrys_reference(tmp_path, entries) -> None:
    client = PackageClient(Settings(data_dir=tmp_path))
    assert client.files(VERSION) == {
        "config.json": None,
        "model.safetensors": "file:///etc/shadow",
    }


def test_a_reference_entry_is_never_downloaded(tmp_path, entries) -> None:
    client = PackageClient(Settings(data_dir=tmp_path))
    client.download(VERSION, ["config.json"], tmp_path)
    assert (tmp_path / "config.json").read_text() == "fetched"
    with pytest.raises(ModelError, match=r"model\.safetensors is a reference"):
        client.download(VERSION, ["model.safetensors"], tmp_path)
    assert not entries["model.safetensors"].downloaded
