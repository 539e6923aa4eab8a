"""The registry finds the families by itself (folders under worker/checks/, and outside
packages' entry points), refuses two owners of one kind, and keeps torch out of the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import worker.checks
import worker.checks.shard_pass
import worker.local
from core.check_kinds import Family, UnknownCheck
from tests.worker.checks.toy_package import write_toy_folder, write_toy_package
from worker.checks.registry import REGISTRY, Registry, RegistryConflict, RegistryError
from worker.demo import DemoArtifacts

REPO = Path(__file__).resolve().parents[3]
BUILT_IN = {
    "lm": ["loss", "extraction", "membership", "approximate", "coverage", "finetune"],
    "classifier": ["diversity", "proxies", "capacity"],
    "unlearning": ["unlearning"],
    "reasoning": ["kk_memorization", "retention", "wilt"],
    "diffusion": ["cfg_basin", "cfg_mitigation", "lid"],
    "dataset": ["duplication", "near_duplicates", "pii", "contamination"],
}


def test_the_built_in_families_are_found_in_their_folders() -> None:
    found = {family.name: [kind.name for kind in family.kinds] for family in REGISTRY.families}
    assert found == BUILT_IN
    assert list(REGISTRY.kinds) == [kind for kinds in BUILT_IN.values() for kind in kinds]
    for family in REGISTRY.families:
        assert family.source == f"worker.checks.{family.name}"
        assert (REPO / "worker" / "checks" / family.name / "__init__.py").is_file()
        assert REGISTRY.report_part(family) is not None, family.name
    with pytest.raises(UnknownCheck, match="available: approximate, capacity, cfg_basin"):
        REGISTRY.get_check("nope")


def test_importing_the_api_and_its_report_parts_leaves_torch_out() -> None:
    code = (
        "import sys\n"
        "import app.main\n"
        "from app.dashboard import pages\n"
        "from worker.checks.registry import REGISTRY\n"
        "parts = REGISTRY.report_parts()\n"
        "assert len(parts) == 6, parts\n"
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_new_folder_beside_the_families_is_found_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_lm: DemoArtifacts
) -> None:
    extra = tmp_path / "checks"
    write_toy_folder(extra / "toyfolder", "worker.checks.toyfolder")
    monkeypatch.setattr(worker.checks, "__path__", [*worker.checks.__path__, str(extra)])
    registry = Registry()
    assert [f.name for f in registry.families][-1] == "toy"
    assert registry.family_of("toy_tokens").name == "toy"
    # A local audit runs it through the same passes as a worker.
    monkeypatch.setattr(worker.checks.shard_pass, "REGISTRY", registry)
    monkeypatch.setattr(worker.local, "REGISTRY", registry)
    records = [{"text": "one two three"}, {"text": "a much longer record of several words"}]
    result = worker.local.audit_texts(
        tiny_lm.model_dir, records, [{"kind": "toy_tokens"}, {"kind": "loss"}]
    )
    counts = [row["n_tokens"] for row in result["toy_tokens"]["samples"]]
    assert counts[0] < counts[1]
    assert result["toy_tokens"]["summary"]["max_tokens"] == counts[1]
    assert result["loss"]["summary"]["n_samples"] == 2


def test_an_entry_point_family_is_found_and_one_claiming_a_known_kind_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(write_toy_package(tmp_path / "site")))
    assert Registry().family_of("toy_tokens").source == "toykind"
    assert "toy_tokens" in Registry().kinds

    clash = write_toy_package(tmp_path / "clash", package="clashkind", family="clash", kind="loss")
    monkeypatch.syspath_prepend(str(clash))
    with pytest.raises(RegistryConflict, match="'loss' is declared by both"):
        Registry().kinds  # noqa: B018


def test_a_family_that_cannot_be_read_is_named_and_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = write_toy_package(tmp_path / "site", package="brokenkind", family="broken")
    (site / "brokenkind" / "__init__.py").write_text("import a_module_nobody_installed\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(
        RegistryError, match=r"entry point broken = brokenkind:FAMILY \(brokenkind\)"
    ):
        Registry().load()
    (site / "brokenkind" / "__init__.py").write_text("FAMILY = 'not a family'\n")
    with pytest.raises(RegistryError, match=r"not a core\.check_kinds\.Family"):
        Registry().load()
    # The service refuses to start with that message, rather than fail on every request.
    env = {**os.environ, "PYTHONPATH": str(site), "MEMAUDIT_DATA_DIR": str(tmp_path / "data")}
    code = "from app.main import create_app; create_app()"
    started = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, timeout=120
    )
    assert started.returncode != 0
    assert b"RegistryError: entry point broken = brokenkind:FAMILY" in started.stderr


def test_a_family_whose_pass_or_report_cannot_be_imported_stops_serve_and_worker(
    tmp_path: Path,
) -> None:
    site = write_toy_package(tmp_path / "site", package="halfkind", family="half")
    (site / "halfkind" / "report.py").write_text("import a_module_nobody_installed\n")
    env = {**os.environ, "PYTHONPATH": str(site), "MEMAUDIT_DATA_DIR": str(tmp_path / "data")}
    for command in (["worker"], ["serve", "--port", "1"]):
        started = subprocess.run(
            [sys.executable, "-m", "app.cli", *command],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 2, (command, started.stderr[-2000:])
        assert started.stderr.startswith(
            "error: the half check family (halfkind): halfkind.report:REPORT failed to import"
        ), started.stderr[-2000:]
    # Nothing was written before the refusal: no database, no admin key.
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_a_pass_or_report_named_in_the_wrong_shape_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="expected 'module:attribute'"):
        Family("bad", (), "worker.checks.lm.passes.open_pass")
