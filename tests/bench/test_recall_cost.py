"""bench/recall_cost.py at toy size: it runs to its ratio line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_smoke_run_prints_the_ratio() -> None:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "bench/recall_cost.py", "--smoke", "--repeats", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"^recall_cost_ratio (\d+\.\d+) ", done.stdout, re.MULTILINE)
    assert found, done.stdout
    assert float(found.group(1)) > 1  # ReCaLL includes the plain pass
