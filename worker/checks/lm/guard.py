"""The guard on every membership result: the blind baseline of the split, what each score's
AUROC may be taken to say on it (README, "Reading a membership verdict"), and dataset inference,
the aggregate test whether the member set as a whole was trained on.

A membership AUROC measures the model only when members and non-members differ by nothing
else. The blind baseline asks how well the texts alone tell them apart; when they do, the
split is `confounded` and every score on it is `inconclusive` whatever its value. Each score's
margin over the blind baseline is kept for information only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from worker.engine.blind_baseline import (
    BOOTSTRAP,
    FOLDS,
    blind_report,
    blind_scores,
    paired_margin,
    score_reading,
)
from worker.engine.dataset_inference import dataset_inference

# Above this many labelled records the blind baseline runs on a seeded, stratified subsample:
# its CI widens honestly, and finalize stays within seconds on a million-record audit.
MAX_BLIND_RECORDS = 20_000
INFERENCE_ALPHA = 0.01  # dataset inference "finds" a trained-on set below this p


def _labelled(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [row for row in rows if row.get("member") in (True, False)]


def _subsample(n: int, labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices of at most MAX_BLIND_RECORDS rows, keeping the member share."""
    if n <= MAX_BLIND_RECORDS:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    members, others = np.flatnonzero(labels), np.flatnonzero(~labels)
    # A rare side keeps enough records for every fold.
    keep_members = min(len(members), max(round(MAX_BLIND_RECORDS * len(members) / n), FOLDS))
    keep_others = min(len(others), max(MAX_BLIND_RECORDS - keep_members, FOLDS))
    chosen = np.concatenate(
        [
            rng.choice(members, keep_members, replace=False),
            rng.choice(others, keep_others, replace=False),
        ]
    )
    return np.sort(chosen)


def not_assessed(reason: str) -> dict[str, Any]:
    return {"reading": "not_assessed", "reason": reason}


def guard_membership(
    summary: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    score_keys: Sequence[str],
    *,
    bootstrap: int,
    seed: int,
) -> None:
    """Add the blind baseline, each score's reading and margin, and dataset inference to a
    labelled summary."""
    labelled = _labelled(rows)
    texts = [row.get("text") for row in labelled]
    labels = np.asarray([row["member"] for row in labelled], dtype=bool)
    if any(not isinstance(text, str) for text in texts):
        blind = not_assessed("the records' texts could not be read at finalize")
    elif min(int(labels.sum()), int((~labels).sum())) < 2:
        blind = not_assessed("the blind baseline needs at least 2 members and 2 non-members")
    else:
        try:
            blind, scores, kept = _blind(texts, labels, seed=seed)
        except (ValueError, ArithmeticError, MemoryError) as exc:
            # The guard must never fail the audit it guards: it withholds instead.
            blind = not_assessed(f"the blind baseline failed: {type(exc).__name__}: {exc}")
    summary["blind_baseline"] = blind
    for key in score_keys:
        entry = summary["scores"][key]
        auroc = (entry.get("auroc") or {}).get("value")
        if auroc is None:
            continue
        if blind["reading"] == "not_assessed":
            entry["reading"] = _withheld(blind)
            continue
        n_records = entry["n_members"] + entry["n_nonmembers"]
        entry["reading"] = score_reading(
            auroc, entry["auroc"]["ci95"], n_records, blind["reading"] == "confounded"
        )
        entry["margin_over_blind"] = _margin(
            [labelled[i].get(key) for i in kept], scores, labels[kept], bootstrap, seed
        )
    summary["dataset_inference"] = _inference(labelled, score_keys, blind, seed)


def _inference(
    rows: Sequence[Mapping[str, Any]],
    score_keys: Sequence[str],
    blind: Mapping[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Dataset inference, read like a score: on a split the blind baseline does not clear, its
    p-value says the sets differ, not that the model trained on one of them."""
    started = time.perf_counter()
    found = dataset_inference(rows, score_keys, seed=seed)
    found["seconds"] = round(time.perf_counter() - started, 3)
    if "skipped" in found:
        return found
    found["reading"] = _withheld(blind) or _inference_reading(found, blind)
    return found


def _inference_reading(found: Mapping[str, Any], blind: Mapping[str, Any]) -> dict[str, Any]:
    """A significance test turns any difference between the sets into a small p, so it stands
    only where the blind AUROC's CI holds 0.5 (the δ that tolerates a small confound in an
    AUROC does not carry over); and it can find a set was trained on but never clear one: a p
    of 0.01 or more is `underpowered`, with the records its power estimate says would do."""
    low, high = blind["auroc"]["ci95"]
    if not low <= 0.5 <= high:
        why = (
            "the texts alone tell the two sets apart (the blind AUROC's CI excludes 0.5), "
            "which this test would report as a difference"
        )
        return {"reading": "inconclusive", "why": why}
    if found["p_value"] < INFERENCE_ALPHA:
        return {"reading": "stands"}
    needed = (found.get("power") or {}).get("records_needed_for_p_0.01")
    return {"reading": "underpowered", "records_needed": needed}


def _withheld(blind: Mapping[str, Any]) -> dict[str, str] | None:
    """The reading of every result on a split the blind baseline did not clear; None if it did."""
    if blind["reading"] == "confounded":
        return {"reading": "inconclusive", "why": "the split is confounded"}
    if blind["reading"] == "not_assessed":
        why = f"the split was not assessed by the blind baseline: {blind['reason']}"
        return {"reading": "inconclusive", "why": why}
    return None


def _blind(
    texts: list[str], labels: np.ndarray, *, seed: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Its own bootstrap count: a check's `bootstrap: 0` must not turn the guard off."""
    started = time.perf_counter()
    kept = _subsample(len(texts), labels, seed)
    scores = blind_scores([texts[i] for i in kept], labels[kept].tolist(), seed)
    report = blind_report(scores, labels[kept].tolist(), bootstrap=BOOTSTRAP, seed=seed)
    if len(kept) < len(texts):
        report["subsample"] = {"of": len(texts), "kept": len(kept), "seed": seed}
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report, scores, kept


def _margin(
    values: Sequence[float | None],
    blind: np.ndarray,
    labels: np.ndarray,
    bootstrap: int,
    seed: int,
) -> dict[str, Any] | None:
    """AUROC(score) − AUROC(blind) over the records that have a finite score."""
    present = np.asarray([v is not None and math.isfinite(v) for v in values], dtype=bool)
    if labels[present].all() or not labels[present].any():
        return None
    return paired_margin(
        [float(v) for v, keep in zip(values, present, strict=True) if keep],
        blind[present].tolist(),
        labels[present].tolist(),
        bootstrap=bootstrap,
        seed=seed,
    )
