"""MLflow model URIs and the two artifact layouts a registered version can have."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.confinement import pin
from core.inspection.errors import ModelError
from core.inspection.mlflow_models import cache_dir_for, hf_directories, parse_uri
from core.inspection.models import resolve_model

TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


def _split(model_dir: Path, root: Path) -> tuple[Path, Path]:
    """The `transformers` flavour: weights in model/, tokenizer in components/tokenizer/."""
    weights, tokenizer = root / "model", root / "components" / "tokenizer"
    shutil.copytree(model_dir, weights, ignore=shutil.ignore_patterns(*TOKENIZER))
    tokenizer.mkdir(parents=True)
    for name in TOKENIZER:
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, tokenizer / name)
    (root / "MLmodel").write_text("flavors: {}\n")
    return weights, tokenizer


def _directories(root: Path) -> tuple[Path, Path]:
    with pin(str(root), [root], kind="model", want="dir", recursive=True) as tree:
        return hf_directories(root, tree)


def test_uris_need_a_version_number() -> None:
    assert parse_uri("mlflow:models:/team/support-bot/12") == ("team/support-bot", "12")
    for bad in [
        "mlflow:models:/bot",
        "mlflow:models:/bot@champion",
        "path:/x",
        "mlflow:models:/bot/x",
    ]:
        with pytest.raises(ModelError):
            parse_uri(bad)
    cached = cache_dir_for("mlflow:models:/team/support bot/3", Path("/c"))
    assert cached.parent.name.startswith("team_support_bot-") and cached.name == "3"
    assert cache_dir_for("mlflow:models:/team/support_bot/3", Path("/c")) != cached


def test_the_transformers_flavour_layout(tmp_path, tiny_lm) -> None:
    weights, tokenizer = _split(tiny_lm.model_dir, tmp_path)
    assert _directories(tmp_path) == (weights, tokenizer)
    spec = resolve_model(f"path:{weights}", [tmp_path])
    assert spec.kind == "causal_lm"


def test_a_plain_save_pretrained_directory(tmp_path, tiny_lm) -> None:
    shutil.copytree(tiny_lm.model_dir, tmp_path / "artifacts" / "checkpoint")
    folder = tmp_path / "artifacts" / "checkpoint"
    assert _directories(tmp_path) == (folder, folder)


def test_pickled_or_missing_weights_are_refused(tmp_path, tiny_lm) -> None:
    shutil.copytree(tiny_lm.model_dir, tmp_path / "model")
    for weights in (tmp_path / "model").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelError, match="no save_pretrained directory"):
        _directories(tmp_path)


def test_a_retention_chain_lists_the_earlier_versions_of_a_name_holding_a_quote(
    tmp_path, tiny_lm
) -> None:
    """A real MLflow registry (local SQLite store): MLflow allows `'` in a model's name, and its
    earlier versions are listed like any other's."""
    from mlflow import MlflowClient

    from core.inspection.mlflow_models import earlier_versions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("bob's-lm", "bob"):
        registry.create_registered_model(name)
        for _ in range(2):
            registry.create_model_version(name, source=str(tiny_lm.model_dir))
    assert earlier_versions("mlflow:models:/bob's-lm/2", uri) == ["mlflow:models:/bob's-lm/1"]
    assert earlier_versions("mlflow:models:/bob/2", uri) == ["mlflow:models:/bob/1"]
