"""Does a policy fit its dataset? Checked when the policy is created or changed, before any
model version arrives: what would make every one of its audits fail or end `unknown` is a 422
that says what to change; what would only leave some records out is a warning on the policy.

Each kind says what it needs of the records (`CheckKind.fit`); what holds for every kind (a
required field in every record, a threshold on a check the policy runs) is checked here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.check_kinds import Catalog, CheckKind, FitContext
from core.config import Settings
from core.dataset_profile import DatasetProfile, profile_dataset
from core.errors import ApiError
from core.inspection.datasets import DatasetError, open_dataset, uploaded_dataset_path
from core.submission import ResolvedDataset
from core.tenancy import Owner


def read_profile(
    settings: Settings,
    owner: Owner,
    dataset: ResolvedDataset,
    catalog: Catalog,
    checks: Sequence[Mapping[str, Any]],
) -> DatasetProfile:
    """One bounded pass over the dataset `resolve_dataset` found (an upload of the owner's
    team, or a file beneath its data folders), counting the fields the checks require and
    running their kinds' record readers."""
    kinds = [catalog.get_check(check["kind"]) for check in checks]
    fields = sorted({name for kind in kinds for name in kind.required_fields})
    readers = {kind.name: kind.check_record for kind in kinds if kind.check_record is not None}

    def upload(_dataset_id: str) -> Path:  # resolve_dataset found it among the team's
        return uploaded_dataset_path(settings.datasets_dir, dataset.sha256)

    roots = owner.grants.data_roots(settings)
    try:
        with open_dataset(dataset.uri, upload, roots, settings.file_rules) as path:
            return profile_dataset(path, dataset.n_records, fields, readers)
    except (FileNotFoundError, PermissionError, DatasetError) as exc:  # a line a worker refuses
        raise ApiError(422, "invalid_dataset", f"{dataset.uri}: {exc}") from None


def _records_read(profile: DatasetProfile) -> str:
    if profile.complete:
        return f"{profile.n_records:,} records"
    return f"the first {profile.n_parsed:,} of {profile.n_records:,} records"


def _missing_fields(kind: CheckKind, profile: DatasetProfile) -> list[str]:
    """A worker reads each required field of every record and fails the audit on the first
    record without one."""
    found = []
    for name in kind.required_fields:
        missing = profile.missing.get(name, 0)
        if missing:
            found.append(
                f"it reads field {name!r} of every record, but {missing:,} of "
                f"{_records_read(profile)} have none (the first on line "
                f"{profile.first_missing_line[name]}): add it to those records, or leave them out"
            )
    return found


def _unreadable(kind: CheckKind, profile: DatasetProfile) -> list[str]:
    """Records the kind's worker-side reader refuses: the first fails the audit."""
    count = profile.unreadable.get(kind.name, 0)
    if not count:
        return []
    first = profile.first_unreadable[kind.name]
    return [
        f"a worker cannot read {count:,} of {_records_read(profile)} ({first}): mend those "
        "records, or leave them out"
    ]


def _kinds_read(thresholds: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Threshold metric names by the check kind whose summary they read."""
    found: dict[str, list[str]] = {}
    for rule in thresholds:
        found.setdefault(rule["metric"].partition(".")[0], []).append(rule["metric"])
    return found


def fit_warnings(
    catalog: Catalog,
    checks: Sequence[Mapping[str, Any]],
    thresholds: Sequence[Mapping[str, Any]],
    profile: DatasetProfile,
) -> list[dict[str, str]]:
    """The policy's warnings (`{"source": "dataset", "check", "message"}`); an ApiError (422)
    where a check cannot work on the dataset, or a threshold can never be read."""
    run = [check["kind"] for check in checks]
    metrics = _kinds_read(thresholds)
    for kind_name, names in metrics.items():
        if kind_name not in run:
            raise ApiError(
                422,
                "threshold_without_check",
                f"threshold {names[0]} reads the {kind_name!r} check, which this policy does "
                f"not run ({', '.join(run)}): add that check, or drop the threshold",
            )
    warnings: list[dict[str, str]] = []
    for check in checks:
        kind = catalog.get_check(check["kind"])
        params = kind.parse_params(check["params"])
        refusals = _missing_fields(kind, profile) or _unreadable(kind, profile)
        if kind.fit is not None:
            found = kind.fit(params, FitContext(profile, tuple(metrics.get(kind.name, ()))))
            refusals += found.refusals
            warnings += [
                {"source": "dataset", "check": kind.name, "message": text}
                for text in found.warnings
            ]
        if refusals:
            raise ApiError(
                422,
                "dataset_does_not_fit",
                f"check {kind.name!r} cannot run on this dataset: " + "; ".join(refusals),
                {"check": kind.name, "problems": refusals},
            )
    return warnings
