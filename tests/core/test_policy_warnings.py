"""What an audit leaves on its policy: the records its model could not score, per model."""

from __future__ import annotations

from core.models import Audit, AuditPolicy
from core.policies import MAX_AUDIT_WARNINGS, audit_warnings

CHECKS = [{"kind": "extraction", "params": {"prefix_tokens": 30, "suffix_tokens": 30}}]
DATASET = "dataset:ds_0123456789abcdef01234567"
FROM_DATA = {"source": "dataset", "check": "extraction", "message": "3 of 51 records ..."}


def _policy(warnings: list[dict]) -> AuditPolicy:
    return AuditPolicy(checks=CHECKS, dataset_uri=DATASET, warnings=warnings)


def _audit(audit_id: str, model: str, checks: list[dict] = CHECKS) -> Audit:
    return Audit(
        id=audit_id,
        model_uri=f"mlflow:models:/{model}/1",
        model_family=f"mlflow:models:/{model}",
        dataset_uri=DATASET,
        checks=checks,
    )


def test_each_model_keeps_its_latest_audits_warning_beside_the_datasets() -> None:
    unfit = {"extraction": {"unfit": "48 of 48 records shorter than prefix+suffix ..."}}
    first = audit_warnings(_policy([FROM_DATA]), _audit("a1", "bot"), unfit)
    assert first == [
        FROM_DATA,
        {
            "source": "audit",
            "check": "extraction",
            "message": unfit["extraction"]["unfit"],
            "model": "mlflow:models:/bot",
            "model_uri": "mlflow:models:/bot/1",
            "audit_id": "a1",
        },
    ]
    other = audit_warnings(_policy(first), _audit("a2", "other-bot"), unfit)
    assert [w.get("audit_id") for w in other] == [None, "a1", "a2"]
    # The next audit of `bot` scores every record: its warning goes, the other model's stays.
    cleared = audit_warnings(_policy(other), _audit("a3", "bot"), {"extraction": {"n": 48}})
    assert [w.get("audit_id") for w in cleared] == [None, "a2"]
    # An audit of checks the policy no longer runs says nothing about it.
    stale = _audit("a4", "bot", [{"kind": "extraction", "params": {}}])
    assert audit_warnings(_policy(cleared), stale, unfit) == cleared


def test_warnings_from_audits_are_bounded() -> None:
    unfit = {"extraction": {"unfit": "1 of 48 records shorter ..."}}
    warnings: list[dict] = [FROM_DATA]
    for i in range(MAX_AUDIT_WARNINGS + 5):
        warnings = audit_warnings(_policy(warnings), _audit(f"a{i}", f"bot-{i}"), unfit)
    assert len(warnings) == MAX_AUDIT_WARNINGS + 1 and warnings[0] == FROM_DATA
    assert warnings[-1]["audit_id"] == f"a{MAX_AUDIT_WARNINGS + 4}"
