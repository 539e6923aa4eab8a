"""Each kind's reading of a policy's dataset, through the registry, without a service."""

from __future__ import annotations

import pytest

from core.dataset_profile import profile_dataset
from core.errors import ApiError
from core.policy_fit import fit_warnings
from tests.conftest import write_jsonl
from worker.checks.registry import REGISTRY


def _fit(tmp_path, records: list[dict], checks: list[dict], thresholds: list[dict] | None = None):
    path = write_jsonl(tmp_path / "d.jsonl", records)
    kinds = [REGISTRY.get_check(c["kind"]) for c in checks]
    fields = {name for kind in kinds for name in kind.required_fields}
    readers = {kind.name: kind.check_record for kind in kinds if kind.check_record}
    profile = profile_dataset(path, len(records), fields, readers)
    return fit_warnings(REGISTRY, checks, thresholds or [], profile)


@pytest.mark.parametrize(
    ("kind", "records", "expected"),
    [
        (  # the classifier pass reads a label wherever there is one
            "proxies",
            [{"features": [0.1], "label": 1}, {"features": [0.2], "label": "cat"}],
            "a worker cannot read 1 of 2 records (line 2: field 'label' must be a non-negative "
            "integer)",
        ),
        (
            "unlearning",
            [{"features": [0.1], "label": 0, "split": "holdout"}],
            "line 1: field 'split' must be one of ['forget', 'retain', 'test']",
        ),
        (
            "loss",
            [{"text": "fine"}, {"text": 7}],
            "a worker cannot read 1 of 2 records (line 2: field 'text' must be a string)",
        ),
    ],
)
def test_records_the_kinds_worker_cannot_read_are_refused(tmp_path, kind, records, expected):
    with pytest.raises(ApiError) as refused:
        _fit(tmp_path, records, [{"kind": kind, "params": {}}])
    assert refused.value.code == "dataset_does_not_fit" and expected in refused.value.message


def test_a_group_threshold_needs_records_in_that_group(tmp_path) -> None:
    records = [{"text": "a canary long enough to hold a window " * 2, "member": False}] * 4
    check = [{"kind": "extraction", "params": {"prefix_tokens": 4, "suffix_tokens": 4}}]
    on_members = {"metric": "extraction.members.greedy_extraction_rate", "op": "<=", "value": 0}
    with pytest.raises(ApiError, match="labelled `member: true`, but"):
        _fit(tmp_path, records, check, [on_members])
    on_others = {**on_members, "metric": "extraction.nonmembers.greedy_extraction_rate"}
    assert _fit(tmp_path, records, check, [on_others]) == []
