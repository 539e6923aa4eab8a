"""Diffusion models: classifier-free guidance's attraction basin, its mitigations, and the
local intrinsic dimension of memorized images."""

from core.check_kinds import Family
from worker.checks.diffusion.kinds import CFG_BASIN, CFG_MITIGATION, LID

FAMILY = Family(
    name="diffusion",
    kinds=(CFG_BASIN, CFG_MITIGATION, LID),
    shard_pass="worker.checks.diffusion.passes:open_pass",
    report="worker.checks.diffusion.report:REPORT",
    description=__doc__ or "",
    position=50,
)
