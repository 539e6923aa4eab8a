"""Causal LMs: per-record loss, discoverable and (n,p)-discoverable extraction, and membership
scores, all from teacher-forced passes the family's kinds share."""

from core.check_kinds import Family
from worker.checks.lm.approximate import APPROXIMATE
from worker.checks.lm.coverage import COVERAGE
from worker.checks.lm.finetune import FINETUNE
from worker.checks.lm.kinds import EXTRACTION, LOSS, MEMBERSHIP

FAMILY = Family(
    name="lm",
    kinds=(LOSS, EXTRACTION, MEMBERSHIP, APPROXIMATE, COVERAGE, FINETUNE),
    shard_pass="worker.checks.lm.passes:open_pass",
    report="worker.checks.lm.report:REPORT",
    description=__doc__ or "",
    position=10,
)
