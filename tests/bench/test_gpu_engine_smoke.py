"""bench/gpu_engine.py --smoke: every code path of the GPU bench on CPU with tiny shapes, so the
bench that runs later on a GPU machine, unchanged, is known to run to its table."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bench.gpu_engine import COLUMNS, SMOKE_WORKLOADS
from tests.conftest import REPO

BASELINE_CELL = re.compile(r"^[\d.]+k tok/s, [\d.e+-]+ TFLOP/s, \d+% of peak$")
RATIO_CELL = re.compile(r"^\d+\.\d\dx \(\d+%\)$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_smoke_run_prints_the_table_and_the_verdict_checks() -> None:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "bench/gpu_engine.py", "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()

    header = next(i for i, line in enumerate(lines) if line.startswith("| shape, texts x tokens"))
    assert _cells(lines[header]) == ["shape, texts x tokens", *COLUMNS]
    rows = [_cells(line) for line in lines[header + 2 : header + 2 + len(SMOKE_WORKLOADS)]]
    assert [row[0] for row in rows] == [w.label for w in SMOKE_WORKLOADS]
    for row in rows:
        assert len(row) == len(COLUMNS) + 1, row
        assert BASELINE_CELL.match(row[1]), row[1]
        assert all(RATIO_CELL.match(cell) for cell in row[2:]), row
    assert any(line.startswith("FLOPs/token = 2 * N_nonembedding") for line in lines)

    checks = [line for line in lines if line.startswith("[verdicts]") and "->" in line]
    assert any("float32 teacher-forced = float32 generate()" in line for line in checks)
    assert not any("FAIL" in line for line in lines)
    assert any(line.startswith("[time] verdicts:") for line in lines)
