"""Models in a Weights & Biases registry: `wandb:<entity>/<project>/<collection>:v<N>`.

A URI names one artifact version by its number: an alias (`production`, `latest`) moves, an
audit must name what it audited. A registry's collections live in the project
`wandb-registry-<registry>`, so a model in the `model` registry of organisation `acme` is
`wandb:acme/wandb-registry-model/support-lm:v3`.

The version's files are brought through a `WandbClient` (below; core/wandb_client.py) into a cache
keyed by path and version (a version's files never change), only the safe ones (configs,
tokenizers, safetensors; never pickles or code), then loaded like any `save_pretrained`
directory with the same refusals. Only files stored in W&B itself are fetched: a reference
entry (`add_reference`: a `file://`, `s3://`, `gs://` or `http(s)://` URI) would be read by the
client from wherever it points, the worker's own disk or any host, so a version whose safe
files include one is refused, naming them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from core.inspection.errors import ModelError
from core.integrations import scrubbed

PREFIX = "wandb:"
COMPLETE_MARKER = ".memaudit-complete"
# What an audit may read of a version: the Hub's list, so both registries fetch alike.
SAFE_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
VERSION_URI = re.compile(rf"^({NAME})/({NAME})/({NAME}):v(\d{{1,9}})$")
# What W&B's `${artifact_version_string}` renders: `<entity>/<project>/<collection>:<version
# or alias>` (an alias event may name the alias rather than the version).
VERSION_STRING = re.compile(rf"^({NAME})/({NAME})/({NAME}):({NAME})$")
VERSION_NUMBER = re.compile(r"^v(\d{1,9})$")


@dataclass(frozen=True)
class ArtifactVersion:
    """One version of an artifact collection, as memaudit names it."""

    entity: str
    project: str
    collection: str
    version: str  # v<N>

    @property
    def path(self) -> str:
        """`<entity>/<project>/<collection>`: what grants and policy patterns match."""
        return f"{self.entity}/{self.project}/{self.collection}"

    @property
    def name(self) -> str:
        """`<path>:v<N>`: how the W&B client names the version."""
        return f"{self.path}:{self.version}"

    @property
    def uri(self) -> str:
        return PREFIX + self.name


class WandbClient(Protocol):
    """What memaudit needs of W&B: small enough for a test to implement over a folder
    (tests/wandb_fake.py); core/wandb_client.py wraps the `wandb` package."""

    def resolve(self, path: str, ref: str) -> str:
        """The version number (`v<N>`) that a version or alias of the collection names now."""

    def files(self, version: ArtifactVersion) -> dict[str, str | None]:
        """The version's files, relative to its root, each with the URI it references
        (`add_reference`), or None for a file stored in W&B itself."""

    def download(self, version: ArtifactVersion, names: Sequence[str], target: Path) -> None:
        """Write these files of the version beneath `target`, at their relative names."""

    def metadata(self, version: ArtifactVersion) -> dict[str, Any]:
        """The version's metadata."""

    def update_metadata(
        self, version: ArtifactVersion, values: Mapping[str, str], remove: Sequence[str]
    ) -> None:
        """Set these top-level metadata keys and drop those, in one save."""


def _checked(*parts: str) -> None:
    if any(".." in part for part in parts):
        raise ModelError("a W&B entity, project or collection name never holds '..'")


def parse_uri(uri: str) -> ArtifactVersion:
    """The version a `wandb:<entity>/<project>/<collection>:v<N>` URI names."""
    found = VERSION_URI.match(uri[len(PREFIX) :]) if uri.startswith(PREFIX) else None
    if found is None:
        raise ModelError(
            f"{uri!r}: use wandb:<entity>/<project>/<collection>:v<N> with a version number "
            "(an alias can move, an audit must name what it audited)"
        )
    entity, project, collection, number = found.groups()
    _checked(entity, project, collection)
    return ArtifactVersion(entity, project, collection, f"v{int(number)}")


def parse_version_string(text: str) -> tuple[str, str]:
    """(path, version or alias) of W&B's `<entity>/<project>/<collection>:<ref>`."""
    found = VERSION_STRING.match(text)
    if found is None:
        raise ModelError(f"{text[:200]!r} is not <entity>/<project>/<collection>:<version>")
    entity, project, collection, ref = found.groups()
    _checked(entity, project, collection)
    return f"{entity}/{project}/{collection}", ref


def version_of(path: str, number: str) -> ArtifactVersion:
    """The version `v<N>` of the collection at `path`; ModelError for anything else."""
    return parse_uri(f"{PREFIX}{path}:{number}")


def is_safe(name: str) -> bool:
    """A file an audit may fetch: a relative path below the version, of a safe kind."""
    parts = PurePosixPath(name).parts
    return (
        bool(parts)
        and not name.startswith("/")
        and "\\" not in name
        and not any(part in ("..", ".") or part.startswith(".") for part in parts)
        and any(fnmatchcase(parts[-1], pattern) for pattern in SAFE_FILES)
    )


def cache_dir_for(version: ArtifactVersion, cache_root: Path) -> Path:
    """One folder per collection and version: readable, and told apart by a hash of the exact
    path (names that differ only in characters cut here never share downloaded weights)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version.path)[:120]
    digest = hashlib.sha256(version.path.encode()).hexdigest()[:12]
    return cache_root / "wandb" / f"{safe}-{digest}" / version.version


def fetch(uri: str, client: WandbClient, cache_root: Path) -> Path:
    """The version's safe files on local disk, downloaded once; concurrent fetches are safe.
    The folder is only a download: it is loaded through the usual confinement and checks."""
    version = parse_uri(uri)
    target = cache_dir_for(version, cache_root)
    if (target / COMPLETE_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        names = stored_safe_names(version, client.files(version))
        if not names:
            raise ModelError(f"{version.name} holds no config, tokenizer or safetensors files")
        client.download(version, names, staging)
        (staging / COMPLETE_MARKER).touch()
        try:
            os.rename(staging, target)
        except OSError:  # another worker finished first: use theirs
            if not (target / COMPLETE_MARKER).exists():
                raise
    except ModelError:
        raise
    except Exception as exc:  # the client's errors: not found, no access, network
        # Only the message: a client's exception may carry its request, never to be logged.
        reason = f"{type(exc).__name__}: {scrubbed(str(exc))[:300]}"
        raise ModelError(f"could not download {uri} from W&B: {reason}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def safe_names(names: Sequence[str]) -> list[str]:
    """The files of a version an audit may fetch; pickles, code and odd paths are left."""
    return sorted(name for name in names if is_safe(name))


def stored_safe_names(version: ArtifactVersion, files: Mapping[str, str | None]) -> list[str]:
    """The safe files to fetch, all stored in W&B; ModelError naming the safe files that are
    references, which the client would fetch from wherever they point (a path on the worker,
    any host). Unsafe references are left like any unsafe file."""
    names = safe_names(list(files))
    referenced = [name for name in names if files[name] is not None]
    if referenced:
        shown = ", ".join(referenced[:10]) + (", ..." if len(referenced) > 10 else "")
        raise ModelError(
            f"{version.name} holds files that are references to storage outside W&B ({shown}); "
            "memaudit fetches only files stored in W&B: log them with add_file or add_dir"
        )
    return names
