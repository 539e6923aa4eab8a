"""Evidence packs: what one finished audit measured, how, on what and by which code, signed
with the service's active Ed25519 key so an outside auditor can check it and cannot forge it.

The payload carries figures, readings and hashes, never record text: the full summary (with its
exemplars) stays behind the API and is bound to the pack by its RFC 8785 sha256.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

import core
from app.dashboard.headline import headlines
from app.evidence.controls import control_map, role_of
from app.findings import audit_findings
from core.config import Settings
from core.db import finite_only
from core.errors import ApiError
from core.evidence_keys import KeyStore, KeyStoreError
from core.models import Audit, AuditPolicy, AuditStatus, Team
from core.signing import canonical_sha256, fingerprint, sign_payload
from worker.checks.registry import REGISTRY

log = logging.getLogger(__name__)
SCHEMA = "memaudit.evidence/v1"
STATEMENT = (
    "This pack records what one memaudit audit measured, how, and on which model and data. It "
    "certifies no compliance: each control entry lists the items an auditor can cite for it and "
    "what the control asks that this audit does not show."
)
# Readings of a membership summary worth an auditor's eye; the rest (histograms) stays behind.
SCORE_FIELDS = ("auroc", "tpr_at_0.01_fpr", "tpr_at_0.001_fpr", "reading", "margin_over_blind")
BLIND_FIELDS = (
    "reading", "reason", "auroc", "tpr_at_0.01_fpr", "n_members", "n_nonmembers", "method",
    "warnings",
)  # fmt: skip
INFERENCE_FIELDS = ("p_value", "t", "df", "n_suspect", "n_validation", "skipped")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _pick(entry: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: entry[name] for name in fields if entry.get(name) is not None}


def _methods(audit: Audit) -> list[dict[str, Any]]:
    """Each check as run: its kind, parameters, description and the works its metrics cite."""
    methods = []
    for entry in audit.checks:
        kind = REGISTRY.kinds.get(entry["kind"])
        methods.append(
            {
                "kind": entry["kind"],
                "role": role_of(entry["kind"]),
                "params": entry.get("params", {}),
                "description": kind.description if kind else None,
                "citations": sorted({m.citation for m in kind.metrics if m.citation})
                if kind
                else [],
            }
        )
    return methods


def _readings(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The membership family's readings (blind baseline, per-score, dataset inference)."""
    membership = summary.get("membership")
    if not isinstance(membership, Mapping):
        return {}
    found: dict[str, Any] = {}
    if isinstance(membership.get("blind_baseline"), Mapping):
        found["blind_baseline"] = _pick(membership["blind_baseline"], BLIND_FIELDS)
    scores = {
        name: _pick(entry, SCORE_FIELDS)
        for name, entry in (membership.get("scores") or {}).items()
        if isinstance(entry, Mapping)
    }
    if scores:
        found["scores"] = scores
    inference = membership.get("dataset_inference")
    if isinstance(inference, Mapping):
        found["dataset_inference"] = _pick(inference, INFERENCE_FIELDS)
        power = inference.get("power") or {}
        if "records_needed_for_p_0.01" in power:
            found["dataset_inference"]["records_needed_for_p_0.01"] = power[
                "records_needed_for_p_0.01"
            ]
    return {"membership": found} if found else {}


def _results(summary: Mapping[str, Any]) -> dict[str, Any]:
    figures = [
        {
            "key": h.key,
            "label": h.label,
            "value": h.value,
            "ci95": list(h.ci95) if h.ci95 else None,
            "percent": h.percent,
            "higher_is_more_memorized": h.higher_is_more_memorized,
            "note": h.note,
        }
        for h in headlines(summary)
    ]
    warnings = {
        kind: list(part["warnings"])
        for kind, part in summary.items()
        if isinstance(part, Mapping) and part.get("warnings")
    }
    try:
        summary_hash: str | None = canonical_sha256(summary)
    except ValueError:  # a non-finite number: the summary has no canonical form to hash
        summary_hash = None
    return {
        "headlines": figures,
        "readings": _readings(summary),
        "warnings": warnings,
        "summary_sha256": summary_hash,
    }


