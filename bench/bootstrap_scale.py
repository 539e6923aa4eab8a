"""Bootstrap CIs of a membership score at audit scale, against re-sorting every resample.

    python -m bench.bootstrap_scale             # 100,000 + 100,000 records, 1,000 resamples
    python -m bench.bootstrap_scale --quick     # 20,000 + 20,000 records, 200 resamples
    python -m bench.bootstrap_scale --ties      # scores rounded: tied values on both sides

Prints, all measured in this run:
  1. seconds per score: re-sorting each resample (the method before counts) and
     `bootstrap_metrics` (sort once, resample counts), their ratio, and whether every
     percentile interval is identical;
  2. the CIs of an audit's default scores (loss, zlib, Min-K%, Min-K%++) as a share of its
     model pass: the scoring pass (log-probs and full-vocabulary moments) of the random GPT-2
     bench/lm_engine.py builds, timed here on CPU and taken to the same number of records.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lm_engine import build_model, random_sequences
from worker.engine.membership import bootstrap_metrics, roc_curve, roc_metrics
from worker.engine.scoring import ScoringRequest, score_sequences

DEFAULT_SCORES = 4  # loss, zlib, mink_0.2, minkpp_0.2: a membership check's defaults
TOKENS_PER_RECORD = 128
PASS_SEQUENCES = 16


def resorted_metrics(
    members: np.ndarray, nonmembers: np.ndarray, bootstrap: int, seed: int
) -> dict[str, list[float]]:
    """The method before counts, kept as the baseline: every resample drawn and re-sorted."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(bootstrap):
        roc = roc_curve(rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers)))
        for name, value in roc_metrics(roc).items():
            draws.setdefault(name, []).append(value)
    return draws


def intervals(draws: dict[str, list[float]]) -> dict[str, list[float]]:
    return {name: np.percentile(values, [2.5, 97.5]).tolist() for name, values in draws.items()}


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@torch.inference_mode()
def pass_seconds_per_record() -> float:
    """CPU seconds of the membership scoring pass per record of TOKENS_PER_RECORD tokens."""
    model = build_model("cpu")
    requests = [
        ScoringRequest(seq, moments=True)
        for seq in random_sequences(PASS_SEQUENCES, TOKENS_PER_RECORD)
    ]
    score_sequences(model, requests[:2], "cpu", batch_size=8)  # warm-up
    seconds, _ = timed(lambda: score_sequences(model, requests, "cpu", batch_size=8))
    return seconds / PASS_SEQUENCES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000, help="members, and non-members")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ties", action="store_true", help="scores rounded to 3 decimals")
    args = parser.parse_args()
    records, bootstrap = (20_000, 200) if args.quick else (args.records, args.bootstrap)
    rng = np.random.default_rng(0)
    # Continuous scores, as a log-likelihood gives: every record its own ROC point, the most
    # work a resample can take. Rounded (--ties), ties within and across the sides are tested.
    members = rng.normal(0.2, 1.0, records)
    nonmembers = rng.normal(0.0, 1.0, records)
    if args.ties:
        members, nonmembers = members.round(3), nonmembers.round(3)

    old_s, old = timed(lambda: resorted_metrics(members, nonmembers, bootstrap, seed=0))
    new_s, new = timed(lambda: bootstrap_metrics(members, nonmembers, bootstrap, seed=0))
    same = intervals(old) == intervals(new)
    print(f"{records:,} + {records:,} records, {bootstrap} resamples, per score:")
    print(f"  re-sorting each resample: {old_s:.2f} s")
    print(f"  counts over one sort:     {new_s:.2f} s -> {old_s / new_s:.1f}x faster")
    print(f"  intervals identical: {same}")

    per_record = pass_seconds_per_record()
    pass_s = per_record * 2 * records
    cis_s = DEFAULT_SCORES * new_s
    print(
        f"model pass (35.6M GPT-2, CPU, {TOKENS_PER_RECORD} tokens a record, measured on "
        f"{PASS_SEQUENCES}): {1 / per_record:.1f} records/s -> {pass_s:,.0f} s for "
        f"{2 * records:,} records"
    )
    print(
        f"CIs of {DEFAULT_SCORES} scores: {cis_s:.1f} s = {cis_s / pass_s:.2%} of the pass "
        f"(target <= 10%; re-sorting: {DEFAULT_SCORES * old_s / pass_s:.2%})"
    )
    tokens = 2 * records * TOKENS_PER_RECORD
    print(
        f"the CIs stay within 10% of any pass of {2 * records:,} x {TOKENS_PER_RECORD} tokens "
        f"slower than {tokens / (10 * cis_s):,.0f} tok/s (re-sorting: "
        f"{tokens / (10 * DEFAULT_SCORES * old_s):,.0f} tok/s)"
    )
    if not same:
        raise SystemExit("the intervals differ from the re-sorting method")


if __name__ == "__main__":
    main()
