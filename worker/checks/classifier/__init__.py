"""Classifiers and encoders (and causal LMs read as one): information diversity by layer,
per-example memorization proxies, and capacity bounds."""

from core.check_kinds import Family
from worker.checks.classifier.kinds import CAPACITY, DIVERSITY, PROXIES

FAMILY = Family(
    name="classifier",
    kinds=(DIVERSITY, PROXIES, CAPACITY),
    shard_pass="worker.checks.classifier.passes:open_pass",
    report="worker.checks.classifier.report:REPORT",
    description=__doc__ or "",
    position=20,
)
