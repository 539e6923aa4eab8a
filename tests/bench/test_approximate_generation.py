"""bench/approximate_generation.py --quick: the bench runs to its ratios, and batched greedy
generation agrees with HF generate() and batched samples with one-by-one ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_quick_run_prints_its_ratios_and_agreements() -> None:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "bench/approximate_generation.py", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[cpu]")]
    assert len(lines) == 3, done.stdout
    assert re.search(r"= \d+\.\d\dx; ids agree on 8/8$", lines[0]), lines[0]
    assert re.search(r"= \d+\.\d\dx; seeded samples agree on 8/8$", lines[1]), lines[1]
    assert "agree: True" in lines[2]
