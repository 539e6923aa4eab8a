"""Finished audits with realistic rows and summaries, written straight to the database.

The bench needs a million rows in minutes and the page tests need audits in every state without
a model run; both get rows shaped exactly as the worker writes them (through `result_row`)
and summaries from the real check summarizers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from core.db import Database, utcnow
from core.model_identity import family_and_version
from core.models import Audit, AuditStatus, SampleResult
from worker.checks.registry import REGISTRY
from worker.engine.extraction import n_min
from worker.finalize import row_counts
from worker.shard_store import result_row


def audit_checks(bootstrap: int = 100) -> list[dict[str, Any]]:
    return [
        {"kind": "extraction", "params": {"schemes": [{"temperature": 0}, {"top_k": 40}]}},
        {"kind": "membership", "params": {"bootstrap": bootstrap}},
    ]


SUFFIX = 20


def _extraction(rng: random.Random, member: bool, strength: float) -> dict[str, Any]:
    memorized = member and rng.random() < strength
    log10_pz = 0.0 if memorized else -rng.expovariate(0.15) - (0 if member else 4)
    if rng.random() < 0.2 and not memorized:
        log10_pz = None  # a suffix token outside the top-k
    p_z = 0.0 if log10_pz is None else 10**log10_pz
    ranks = [1 if memorized else rng.choice([1, 1, 2, 3, 8, 70]) for _ in range(SUFFIX)]
    return {
        "greedy_extracted": memorized,
        "match_prefix_len": SUFFIX
        if memorized
        else ranks.index(next(r for r in ranks if r > 1))
        if any(r > 1 for r in ranks)
        else SUFFIX,
        "tf_match_fraction": sum(r == 1 for r in ranks) / SUFFIX,
        "min_margin": rng.uniform(0, 5),
        "log10_pz": {"greedy": 0.0 if memorized else None, "topk40_T1": log10_pz},
        "n_min": {
            "greedy": {f"{p:g}": 1 if memorized else None for p in (0.1, 0.5, 0.9, 0.99, 0.999)},
            "topk40_T1": {f"{p:g}": n_min(p_z, p) for p in (0.1, 0.5, 0.9, 0.99, 0.999)},
        },
        "first_filtered_pos": {"greedy": None, "topk40_T1": None},
        "nucleus_fragile": {"greedy": False, "topk40_T1": False},
        "n_windows": 1,
        "n_windows_extracted": int(memorized),
        "best_window_offset": 0,
        "member": member,
        "detail": {
            "offset": 0,
            "prefix": "My card number is ",
            "tokens": [f" tok{i}" for i in range(SUFFIX)],
            "ranks": ranks,
            "logprobs": [round(-math.log(r) - rng.random(), 5) for r in ranks],
        },
    }


def _membership(rng: random.Random, member: bool, strength: float) -> dict[str, Any]:
    shift = strength if member else 0.0
    loss = -rng.gauss(2.5 - 2 * shift, 0.5)
    return {
        "loss": loss,
        "zlib": loss / rng.uniform(40, 60),
        "mink_0.2": loss - rng.uniform(1, 2),
        "minkpp_0.2": rng.gauss(-1 + 2 * shift, 0.4),
        "n_scored": 40,
        "truncated": False,
        "flags": [],
        "member": member,
    }


VALUE_MAKERS = {"extraction": _extraction, "membership": _membership}


def sample_rows(
    audit_id: str, checks: list[dict[str, Any]], n: int, strength: float, seed: int = 0
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(row for the table, values for the summarizer) per check per sample."""
    rng = random.Random(seed)
    parsed = REGISTRY.parse_checks(checks)
    for index in range(n):
        member = index % 2 == 0
        for kind, params in parsed:
            values = VALUE_MAKERS[kind.name](rng, member, strength)
            row = result_row(audit_id, kind, params, index, f"rec-{index:07d}", values)
            yield row, row["values_json"]


def seed_audit(
    db: Database,
    n_samples: int,
    *,
    model_uri: str = "mlflow:models:/support-bot/1",
    status: str = AuditStatus.SUCCEEDED,
    strength: float = 0.6,
    error: str | None = None,
    labels: dict[str, str] | None = None,
    created_offset_s: float = 0.0,
    seed: int = 0,
    bootstrap: int = 100,
    batch: int = 5000,
) -> str:
    """Write one audit and its rows; returns its id. Summaries come from the real summarizers."""
    labels = labels or {}
    checks = audit_checks(bootstrap)
    family, version = family_and_version(model_uri, labels)
    created = utcnow() - timedelta(seconds=created_offset_s)
    audit = Audit(
        status=AuditStatus.RUNNING if status == AuditStatus.SUCCEEDED else status,
        model_uri=model_uri,
        model_family=family,
        model_version=version,
        dataset_uri="dataset:ds_bench",
        dataset_sha256="0" * 64,
        n_samples=n_samples,
        checks=[
            {"kind": kind.name, "params": params.model_dump(mode="json")}
            for kind, params in REGISTRY.parse_checks(checks)
        ],
        labels=labels,
        error=error,
        summary={},
        provenance={"code_version": "bench", "devices": ["cpu"], "n_tokens": n_samples * 100},
        created_at=created,
        started_at=created,
        finished_at=created + timedelta(seconds=30) if status != AuditStatus.RUNNING else None,
    )
    with db.session() as session:
        session.add(audit)
        session.flush()
        audit_id = audit.id
    values: dict[str, list[dict[str, Any]]] = {entry["kind"]: [] for entry in checks}
    pending: list[dict[str, Any]] = []
    for row, row_values in sample_rows(audit_id, checks, n_samples, strength, seed):
        values[row["check"]].append(row_values)
        pending.append(row)
        if len(pending) >= batch:
            _insert(db, pending)
            pending = []
    _insert(db, pending)
    if status == AuditStatus.SUCCEEDED:
        summary = {
            kind.name: kind.summarize(values[kind.name], params)
            for kind, params in REGISTRY.parse_checks(checks)
        }
        with db.session() as session:
            row = session.get(Audit, audit_id)
            row.summary = summary
            row.row_counts = {check: row_counts(rows) for check, rows in values.items()}
            row.status = status
    return audit_id


def _insert(db: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        with db.session() as session:
            session.execute(insert(SampleResult.__table__), rows)
