"""A split from a candidate member set and a candidate non-member set: the blind baseline before
any model runs, matched subsets on request, and the combined labelled records an audit reads
(each record as it came, with `member: true|false`). Shared by `memaudit split` and the worker's
split task; reading the files is the caller's (local paths, or pinned beneath a team's roots)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core.inspection.datasets import (
    DatasetError,
    DatasetLimits,
    check_text_length,
    iter_records,
    require_text,
)
from worker.engine.blind_baseline import blind_baseline
from worker.engine.split_matching import MIN_PAIRS, match_split

# The blind baseline runs over every record of both sets (twice, with matching).
MAX_RECORDS_PER_SET = 50_000


class SplitError(ValueError):
    """A split that cannot be built from these sets, said in words; `report` holds what was
    measured before it stopped (the blind baseline of the sets as given), if anything."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class BuiltSplit:
    report: dict[str, Any]  # before, after (with matching), what was kept
    records: list[dict[str, Any]]  # the combined labelled dataset: kept members, then non-members


def read_texts(path: Path, limits: DatasetLimits | None = None) -> list[dict[str, Any]]:
    """Every record of a dataset file, each with a string `text` (DatasetError names the line)."""
    records = []
    for record in iter_records(path):
        require_text(record)
        if limits is not None:
            if record.index >= limits.max_records:
                raise DatasetError(
                    record.line_no, f"more than {limits.max_records} records per set"
                )
            check_text_length(record.data, record.line_no, limits.max_text_chars)
        records.append(record.data)
    return records


def build_split(
    members: Sequence[dict[str, Any]],
    nonmembers: Sequence[dict[str, Any]],
    *,
    match: bool,
    seed: int = 0,
    bootstrap: int = 1000,
) -> BuiltSplit:
    """Measure the split (and with `match`, the matched subsets) and label what is kept."""
    for name, records in (("member", members), ("non-member", nonmembers)):
        if len(records) < 2:
            raise SplitError(f"the {name} set has {len(records)} records; at least 2 are needed")
        if len(records) > MAX_RECORDS_PER_SET:
            raise SplitError(
                f"the {name} set has {len(records):,} records; a split is built from at most "
                f"{MAX_RECORDS_PER_SET:,} per set (the classifier runs over every record, twice "
                "with matching): draw a random subset of that size"
            )
    member_texts = [record["text"] for record in members]
    nonmember_texts = [record["text"] for record in nonmembers]
    report: dict[str, Any] = {
        "n_members": len(members),
        "n_nonmembers": len(nonmembers),
        # A text in both sets is a member and a non-member at once: a mistake in the sets.
        "texts_in_both": len(set(member_texts) & set(nonmember_texts)),
        "seed": seed,
    }
    try:
        if not match:
            report["before"] = blind_baseline(
                [*member_texts, *nonmember_texts],
                [True] * len(members) + [False] * len(nonmembers),
                bootstrap=bootstrap,
                seed=seed,
            )
            return BuiltSplit(report, _labelled(members, nonmembers, seed))
        matched = match_split(member_texts, nonmember_texts, seed=seed, bootstrap=bootstrap)
    except ValueError as exc:  # texts the n-gram vocabularies cannot be fitted on
        raise SplitError(f"the blind baseline cannot be fitted on these texts: {exc}") from None
    report["before"], report["after"] = matched.before, matched.after
    report["matching"] = {
        **matched.method,
        "kept_members": len(matched.members),
        "kept_nonmembers": len(matched.nonmembers),
    }
    if matched.after is None:
        raise SplitError(
            f"matching kept {len(matched.members)} pairs, fewer than the {MIN_PAIRS} a fresh "
            "blind baseline needs: the sets barely overlap in what the texts show, so no matched "
            "subset of them is a fair split; draw non-members from the members' distribution",
            report,
        )
    kept_members = [members[i] for i in matched.members]
    kept_nonmembers = [nonmembers[i] for i in matched.nonmembers]
    return BuiltSplit(report, _labelled(kept_members, kept_nonmembers, seed))


def _labelled(
    members: Iterable[dict[str, Any]], nonmembers: Iterable[dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """Each record as it came, `member` set by the set it came from (whatever it said before),
    in a seeded random order: an audit shards records in file order, and shards of only
    members or only non-members would let any difference between workers pass for a signal."""
    records = [{**record, "member": True} for record in members] + [
        {**record, "member": False} for record in nonmembers
    ]
    random.Random(seed).shuffle(records)
    return records


def write_jsonl(records: Iterable[dict[str, Any]], stream: IO[bytes]) -> None:
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
