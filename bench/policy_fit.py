"""How long a policy's dataset check takes on a million records, against one read of the file.

    .venv/bin/python -m bench.policy_fit [--records 1000000]

`POST /v1/policies` profiles its dataset before it stores anything: the first 100,000 records
parsed and read by each kind's reader, the rest measured by line length only. The baseline,
timed in the same run, is reading the same file's lines and doing nothing with them; the ratio
says what the check adds to one read of the bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

from core.dataset_profile import profile_dataset

WORDS = ["alpha", "beta", "gamma", "delta", "memo", "canary", "secret", "record"]


def _write(path: Path, n: int) -> None:
    rng = random.Random(0)
    with path.open("w") as out:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30)))
            out.write(json.dumps({"id": str(i), "text": text, "member": bool(i % 2)}) + "\n")


def _best(run, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    n = parser.parse_args().records
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.jsonl"
        _write(path, n)

        def read_lines() -> None:
            with path.open("rb") as lines:
                for _ in lines:
                    pass

        baseline = _best(read_lines)
        check = _best(lambda: profile_dataset(path, n, ["text"]))
        tracemalloc.start()
        profile = profile_dataset(path, n, ["text"])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = path.stat().st_size
    print(f"{n:,} records, {size / 1e6:.0f} MB: {profile.n_parsed:,} parsed, the rest measured")
    print(f"read the lines (baseline): {baseline:.2f} s")
    print(f"policy dataset check:      {check:.2f} s  ({check / baseline:.1f}x the baseline)")
    print(f"peak Python allocation of the check: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
