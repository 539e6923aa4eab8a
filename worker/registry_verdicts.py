"""What a registry's model version says about memorization, and making the registry say it.

`verdict_tags` is the version's `memaudit.*` tags as the database has them now, whichever of its
audits asks: each matching policy's verdict on it (`memaudit.<policy>.*`, from that policy's
newest audit of it that counts, `pending` while that one runs), the aggregate over them
(`memaudit.verdict`, `memaudit.promotion`, the worst once all have ended) and the newest reached
verdict's audit id, report link and headline numbers.

Being a function of the database alone, it is what every write-back of a version agrees on,
however they race: a candidate's write-back that read the database before its baseline's end
reached its verdict, and wrote after the one that read it after; a retried write-back of an
older audit; W&B's whole-metadata save putting back what another worker's save replaced.
`write_settled` writes it, reads the registry back and writes again until the registry holds
it, so whichever write-back writes last also reads last, and the version ends as the database
says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.baselines import BASELINE_LABEL
from core.config import Settings
from core.db import Database
from core.models import Audit, AuditPolicy, AuditStatus
from core.policies import idempotency_key, matching_policies
from core.verdicts import BASELINE, metric_value, worst

MAX_TAG_VALUE = 5000  # a reason is a line or two; MLflow accepts up to 100,000 characters
HEADLINE_TAGS = {
    "memaudit.greedy_extraction_rate": "extraction.greedy_extraction_rate",
    "memaudit.best_membership_auc": "membership.best.auc",
    "memaudit.mean_loss": "loss.mean_loss",
}
# What every policy's verdict on a version adds up to: the worst of their latest audits'
# verdicts, once all of them have ended (worst first: fail, unknown/error, inconclusive, pass),
# and promotion allowed only where every policy allows it.
AGGREGATE_TAGS = ("memaudit.verdict", "memaudit.promotion", "memaudit.verdict_reason")
TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
POLICY_FIELDS = ("verdict", "promotion", "audit_id", "verdict_reason", "explanation")
REACHED_TAGS = ("memaudit.status", "memaudit.audit_id", "memaudit.report_url")
# Rounds of write, read back, compare: two suffice unless the database keeps changing under the
# write-back, which then fails and is retried by its task.
SETTLE_ROUNDS = 4


def version_tags(audit: Audit, settings: Settings) -> dict[str, str]:
    """The tags one finished audit's own verdict and numbers make."""
    verdict = (audit.verdict or {}).get("status") or (
        "error" if audit.status == AuditStatus.FAILED else "none"
    )
    tags = {
        "memaudit.verdict": verdict,
        # What a promotion gate acts on: only `allowed` lets a version through.
        "memaudit.promotion": (audit.verdict or {}).get("promotion") or "blocked",
        "memaudit.status": audit.status,
        "memaudit.audit_id": audit.id,
        "memaudit.report_url": f"{settings.public_url.rstrip('/')}/audits/{audit.id}",
    }
    # Why a verdict is `unknown` (`unknown: 48 of 48 records shorter than prefix+suffix ...`),
    # cut to a bounded length.
    reason = (audit.verdict or {}).get("reason")
    if reason:
        tags["memaudit.verdict_reason"] = str(reason)[:MAX_TAG_VALUE]
    for tag, metric in HEADLINE_TAGS.items():
        value = metric_value(audit.summary or {}, metric)
        if value is not None:
            tags[tag] = f"{value:.6g}"
    return tags


def policy_tag(policy: str, field: str) -> str:
    """`memaudit.<policy>.<field>`: one policy's own tag, in MLflow's tag-key alphabet."""
    return f"memaudit.{TAG_UNSAFE.sub('_', policy)}.{field}"


