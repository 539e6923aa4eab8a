"""Machine unlearning: an unlearned classifier against the original and a retrained one. Its
kinds read the models through the classifier family's pass."""

from core.check_kinds import Family
from worker.checks.unlearning.kinds import UNLEARNING

FAMILY = Family(
    name="unlearning",
    kinds=(UNLEARNING,),
    shard_pass="worker.checks.classifier.passes:open_pass",
    report="worker.checks.unlearning.report:REPORT",
    description=__doc__ or "",
    position=30,
)
