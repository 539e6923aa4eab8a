"""How a corpus index is written and read back: built whole in a temporary sibling folder and
renamed into place, so a reader never sees half an index, and opened only when its manifest
names the format the reader expects."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def publish_directory(build: Callable[[Path], dict], directory: Path) -> Path:
    """Run `build` in a temporary sibling folder, write the manifest it returns, and rename the
    folder into place once everything in it is on disk."""
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists: an index is built once per corpus")
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.building-", dir=directory.parent))
    try:
        manifest = build(scratch)
        (scratch / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _fsync_directory(scratch)
        try:
            os.rename(scratch, directory)
        except OSError as error:
            raise FileExistsError(f"{directory} appeared while this index was built") from error
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    _fsync_directory(directory.parent)
    return directory


def read_manifest(directory: Path, expected_format: str) -> dict:
    """The manifest of an index folder, refused unless it is of the expected format."""
    manifest = json.loads((Path(directory) / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != expected_format:
        raise ValueError(f"{directory} is not a {expected_format} index")
    return manifest


def _fsync_directory(directory: Path) -> None:
    """Every file of the folder, then the folder itself, flushed to disk."""
    for path in directory.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