def _sample_sizes(audit: Audit) -> dict[str, Any]:
    counts = audit.row_counts or {}
    return {
        "records": audit.n_samples,
        "per_check": {
            kind: {"rows": c.get("all"), "members": c.get("true"), "nonmembers": c.get("false")}
            for kind, c in counts.items()
        },
    }


def _verdict(session: Session, audit: Audit) -> dict[str, Any] | None:
    if audit.verdict is None:
        return None
    policy = session.get(AuditPolicy, audit.policy_id) if audit.policy_id else None
    return {
        "policy": {"id": audit.policy_id, "name": policy.name if policy else None},
        **audit.verdict,
    }


def require_succeeded(audit: Audit) -> None:
    """A pack states results: a queued, running, failed or cancelled audit has none to state."""
    if audit.status != AuditStatus.SUCCEEDED:
        raise ApiError(
            409,
            "audit_not_finished",
            f"audit {audit.id} is {audit.status}; evidence is issued for a succeeded audit only",
        )


def build_payload(
    session: Session, settings: Settings, audit: Audit, key_id: str, signed_at: datetime
) -> dict[str, Any]:
    """The record of one succeeded audit that the active key signs."""
    require_succeeded(audit)
    team = session.get(Team, audit.team_id)
    provenance = audit.provenance or {}
    methods = _methods(audit)
    results = _results(audit.summary or {})
    results["findings"] = [finding.to_json() for finding in audit_findings(audit)]
    verdict = _verdict(session, audit)
    payload = {
        "schema": SCHEMA,
        "statement": STATEMENT,
        "issuer": {"service": "memaudit", "version": core.__version__, "url": settings.public_url},
        "signed_at": _iso(signed_at),
        "signing_key": key_id,
        "audit": {
            "id": audit.id,
            "team": {"id": audit.team_id, "name": team.name if team else None},
            "status": audit.status,
            "created_by_key": audit.created_by,
            "labels": audit.labels or {},
            "created_at": _iso(audit.created_at),
            "started_at": _iso(audit.started_at),
            "finished_at": _iso(audit.finished_at),
        },
        "subject": {
            "model": {
                "uri": audit.model_uri,
                "sha256": provenance.get("model_sha256"),
                "family": audit.model_family,
                "version": audit.model_version,
            },
            "reference_model_uri": audit.reference_model_uri,
            "dataset": {"uri": audit.dataset_uri, "sha256": audit.dataset_sha256},
        },
        "methods": methods,
        "sample_sizes": _sample_sizes(audit),
        "provenance": provenance,
        "results": results,
        "verdict": verdict,
        "controls": control_map(methods, results["readings"], verdict is not None),
    }
    # Plain JSON: a non-finite number (rows an older SQLite store kept) becomes null.
    return finite_only(payload)


def active_key(store: KeyStore) -> Ed25519PrivateKey:
    """The signing key; an unusable key directory is the operator's to mend (503, logged)."""
    try:
        return store.active_key()
    except (KeyStoreError, OSError) as exc:
        log.error("evidence signing key unusable: %s", exc)
        raise ApiError(
            503,
            "signing_unavailable",
            "the evidence signing key cannot be used just now; the service log says why",
        ) from None


def signed_pack(session: Session, settings: Settings, audit: Audit) -> dict[str, Any]:
    """The envelope, signed now with the active key (made on first use)."""
    require_succeeded(audit)
    private_key = active_key(KeyStore(settings.evidence_keys_dir))
    key_id = fingerprint(private_key.public_key())
    payload = build_payload(session, settings, audit, key_id, datetime.now(UTC))
    return sign_payload(payload, private_key)
