"""Two audits of one dataset written straight to the database with chosen values, so every
membership threshold and per-record change between them is known exactly (no model run)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from core.models import DEFAULT_TEAM, Audit, AuditStatus, SampleResult
from worker.checks.registry import REGISTRY
from worker.shard_store import result_row

CHECKS = [
    {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
    # Five scores: minkpp_0.2 is no records-table column (four are) and mink_0.2 has a dot in
    # its key, so both are read from the JSON; loss and zlib from their sort columns.
    {"kind": "membership", "params": {"scores": ["loss", "zlib", "mink", "lowercase", "minkpp"]}},
]
SCORES = (
    "loss",
    "zlib",
    "mink_0.2",
    "minkpp_0.2",
)  # the scores the summaries name, so the ones compared
SHA = "a" * 64
N_NONMEMBERS = 200  # ⌊200/100⌋ = 2 non-members may lie above a 1% FPR threshold


def write_audit(
    db,
    *,
    extracted: dict[int, bool | None],
    scores: dict[int, tuple[float | None, bool]],
    status: str = AuditStatus.SUCCEEDED,
    sha: str = SHA,
    team_id: str = DEFAULT_TEAM,
) -> str:
    """One audit of records 0..n-1: `extracted` per record (None: skipped), `scores` the loss
    score and member label per record (zlib = loss / 10, the others = loss)."""
    parsed = REGISTRY.parse_checks(CHECKS)
    audit = Audit(
        team_id=team_id,
        status=status,
        model_uri="path:/models/lm",
        model_family="path:/models/lm",
        dataset_uri="dataset:ds",
        dataset_sha256=sha,
        n_samples=len(scores),
        checks=[{"kind": k.name, "params": p.model_dump(mode="json")} for k, p in parsed],
        summary={"membership": {"scores": {key: {} for key in SCORES}}, "extraction": {}},
    )
    with db.session() as session:
        session.add(audit)
        session.flush()
        audit_id = audit.id
    rows = []
    for index, (loss, member) in scores.items():
        sample_id = f"rec-{index:04d}"
        flag = extracted.get(index, False)
        extraction = {"member": member} if flag is None else {"greedy_extracted": flag}
        membership: dict[str, Any] = {"member": member, "loss": loss}
        membership["zlib"] = None if loss is None else loss / 10
        membership |= {"mink_0.2": loss, "lowercase": loss, "minkpp_0.2": loss}
        for (kind, params), values in zip(parsed, (extraction, membership), strict=True):
            rows.append(result_row(audit_id, kind, params, index, sample_id, values))
    with db.session() as session:
        session.execute(insert(SampleResult.__table__), rows)
    return audit_id


def nonmembers(scale: float) -> dict[int, tuple[float, bool]]:
    return {i: (i * scale, False) for i in range(N_NONMEMBERS)}


def seed_pair(db) -> tuple[str, str]:
    """Candidate and baseline: thresholds 197 and 394 (the 3rd largest of each audit's 200
    non-member scores 0..199 and 0..398), and one record of each change kind."""
    candidate = write_audit(
        db,
        extracted={5: True, 6: True, 7: False, 8: True},
        scores={**nonmembers(1), 200: (197.0, True), 201: (197.5, True), 202: (500.0, True)},
    )
    baseline = write_audit(
        db,
        extracted={5: False, 6: True, 7: True, 8: None},  # 8 skipped: no change counted
        scores={**nonmembers(2), 200: (395.0, True), 201: (394.0, True), 202: (500.0, True)},
    )
    return candidate, baseline


# (kind, metric, sample_index) of every change of seed_pair, in the API's order.
EXPECTED = [
    ("newly_extractable", "greedy_extracted", 5),
    ("no_longer_extractable", "greedy_extracted", 7),
    ("newly_above_threshold", "loss", 201),
    ("newly_above_threshold", "zlib", 201),
    ("newly_above_threshold", "mink_0.2", 201),
    ("newly_above_threshold", "minkpp_0.2", 201),
    ("no_longer_above_threshold", "loss", 200),
    ("no_longer_above_threshold", "zlib", 200),
    ("no_longer_above_threshold", "mink_0.2", 200),
    ("no_longer_above_threshold", "minkpp_0.2", 200),
]
