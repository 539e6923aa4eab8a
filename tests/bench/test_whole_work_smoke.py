"""bench/whole_work.py --smoke: the whole-work bench runs to its ratio at toy size, so the
figure it prints at GPT-2 size comes from code that is known to run."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO

RATIO = re.compile(r"coverage scan / plain loss pass: ratio (\d+\.\d{3}) \(target <= 1\.1\)")


def test_the_smoke_run_prints_both_timings_and_their_ratio() -> None:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "bench/whole_work.py", "--smoke", "--rounds", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loss pass:" in done.stdout and "coverage scan:" in done.stdout
    found = RATIO.search(done.stdout)
    assert found is not None, done.stdout
    assert 0 < float(found.group(1)) < 10