def policy_tags(audit: Audit, policy: str, own: Mapping[str, str]) -> dict[str, str]:
    """This policy's verdict on the version, beside the other policies' (never replacing them):
    verdict, promotion, audit id, and why (an `unknown`'s reason, each relative condition's
    sentence)."""
    tags = {
        policy_tag(policy, "verdict"): own["memaudit.verdict"],
        policy_tag(policy, "promotion"): own["memaudit.promotion"],
        policy_tag(policy, "audit_id"): audit.id,
    }
    if "memaudit.verdict_reason" in own:
        tags[policy_tag(policy, "verdict_reason")] = own["memaudit.verdict_reason"]
    explanation = (audit.verdict or {}).get("explanation")
    if explanation:
        tags[policy_tag(policy, "explanation")] = str(explanation)[:MAX_TAG_VALUE]
    return tags


def only_baseline(audit: Audit) -> bool:
    """Started only to serve as another version's baseline, under a key of its own (the
    version's own key was taken by an earlier audit of the policy): its verdict is not the
    version's and never replaces the one that audit left."""
    return (
        BASELINE_LABEL in (audit.labels or {})
        and audit.policy_id is not None
        and audit.model_uri is not None
        and audit.idempotency_key != idempotency_key(audit.policy_id, audit.model_uri)
    )


def judges_version(audit: Audit) -> bool:
    """Whether this audit's verdict is its version's under its policy: not when it judged
    nothing (`baseline`: its conditions all compare with the baseline, which it is itself),
    nor when it only served as a baseline."""
    return (audit.verdict or {}).get("status") != BASELINE and not only_baseline(audit)


def _counts(audit: Audit) -> bool:
    """Whether its policy's verdict on the version is this audit's: one still running counts
    (the verdict is pending), unless it only serves as a baseline; an ended one counts when it
    judged the version."""
    if audit.status not in AuditStatus.FINAL:
        return not only_baseline(audit)
    return judges_version(audit)


def reached_audit(audits: Iterable[Audit]) -> Audit | None:
    """The audit whose numbers and report the version shows: the newest ended one whose verdict
    is the version's and reached (not waiting for its baseline); failing that, the newest ended
    one that judged nothing (a champion's first audit, its own baseline)."""
    ended = sorted(
        (
            a
            for a in audits
            if a.status in AuditStatus.FINAL and not a.verdict_pending and not only_baseline(a)
        ),
        key=lambda a: (a.finished_at or a.created_at, a.created_at, a.id),
        reverse=True,
    )
    return next((a for a in ended if judges_version(a)), ended[0] if ended else None)


def _status_of(audit: Audit) -> str:
    verdict = audit.verdict or {}
    return verdict.get("status") or ("error" if audit.status == AuditStatus.FAILED else "none")


def _policy_name(session: Session, audit: Audit) -> str:
    policy = session.get(AuditPolicy, audit.policy_id) if audit.policy_id else None
    return policy.name if policy else (audit.labels or {}).get("policy", audit.policy_id or "")


def _aggregate(current: Mapping[str, Audit], policies: Mapping[str, str]) -> dict[str, str]:
    """The worst of the policies' current verdicts; `pending` (promotion `blocked`) while one of
    them has not ended or its verdict still waits for its baseline, so an earlier aggregate never
    stands for a re-audit under way; `baseline` when no audit of the version judged it."""
    waiting = [
        f"{policies[policy_id]}'s audit {a.id}"
        for policy_id, a in current.items()
        if a.status not in AuditStatus.FINAL or a.verdict_pending
    ]
    if waiting:
        return {
            "memaudit.verdict": "pending",
            "memaudit.promotion": "blocked",
            "memaudit.verdict_reason": f"waiting for {', '.join(waiting)}"[:MAX_TAG_VALUE],
        }
    if not current:
        return {
            "memaudit.verdict": BASELINE,
            "memaudit.promotion": "blocked",
            "memaudit.verdict_reason": "no policy judged this version: it is its own baseline",
        }
    status = worst([_status_of(a) for a in current.values()])
    allowed = all((a.verdict or {}).get("promotion") == "allowed" for a in current.values())
    tags = {"memaudit.verdict": status, "memaudit.promotion": "allowed" if allowed else "blocked"}
    reasons = dict.fromkeys(
        str((a.verdict or {}).get("reason") or (a.verdict or {}).get("explanation") or "")
        for a in current.values()
        if _status_of(a) == status and status != "pass"
    )
    reasons.pop("", None)
    if reasons:
        tags["memaudit.verdict_reason"] = "; ".join(reasons)[:MAX_TAG_VALUE]
    return tags


