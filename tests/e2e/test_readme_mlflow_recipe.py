"""README's "Use with MLflow" recipe, run as written: its blocks are read from README.md when the
test runs and executed literally in one bash shell, against the `mlflow server` and the
`memaudit serve` the recipe itself starts, from an empty folder to the `memaudit.*` tags.

The convention (stated in the README): between `<!-- recipe:start` and `<!-- recipe:end -->`,
every ```sh block runs as it stands and every ```python block runs as `python - <<'EOF'`, in
order, in one shell; ```text blocks show output and are not run. The first block names what a
user chooses as `NAME=${NAME:-default}`, and those are the only variables this test sets.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import Database
from core.models import WebhookDelivery
from tests.conftest import REPO
from tests.e2e.conftest import free_port, processes_with

pytestmark = pytest.mark.slow

SECTION = "## Use with MLflow\n"
START, END = "<!-- recipe:start", "<!-- recipe:end -->"
FENCE = re.compile(r"^```(?P<lang>\w+)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
RUNS = {"sh", "python"}
# What the recipe registers and reads back, in its step 8 (`<name> {tags}` per version).
VERSIONS = ("demo-canary-bot", "demo-canary-files")
TAGS_LINE = re.compile(r"^(?P<name>[\w-]+) (?P<tags>\{'memaudit\..*\})$")
SHARED_MEMORY = Path("/dev/shm")  # where an MLflow server with its job runner leaves a folder
TARGET_SECONDS = 120  # issue #30: from the end of `make install` to the written-back tags


@dataclass(frozen=True)
class Block:
    lang: str
    code: str


def recipe_blocks(readme: str) -> list[Block]:
    """The fenced blocks between the recipe markers of the "Use with MLflow" section."""
    section = readme[readme.index(SECTION) + len(SECTION) :]
    section = section[: section.find("\n## ")]  # up to the next section, if any
    assert START in section and END in section, "the recipe markers left the MLflow section"
    recipe = section[section.index(START) : section.index(END)]
    return [Block(m["lang"], m["code"]) for m in FENCE.finditer(recipe)]


def as_script(blocks: list[Block]) -> str:
    """One bash script: the blocks in order, each as a user pastes it, stopping at an error."""
    parts = ["set -euo pipefail"]
    for block in blocks:
        if block.lang == "sh":
            parts.append(block.code)
        elif block.lang == "python":
            assert "\nPYTHON\n" not in block.code
            parts.append(f"python - <<'PYTHON'\n{block.code}PYTHON")
    return "\n".join(parts) + "\n"


def chosen_variables(first: Block) -> set[str]:
    """`NAME=${NAME:-default}`: a value the recipe lets the user choose."""
    return set(re.findall(r"\b(\w+)=\$\{\1:-", first.code))


def recipe_env(chosen: dict[str, str]) -> dict[str, str]:
    """This process's environment without any memaudit or MLflow setting (the recipe sets each
    one it needs), the virtualenv active as the README asks, and the user's choices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMAUDIT_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if _installed_package_dir(env) != REPO / "app":
        # A virtualenv shared between checkouts holds another one's editable install: import
        # this checkout, as `make install` in it would have made `memaudit` do.
        env["PYTHONPATH"] = str(REPO)
    return {**env, **chosen}


def _installed_package_dir(env: dict[str, str]) -> Path:
    """Where the virtualenv's `memaudit` imports the app from, outside this checkout."""
    probe = "import app, pathlib; print(pathlib.Path(app.__file__).parent)"
    found = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd="/", capture_output=True, text=True, check=True
    )
    return Path(found.stdout.strip())


def test_readme_blocks_follow_the_convention() -> None:
    blocks = recipe_blocks((REPO / "README.md").read_text())
    assert {b.lang for b in blocks} <= RUNS | {"text"}
    assert blocks[0].lang == "sh"
    assert chosen_variables(blocks[0]) == {"MLFLOW_PORT", "MEMAUDIT_PORT", "RECIPE_DIR"}
    script = as_script(blocks)
    for needed in (
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS",
        "MEMAUDIT_MLFLOW_TRACKING_URI",
        "MEMAUDIT_MLFLOW_WEBHOOK_SECRET",
        "/v1/datasets",
        "/v1/policies",
        "create_webhook",
        "test_webhook",
        "pip_requirements",
        "create_model_version",
    ):
        assert needed in script, needed
    # One name for the key throughout the section, the one the recipe defines.
    section = (REPO / "README.md").read_text().split(SECTION)[1].split("\n## ")[0]
    assert "$ADMIN_KEY" not in section and "KEY=$(cat .memaudit/admin.key)" in section


