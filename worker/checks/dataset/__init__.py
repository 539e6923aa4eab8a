"""Dataset audits: memorization risk read from a training corpus alone, before (or without) any
model. Each kind runs without a model (`"model": null`); given one, it reads only the model's
tokenizer. Per-record answers that depend on the whole corpus come from artefacts built once
per corpus per host (`artefacts.py`)."""

from core.check_kinds import Family
from worker.checks.dataset.kinds import CONTAMINATION, DUPLICATION, NEAR_DUPLICATES, PII

FAMILY = Family(
    name="dataset",
    kinds=(DUPLICATION, NEAR_DUPLICATES, PII, CONTAMINATION),
    shard_pass="worker.checks.dataset.passes:open_pass",
    report="worker.checks.dataset.report:REPORT",
    description=__doc__ or "",
    position=60,
)