def verdict_tags(
    session: Session, settings: Settings, audit: Audit, source: str, name: str
) -> tuple[dict[str, str], list[str]]:
    """The tags the registry's version of `audit` must hold now, and the optional ones to remove
    where an earlier state left them: the same answer for every audit of the version. The
    policies are those matching the version now; one that audited it and no longer matches
    (disabled, its pattern changed) no longer gates it, and its tags are removed."""
    policies = {p.id: p.name for p in matching_policies(session, source, name)}
    by_policy: dict[str, list[Audit]] = {}
    for found in session.scalars(
        select(Audit)
        .where(Audit.model_uri == audit.model_uri, Audit.policy_id.is_not(None))
        .order_by(Audit.created_at.desc(), Audit.id.desc())
    ):
        if not only_baseline(found):
            by_policy.setdefault(found.policy_id or "", []).append(found)
    tags: dict[str, str] = {}
    optional = ["memaudit.verdict_reason"]
    for policy_id, audits in by_policy.items():
        if policy_id not in policies:
            dropped = _policy_name(session, audits[0])
            optional += [policy_tag(dropped, field) for field in POLICY_FIELDS]
    current: dict[str, Audit] = {}
    for policy_id, policy in policies.items():
        own = by_policy.get(policy_id, [])
        optional += [policy_tag(policy, "verdict_reason"), policy_tag(policy, "explanation")]
        counting = next((a for a in own if _counts(a)), None)
        if counting is not None:
            current[policy_id] = counting
        # An audit that judged nothing leaves the policy's earlier verdict standing; with none
        # earlier, the version says it was not judged (`baseline`).
        shown = counting or next((a for a in own if a.status in AuditStatus.FINAL), None)
        if shown is None:
            continue
        if shown.status not in AuditStatus.FINAL:
            tags[policy_tag(policy, "verdict")] = "pending"
            tags[policy_tag(policy, "promotion")] = "blocked"
        else:
            tags.update(policy_tags(shown, policy, version_tags(shown, settings)))
    # With no reached verdict among the matching policies (the only one was a policy's that no
    # longer matches), the version names no audit's numbers or report.
    optional += [*REACHED_TAGS, *HEADLINE_TAGS]
    reached = reached_audit(a for policy_id in policies for a in by_policy.get(policy_id, []))
    if reached is not None:
        shown_numbers = version_tags(reached, settings)
        tags.update({k: v for k, v in shown_numbers.items() if k not in AGGREGATE_TAGS})
    tags.update(_aggregate(current, policies))
    return tags, [key for key in optional if key not in tags]


def write_settled(
    db: Database,
    settings: Settings,
    audit_id: str,
    source: str,
    name: str,
    read: Callable[[], Mapping[str, Any]],
    write: Callable[[dict[str, str], list[str]], None],
) -> dict[str, str]:
    """Make the registry's version (`read` gives its tags, `write` sets some and removes
    others) hold `verdict_tags` as the database has them now: read back after each write, and
    write what differs again. {} when the audit is gone."""
    for round_ in range(SETTLE_ROUNDS + 1):
        with db.session() as session:
            audit = session.get(Audit, audit_id)
            if audit is None:
                return {}
            tags, optional = verdict_tags(session, settings, audit, source, name)
        present = read()
        changed = {key: value for key, value in tags.items() if present.get(key) != value}
        stale = [key for key in optional if key in present]
        if not changed and not stale:
            return tags
        if round_ == SETTLE_ROUNDS:
            break
        write(changed, stale)
    raise RuntimeError(
        f"the memaudit tags of {name} kept changing under the write-back of audit {audit_id}"
    )
