"""The pii kind: an inventory of personal data and secrets in a corpus
(`worker/engine/corpus/pii.py`), per record and by type, with how often each value recurs
across the corpus (a secret seen 30 times is the likeliest to be memorized: Carlini et al.
2021 found the extracted PII among the most duplicated sequences).

Rows keep each detected value only as its mask and a keyed hash (`display.pii_key`): the hash
counts recurrences at finalize across every shard and host, the mask lets a reader tell values
apart; the raw value stays in the uploaded file alone. `possible_secret` (entropy alone) is
reported beside the types, never counted among them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from core.inspection.datasets import Record
from worker.checks.dataset.display import Display
from worker.checks.dataset.duplication import record_text
from worker.checks.dataset.kinds import PiiParams
from worker.engine.corpus.pii import PII_TYPES, PiiDetectionError, detect

ENTROPY_ONLY = "possible_secret"
PII_ONLY = tuple(t for t in PII_TYPES if t != ENTROPY_ONLY)


def prepare_pii(corpus: Any, _params: PiiParams) -> Display:
    return corpus.display()


def pii_values(display: Display, records: Sequence[Record], params: PiiParams) -> list[dict]:
    """Per record: counts by type and each value's mask and keyed hash (up to a cap)."""
    wanted = set(params.types)
    values = []
    for record in records:
        text = record_text(record)
        if text is None:
            values.append({"pii_count": None, "skipped": "no text"})
            continue
        try:
            found = [d for d in detect(text, display.key) if d.type in wanted]
        except PiiDetectionError as exc:  # names the error's class only, never the text
            values.append({"pii_count": None, "skipped": str(exc)})
            continue
        by_type = Counter(d.type for d in found)
        counted = sum(n for t, n in by_type.items() if t != ENTROPY_ONLY)
        values.append(
            {
                "pii_count": counted,
                "has_pii": counted > 0,
                "possible_secrets": by_type.get(ENTROPY_ONLY, 0),
                "pii_types": sorted(t for t in by_type if t != ENTROPY_ONLY),
                "by_type": dict(sorted(by_type.items())),
                "values": [
                    {"type": d.type, "masked": d.masked, "hash": d.hashed}
                    for d in found[: params.max_values_per_record]
                ],
                "values_truncated": len(found) > params.max_values_per_record,
            }
        )
    return values


def summarize_pii(values: Sequence[dict[str, Any] | None], params: PiiParams) -> dict[str, Any]:
    """By type: records holding it, occurrences, distinct values; the values that recur most
    (mask, count, records) and how many recur at all."""
    assessed = [v for v in values if v is not None and v.get("pii_count") is not None]
    n = len(assessed)
    occurrences: Counter[tuple[str, str]] = Counter()
    records_of: dict[tuple[str, str], int] = defaultdict(int)
    mask_of: dict[tuple[str, str], str] = {}
    records_with: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for value in assessed:
        for kind, count in value["by_type"].items():
            records_with[kind] += 1
            total[kind] += count
        for kind, digest in {(v["type"], v["hash"]) for v in value["values"]}:
            records_of[(kind, digest)] += 1
        for item in value["values"]:
            occurrences[(item["type"], item["hash"])] += 1
            mask_of.setdefault((item["type"], item["hash"]), item["masked"])
    by_type = {
        kind: {
            "records": records_with.get(kind, 0),
            "occurrences": total.get(kind, 0),
            "distinct": sum(1 for k, _ in occurrences if k == kind),
            "recurring": sum(1 for (k, _), c in occurrences.items() if k == kind and c > 1),
        }
        for kind in params.types
    }
    ranked = sorted(occurrences.items(), key=lambda item: (-item[1], item[0]))
    top = [
        {
            "type": kind,
            "masked": mask_of[(kind, digest)],
            "count": count,
            "records": records_of[(kind, digest)],
        }
        for (kind, digest), count in ranked
        if kind != ENTROPY_ONLY
    ][: params.top_values]
    with_pii = sum(1 for v in assessed if v["has_pii"])
    return {
        "n_records": n,
        "n_skipped": len(values) - n,
        "n_records_with_pii": with_pii,
        "pii_share": with_pii / n if n else None,
        "n_records_with_possible_secret": sum(1 for v in assessed if v["possible_secrets"]),
        "by_type": by_type,
        "top_recurring": top,
        "max_recurrence": max(
            (c for (k, _), c in occurrences.items() if k != ENTROPY_ONLY), default=0
        ),
        "values_truncated_records": sum(1 for v in assessed if v["values_truncated"]),
    }
