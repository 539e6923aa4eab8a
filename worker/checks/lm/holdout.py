"""The records no score may learn from: seeded held-out shares of the members and of the
non-members, chosen from the whole dataset file so every shard and worker picks the same ones.

ReCaLL's and Con-ReCall's prefixes come from the first `shots` held-out records of each label
(in the seeded order), DC-PDD's token frequencies from every held-out record. The held-out
records are then left out of every score of the check, loss included, so every AUROC is read
on the same scored records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from core.inspection.datasets import iter_records
from worker.checks.lm.labels import read_record


class HoldoutError(ValueError):
    """Too few labelled records to hold out the shots and still score some."""


@dataclass(frozen=True)
class HeldOut:
    # Records by their position in the file (str(index)): ids may repeat. Seeded order: the
    # first `shots` of each label are the prefix.
    members: tuple[str, ...]
    nonmembers: tuple[str, ...]
    texts: dict[str, str]  # position -> text, for every held-out record
    shots: int
    # From a reference corpus the user gave: no record of the audited dataset is held out.
    external: bool = False
    # DC-PDD's token frequencies, counted once per model (keyed by its content hash): held
    # here, they can only ever come from this set's own texts.
    frequencies: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def role(self, index: int | None) -> str | None:
        """The record's use, by its position in the dataset file: `prefix` (a shot),
        `frequency` (frequencies only), None (scored)."""
        if self.external or index is None:
            return None
        return self._roles.get(str(index))

    @cached_property
    def _roles(self) -> dict[str, str]:
        """Position -> role, built once: a lookup per record, not a scan of the held-out ids."""
        return {
            key: "prefix" if n < self.shots else "frequency"
            for ids in (self.members, self.nonmembers)
            for n, key in enumerate(ids)
        }

    def prefix_texts(self, member: bool) -> list[str]:
        ids = self.members if member else self.nonmembers
        return [self.texts[i] for i in ids[: self.shots]]


def holdout_size(n_labelled: int, share: float, shots: int) -> int:
    """Records held out of one label: the shots, or the share when it asks for more."""
    return max(shots, math.ceil(share * n_labelled))


def holdout_shortfall(counts: dict[bool, int], share: float, shots: int) -> str | None:
    """Why the labelled records cannot spare a held-out set, or None when they can."""
    for label in (True, False):
        size = holdout_size(counts[label], share, shots)
        if counts[label] < size + 1:
            name = "members" if label else "non-members"
            return (
                f"{counts[label]} labelled {name}: holding out {size} (shots={shots}, "
                f"holdout_share={share:g}) leaves none to score; label more records, lower "
                "shots, or drop recall, con_recall and dc_pdd from scores"
            )
    return None


def select_holdout(path: Path, share: float, shots: int, seed: int) -> HeldOut:
    """The held-out records of the dataset file at `path` (cached per file version)."""
    stat = path.stat()
    return _raised(_select(path, stat.st_mtime_ns, stat.st_size, share, shots, seed))


def _raised(found: HeldOut | HoldoutError) -> HeldOut:
    """A cached failure is raised again: lru_cache keeps no exception, so a selection that
    fails is returned, cached, and raised here, not recomputed (the file re-read) per batch."""
    if isinstance(found, HoldoutError):
        raise HoldoutError(str(found))
    return found


@lru_cache(maxsize=8)
def _select(
    path: Path, _mtime_ns: int, _size: int, share: float, shots: int, seed: int
) -> HeldOut | HoldoutError:
    # Keyed by position, as the records reach the pass (TextRecord.index): ids may repeat.
    by_label: dict[bool, list[str]] = {True: [], False: []}
    for record in iter_records(path):
        _, member, _ = read_record(record)
        if member is not None:
            by_label[member].append(str(record.index))
    short = holdout_shortfall({k: len(v) for k, v in by_label.items()}, share, shots)
    if short is not None:
        return HoldoutError(short)
    rng = np.random.default_rng(seed)
    chosen: dict[bool, tuple[str, ...]] = {}
    for label in (True, False):
        ids = by_label[label]
        order = rng.permutation(len(ids))[: holdout_size(len(ids), share, shots)]
        chosen[label] = tuple(ids[i] for i in order)
    wanted = set(chosen[True]) | set(chosen[False])
    texts = {str(r.index): read_record(r)[0] for r in iter_records(path) if str(r.index) in wanted}
    return HeldOut(chosen[True], chosen[False], texts, shots)


def select_reference(path: Path, shots: int, seed: int, members_needed: bool) -> HeldOut:
    """Prefixes and frequencies from a reference corpus: its `member: true` records give the
    member prefix (Con-ReCall), the others (false or unlabelled) the non-member prefix; every
    record counts towards the frequencies (cached per file version)."""
    stat = path.stat()
    return _raised(_reference(path, stat.st_mtime_ns, stat.st_size, shots, seed, members_needed))


@lru_cache(maxsize=4)
def _reference(
    path: Path, _mtime_ns: int, _size: int, shots: int, seed: int, members_needed: bool
) -> HeldOut | HoldoutError:
    texts: dict[str, str] = {}
    by_label: dict[bool, list[str]] = {True: [], False: []}
    for record in iter_records(path):
        text, member, _ = read_record(record)
        key = f"{record.index}"  # the corpus's positions: its ids may repeat the dataset's
        texts[key] = text
        by_label[member is True].append(key)
    needs = {False: "non-member (false or unlabelled)"}
    if members_needed:
        needs[True] = "`member: true`"
    rng = np.random.default_rng(seed)
    chosen: dict[bool, tuple[str, ...]] = {True: (), False: ()}
    for label, words in needs.items():
        ids = by_label[label]
        if len(ids) < shots:
            return HoldoutError(
                f"the reference corpus has {len(ids)} {words} records, fewer than shots={shots}: "
                "add records to it, lower shots"
                + (", or drop con_recall from scores" if label else "")
            )
        chosen[label] = tuple(ids[i] for i in rng.permutation(len(ids))[:shots])
    return HeldOut(chosen[True], chosen[False], texts, shots, external=True)
