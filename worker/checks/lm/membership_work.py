"""The membership check's own model work over a batch: the held-out records' prefix passes
(ReCaLL, Con-ReCall, DC-PDD: prefix_work.py) and the neighbours' losses (calibration_work.py),
joined into one result per record."""

from __future__ import annotations

from typing import Any

from worker.checks.lm import calibration_work, prefix_work
from worker.checks.lm.kinds import MembershipParams
from worker.checks.lm.passes import KindWork


def membership_work(work: KindWork, params: MembershipParams) -> list[dict[str, Any]]:
    """Per record: what prefix_work found (its held-out role, or its prefix passes) and, when the
    neighbourhood score is wanted, its neighbours' losses."""
    prefixes = prefix_work.prefix_passes(work, params)
    held_out = frozenset(i for i, found in enumerate(prefixes) if "held_out" in found)
    neighbours = calibration_work.neighbour_losses(work, params, held_out)
    return [{**found, **(extra or {})} for found, extra in zip(prefixes, neighbours, strict=True)]
