"""Corpus artefacts: built once per corpus per host, never seen half-built."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from core.config import get_settings
from worker.checks.dataset.artefacts import ArtefactBuildError, built, manifest
from worker.local import audit_texts

SHA = "ab" * 32


def _slow_build(directory: Path) -> None:
    (directory / "calls").mkdir(exist_ok=True)
    time.sleep(0.5)  # long enough that the other process arrives while this one builds
    (directory / "data.bin").write_bytes(b"x" * 10)
    marker = directory.parent / "builds.log"  # beside the staging dir
    with marker.open("a") as log:
        log.write("built\n")


def _open(data_dir: str, results) -> None:  # type: ignore[no-untyped-def]
    results.put(str(built(Path(data_dir), SHA, "slow", "v1", _slow_build)))


def test_two_processes_build_one_artefact_once(tmp_path) -> None:
    results = multiprocessing.get_context("spawn").Queue()
    processes = [
        multiprocessing.get_context("spawn").Process(target=_open, args=(str(tmp_path), results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    paths = {results.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
    assert len(paths) == 1
    path = Path(paths.pop())
    assert (tmp_path / "indexes" / SHA / "builds.log").read_text() == "built\n"
    assert (path / "data.bin").read_bytes() == b"x" * 10
    assert manifest(path)["bytes"] == 10


def test_a_failed_build_leaves_nothing_and_says_why(tmp_path) -> None:
    def broken(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(ArtefactBuildError, match=r"broken artefact .* failed: OSError: disk full"):
        built(tmp_path, SHA, "broken", "v1", broken)
    assert [p.name for p in (tmp_path / "indexes" / SHA).iterdir()] == [".broken-v1.lock"]
    calls = []
    path = built(tmp_path, SHA, "broken", "v1", lambda d: calls.append(d))
    assert path.is_dir() and len(calls) == 1


def test_names_cannot_leave_the_indexes_folder(tmp_path) -> None:
    for name, key, sha in (("../x", "v1", SHA), ("x", "a/b", SHA), ("x", "v1", "../" * 3)):
        with pytest.raises(ValueError):
            built(tmp_path, sha, name, key, lambda d: None)


def test_a_local_audit_of_texts_runs_without_a_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()  # local audits keep artefacts under the configured data dir
    try:
        texts = ["Same text", "same   TEXT", "other", "SAME text ", "other", "alone"]
        result = audit_texts(None, [{"text": t} for t in texts], [{"kind": "duplication"}])
    finally:
        get_settings.cache_clear()
    found = result["duplication"]
    assert [s["duplicates"] for s in found["samples"]] == [3, 3, 2, 3, 2, 1]
    assert found["summary"]["histogram"] == {"copies": [1, 2, 3], "records": [1, 2, 3]}
    assert list((tmp_path / "indexes").glob("*/normalised-counts-*"))
