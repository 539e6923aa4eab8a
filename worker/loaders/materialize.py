"""A registry model brought onto local disk, ready to load: Hub snapshots, MLflow and W&B
versions downloaded into their caches, each confined to its own root. Worker-only: the API checks a
URI without downloading (`core/inspection/models.py`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.confinement import DEFAULT_RULES, FileRules, Located, PathRefused, Root, RootLike, pin
from core.inspection import hf_models, mlflow_models, wandb_models
from core.inspection.errors import ModelError
from core.inspection.models import ModelSpec, resolve_model
from core.inspection.wandb_models import WandbClient


def materialize(
    uri: str,
    roots: Sequence[RootLike],
    *,
    mlflow_tracking_uri: str,
    cache_root: Path,
    hf_cache_dir: str = "",
    hf_endpoint: str = "",
    hf_token: str = "",
    allow_pickle: bool = False,
    allow_torchscript: bool = False,
    rules: FileRules = DEFAULT_RULES,
    wandb_client: Callable[[], WandbClient] | None = None,
) -> ModelSpec:
    """The model on local disk, ready to load: registry models are downloaded first. Each is
    confined to its own root: the configured folders, the Hub's cache, or the version's
    downloaded artifacts. `wandb_client` makes the W&B client, only when a W&B model is asked
    for."""
    # Weight headers are checked when a model is loaded (ModelCache), not on every shard.
    options = {
        "allow_pickle": allow_pickle,
        "allow_torchscript": allow_torchscript,
        "rules": rules,
        "check_weights": False,
    }
    if uri.startswith(hf_models.PREFIX):
        hub_root = hf_models.cache_root(hf_cache_dir)
        local = hf_models.snapshot(
            uri,
            download=True,
            cache_dir=hf_cache_dir,
            rules=rules,
            endpoint=hf_endpoint,
            token=hf_token,
        )
        return replace(resolve_model(f"path:{local}", [hub_root], **options), uri=uri)
    if uri.startswith(mlflow_models.PREFIX):
        root = mlflow_models.fetch(uri, mlflow_tracking_uri, cache_root)
        return _downloaded(uri, root, rules, options)
    if uri.startswith(wandb_models.PREFIX):
        if wandb_client is None:
            raise ModelError("this worker has no W&B client to fetch W&B models with")
        root = wandb_models.fetch(uri, wandb_client(), cache_root)
        return _downloaded(uri, root, rules, options)
    return resolve_model(uri, roots, **options)


def _downloaded(uri: str, root: Path, rules: FileRules, options: dict[str, Any]) -> ModelSpec:
    """A registry version's downloaded files (MLflow's artifacts, a W&B version), confined to
    their own folder: the `save_pretrained` directory found in them, and its tokenizer."""
    try:
        with pin(str(root), [root], kind="model", want="dir", rules=rules, recursive=True) as tree:
            model_dir, tokenizer_dir = mlflow_models.hf_directories(root, tree)
    except PathRefused as exc:
        raise ModelError(str(exc)) from None
    local = resolve_model(f"path:{model_dir}", [root], **options)
    # Paths as the artifacts name them: the pinned tree mirrors those names.
    return replace(
        local,
        uri=uri,
        path=model_dir,
        tokenizer_path=tokenizer_dir,
        location=Located(Root(root), ()),
        recursive=True,
    )
