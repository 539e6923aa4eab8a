"""`memaudit demo --out FOLDER`: the demo model and dataset written where a user registers and
uploads them (README "Use with MLflow"), with no service and nothing in the data dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from app.cli import main
from worker.demo import DemoArtifacts


def test_out_writes_the_model_and_its_dataset_into_the_folder_only(
    tmp_path: Path, tiny_lm: DemoArtifacts, capsys, monkeypatch
) -> None:
    out = tmp_path / "demo"
    # The model the session trained already (build_demo reuses a saved model: no training here).
    shutil.copytree(tiny_lm.model_dir, out / "demo-canary-gpt2")
    data_dir = tmp_path / "service-data"
    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()

    assert main(["demo", "--out", "demo"]) == 0

    printed = capsys.readouterr().out
    assert f"model: {out / 'demo-canary-gpt2'}" in printed
    assert f"dataset: {out / 'canaries.jsonl'}" in printed
    records = [json.loads(line) for line in (out / "canaries.jsonl").read_text().splitlines()]
    assert (out / "canaries.jsonl").read_text() == tiny_lm.dataset_path.read_text()
    assert sum(r["member"] for r in records) == tiny_lm.n_members
    assert len(records) == tiny_lm.n_members + tiny_lm.n_nonmembers
    assert not data_dir.exists()  # nothing submitted, the service's folders untouched
    assert torch.get_num_threads() == threads  # trained on one thread, then given back
