"""Models registered in MLflow: `mlflow:models:/<name>/<version>`.

The version's artifacts are downloaded through the MLflow client into a cache keyed by name and
version (a registered version never changes), then loaded like any `save_pretrained` directory,
with the same refusals: safetensors only, no custom code. Two layouts are understood: the
`transformers` flavour (`model/` and `components/tokenizer/`) and a plain `save_pretrained`
directory logged as artifacts.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

from core.confinement import Pinned
from core.inspection.errors import ModelError

PREFIX = "mlflow:models:/"
COMPLETE_MARKER = ".memaudit-complete"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def parse_uri(uri: str) -> tuple[str, str]:
    """(registered model name, version) of an `mlflow:models:/<name>/<version>` URI."""
    if not uri.startswith(PREFIX):
        raise ModelError(f"not an MLflow model URI: {uri!r}")
    name, _, version = uri[len(PREFIX) :].rpartition("/")
    if not name or not version.isdigit():
        raise ModelError(
            f"{uri!r}: use mlflow:models:/<name>/<version> with a version number "
            "(an alias can move, an audit must name what it audited)"
        )
    return name, version


def version_ui_url(uri: str, ui_base: str) -> str | None:
    """The MLflow UI's page of the version a URI names (its routes live after `#`); None for
    any other URI, or when no UI address is known."""
    if not ui_base or not uri.startswith(PREFIX):
        return None
    try:
        name, version = parse_uri(uri)
    except ModelError:
        return None
    return f"{ui_base.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"


def client(tracking_uri: str):  # type: ignore[no-untyped-def]
    if not tracking_uri:
        raise ModelError("MLflow is not configured: set MEMAUDIT_MLFLOW_TRACKING_URI")
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ModelError(
            "MLflow model URIs need the `mlflow` extra (pip install memaudit[mlflow])"
        ) from None
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def check_version(uri: str, tracking_uri: str) -> None:
    """Raise ModelError unless the registry has this version: cheap enough for submit."""
    name, version = parse_uri(uri)
    registry = client(tracking_uri)
    try:
        registry.get_model_version(name, version)
    except Exception as exc:  # the client raises MlflowException or a connection error
        raise ModelError(f"MLflow has no model version {name}/{version}: {exc}") from None


def name_filter(name: str) -> str:
    """MLflow's search filter on one registered model's name; a name may hold `'` (MLflow allows
    it), and then the value goes in double quotes."""
    quote = '"' if "'" in name else "'"
    return f"name={quote}{name}{quote}"


MAX_CHAIN = 16  # earlier versions a retention chain reads, the most recent ones


def earlier_versions(uri: str, tracking_uri: str) -> list[str]:
    """The registered versions of this model before this one, oldest first: a retention chain."""
    name, version = parse_uri(uri)
    registry = client(tracking_uri)
    try:
        found = registry.search_model_versions(name_filter(name))
    except Exception as exc:  # MlflowException or a connection error
        raise ModelError(f"could not list the versions of {name} in MLflow: {exc}") from None
    numbers = sorted(int(v.version) for v in found if int(v.version) < int(version))
    return [f"{PREFIX}{name}/{n}" for n in numbers[-MAX_CHAIN:]]


def cache_dir_for(uri: str, cache_root: Path) -> Path:
    """One folder per registered name and version: readable, and told apart by a hash of the
    exact name (`fraud model` and `fraud_model` must never share downloaded weights)."""
    name, version = parse_uri(uri)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100]
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return cache_root / "mlflow" / f"{safe}-{digest}" / version


def fetch(uri: str, tracking_uri: str, cache_root: Path) -> Path:
    """The version's artifacts on local disk, downloaded once; concurrent fetches are safe."""
    target = cache_dir_for(uri, cache_root)
    if (target / COMPLETE_MARKER).exists():
        return target
    name, version = parse_uri(uri)
    client(tracking_uri)  # fails early, and clearly, when MLflow is not usable
    import mlflow
    from mlflow.artifacts import download_artifacts

    # `models:/` URIs resolve through the process-wide registry URI, whatever tracking_uri says;
    # a worker talks to one MLflow, so setting both here is safe.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        download_artifacts(
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(staging),
            tracking_uri=tracking_uri,
        )
        (staging / COMPLETE_MARKER).touch()
        try:
            os.rename(staging, target)
        except OSError:  # another worker finished first: use theirs
            if not (target / COMPLETE_MARKER).exists():
                raise
    except Exception as exc:
        raise ModelError(f"could not download {uri} from MLflow: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def hf_directories(root: Path, tree: Pinned) -> tuple[Path, Path]:
    """(weights directory, tokenizer directory) inside downloaded artifacts (`tree`: the
    artifacts, pinned beneath `root`)."""

    def folders(name: str) -> set[str]:
        return {posixpath.dirname(f) for f in tree.files if posixpath.basename(f) == name}

    def depth(folder: str) -> tuple[int, str]:
        return (folder.count("/") + bool(folder), folder)

    candidates = sorted(
        (
            d
            for d in folders("config.json")
            if any(n.endswith(".safetensors") for n in tree.names(d))
        ),
        key=depth,
    )
    if not candidates:
        raise ModelError(
            "no save_pretrained directory (config.json with .safetensors weights) in the "
            "model version's artifacts"
        )
    model_dir = candidates[0]
    if any(name in TOKENIZER_FILES for name in tree.names(model_dir)):
        return root / model_dir, root / model_dir
    tokenizers = sorted(set().union(*(folders(name) for name in TOKENIZER_FILES)), key=depth)
    if not tokenizers:
        raise ModelError("no tokenizer files in the model version's artifacts")
    return root / model_dir, root / tokenizers[0]
