"""What a causal LM (or a chat endpoint) answers: reasoning memorization under perturbation,
factoid retention across versions, and inductive-logic play (WILT)."""

from core.check_kinds import Family
from worker.checks.reasoning.kinds import KK_MEMORIZATION, RETENTION, WILT

FAMILY = Family(
    name="reasoning",
    kinds=(KK_MEMORIZATION, RETENTION, WILT),
    shard_pass="worker.checks.reasoning.passes:open_pass",
    report="worker.checks.reasoning.report:REPORT",
    description=__doc__ or "",
    position=40,
)
