"""Corpus-wide artefacts (indexes, counts) built once per corpus per host, opened by every shard.

A dataset kind's per-record answer depends on the whole corpus (how often a text occurs in
all of it), while a shard sees only its slice. So the first shard on a host that needs an
artefact builds it from every record, under a file lock, into a temporary directory that is
renamed into place when complete; every other shard (and every later audit of the same bytes)
opens the finished directory. A directory under its final name is always complete: a build
that fails leaves nothing behind but its error.

Layout: `<data_dir>/indexes/<dataset sha256>/<name>-<params_key>/`, with `BUILT.json` saying
what was built, from what, and how long it took.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.config import Settings

INDEXES = "indexes"
MANIFEST = "BUILT.json"
SHA256 = re.compile(r"[0-9a-f]{64}")
# Names and params keys become path parts: nothing that could climb out or hide.
PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=+-]{0,119}")


class ArtefactBuildError(ValueError):
    """A corpus artefact could not be built: the shard (and its audit) fails with this, as
    with any ValueError a worker meets (retrying the same build would fail the same way)."""


def indexes_dir(settings_or_dir: Settings | Path) -> Path:
    """Where this host keeps corpus artefacts: `indexes/` under the service's data dir."""
    if isinstance(settings_or_dir, Settings):
        return settings_or_dir.data_dir / INDEXES
    return Path(settings_or_dir) / INDEXES


def artefact_path(
    settings_or_dir: Settings | Path, dataset_sha256: str, name: str, params_key: str
) -> Path:
    """The final directory of one artefact (whether built yet or not)."""
    if not SHA256.fullmatch(dataset_sha256):
        raise ValueError(f"dataset_sha256 must be 64 lowercase hex digits, got {dataset_sha256!r}")
    for what, part in (("name", name), ("params_key", params_key)):
        if not PART.fullmatch(part):
            raise ValueError(f"artefact {what} {part!r} must match {PART.pattern}")
    return indexes_dir(settings_or_dir) / dataset_sha256 / f"{name}-{params_key}"


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock across the processes of this host, released when the holder exits
    (even by a crash), so a dead builder never blocks the next."""
    with lock_path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def built(
    settings_or_dir: Settings | Path,
    dataset_sha256: str,
    name: str,
    params_key: str,
    build: Callable[[Path], None],
) -> Path:
    """The artefact's directory, calling `build(empty_dir)` first if no complete one exists.

    `build` writes its files into the directory it is given; only when it returns does that
    directory take the final name. Two shards on one host never build the same artefact twice:
    the second waits on the lock and then opens what the first built.
    """
    final = artefact_path(settings_or_dir, dataset_sha256, name, params_key)
    if _complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f".{final.name}.lock"):
        if _complete(final):  # built by the holder we waited for
            return final
        staging_prefix = f".{final.name}.building-"
        for stale in final.parent.glob(f"{staging_prefix}*"):  # a crashed builder's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # damaged (a file lost or cut short): set aside, built again
            shutil.rmtree(final, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix, dir=final.parent))
        started = time.perf_counter()
        try:
            build(staging)
            files = {
                str(p.relative_to(staging)): p.stat().st_size
                for p in sorted(staging.rglob("*"))
                if p.is_file()
            }
            manifest = {
                "name": name,
                "params_key": params_key,
                "dataset_sha256": dataset_sha256,
                "seconds": round(time.perf_counter() - started, 3),
                "bytes": sum(files.values()),
                "files": files,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
            _fsync_tree(staging)
            os.rename(staging, final)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, Exception):
                # An OSError's text names server paths: its reason alone goes to the audit.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ArtefactBuildError(
                    f"building the {name} artefact ({params_key}) of dataset "
                    f"{dataset_sha256[:12]} failed: {type(exc).__name__}: {reason}"
                ) from exc
            raise
    return final


def _complete(path: Path) -> bool:
    """Whether an artefact folder holds everything its build wrote, at the size written: a
    folder that lost a file (a disk cleaner, a crash of the filesystem) is built again rather
    than failing every later audit of its dataset."""
    try:
        files = json.loads((path / MANIFEST).read_text())["files"]
        return all((path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _fsync_tree(directory: Path) -> None:
    """Every file and folder under `directory` on disk before it is renamed into place."""
    for path in [*sorted(directory.rglob("*"), reverse=True), directory]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def manifest(path: Path) -> dict[str, object]:
    """What `built` recorded about an artefact: its build time and size on disk."""
    return json.loads((path / MANIFEST).read_text())