def _stop_leftovers(marker: str) -> list[int]:
    """End what the recipe started and did not stop (its processes inherit RECIPE_DIR)."""
    left = processes_with("RECIPE_DIR", marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_with("RECIPE_DIR", marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 20
        while processes_with("RECIPE_DIR", marker) and time.monotonic() < deadline:
            time.sleep(0.5)
    return left


def _shared_memory_folders() -> set[str]:
    if not SHARED_MEMORY.is_dir():
        return set()
    return {entry.name for entry in SHARED_MEMORY.iterdir() if entry.is_dir()}


def _deliveries(recipe_dir: Path) -> list[WebhookDelivery]:
    db = Database(f"sqlite:///{recipe_dir / '.memaudit' / 'memaudit.db'}")
    try:
        with db.session() as session:
            return list(session.scalars(select(WebhookDelivery)))
    finally:
        db.dispose()


def test_the_mlflow_recipe_runs_as_written_to_the_written_back_tags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = recipe_blocks((REPO / "README.md").read_text())
    script = as_script(blocks)
    tmp = Path(tempfile.mkdtemp(prefix="memaudit-recipe-"))
    recipe_dir = tmp / "memaudit-mlflow"
    chosen = {
        "MLFLOW_PORT": str(free_port()),
        "MEMAUDIT_PORT": str(free_port()),
        "RECIPE_DIR": str(recipe_dir),
    }
    assert set(chosen) == chosen_variables(blocks[0])
    (tmp / "recipe.sh").write_text(script)
    shared_before = _shared_memory_folders()
    lines: list[str] = []
    tagged_at: dict[str, float] = {}
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", str(tmp / "recipe.sh")],
        cwd=tmp,
        env=recipe_env(chosen),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            print(f"[{time.monotonic() - started:6.1f}s] {lines[-1]}")
            if match := TAGS_LINE.match(lines[-1]):
                tagged_at[match["name"]] = time.monotonic() - started
        code = process.wait(timeout=60)
        logs = {
            name: (recipe_dir / name).read_text()[-4000:]
            for name in ("mlflow.log", "memaudit.log")
            if (recipe_dir / name).exists()
        }
        assert code == 0, (lines[-40:], logs)
        # The recipe's own last step stopped both servers and everything they started.
        deadline = time.monotonic() + 30
        while processes_with("RECIPE_DIR", str(recipe_dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_with("RECIPE_DIR", str(recipe_dir)), "the recipe left processes"

        tags = {m["name"]: ast.literal_eval(m["tags"]) for m in map(TAGS_LINE.match, lines) if m}
        assert set(tags) == set(VERSIONS), lines[-20:]
        for name in VERSIONS:
            # The demo model reproduces every trained canary: far above the 1% allowed.
            assert tags[name]["memaudit.verdict"] == "fail", tags[name]
            assert tags[name]["memaudit.promotion"] == "blocked"
            assert tags[name]["memaudit.status"] == "succeeded"
            audit_id = tags[name]["memaudit.audit_id"]
            assert re.fullmatch(r"[0-9a-f]{32}", audit_id)
            assert tags[name]["memaudit.report_url"] == (
                f"http://127.0.0.1:{chosen['MEMAUDIT_PORT']}/audits/{audit_id}"
            )
            assert float(tags[name]["memaudit.greedy_extraction_rate"]) >= 0.4

        # Each tag came from its webhook delivery, not the periodic reconciliation: the
        # delivery of that version's model_version.created started the very audit whose id is
        # on the version (reconciliation, finding an audit of the version and policy, starts
        # none), and reconciliation started nothing at all.
        deliveries = _deliveries(recipe_dir)
        created = {
            d.payload["data"]["name"]: d for d in deliveries if d.event == "model_version.created"
        }
        assert set(created) == {"example_model", *VERSIONS}  # example_model: test_webhook's
        assert created["example_model"].status == "processed"
        assert created["example_model"].detail["audits"] == []  # no policy matches it
        for name in VERSIONS:
            assert created[name].status == "processed", created[name].detail
            assert created[name].detail["audits"] == [tags[name]["memaudit.audit_id"]]
        assert "reconciliation started" not in (recipe_dir / "memaudit.log").read_text()
        assert _shared_memory_folders() <= shared_before, "mlflow server left /dev/shm folders"
        elapsed = max(tagged_at.values())
        with capsys.disabled():  # the time is in every run's output, CI's too
            print(
                f"\nREADME recipe: first memaudit.* tags after {min(tagged_at.values()):.1f} s, "
                f"both versions after {elapsed:.1f} s (target {TARGET_SECONDS} s)"
            )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        left = _stop_leftovers(str(recipe_dir))
        shutil.rmtree(tmp, ignore_errors=True)
    assert not left, f"processes left running: {left}"
    assert not tmp.exists()
