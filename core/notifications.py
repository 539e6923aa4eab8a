"""Notification rules the API and the worker share: what an audit's end tells a channel, and
how a webhook URL is shown (a secret: whoever holds it can post to the room)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from core.config import Settings
from core.models import Audit, AuditStatus, NotificationEvent

VERDICTS = ("pass", "fail", "inconclusive", "unknown")  # reached; anything else is pending
SHOWN_TAIL_CHARS = 4  # enough to tell two channels apart, too few to guess the rest


@dataclass(frozen=True)
class Outcome:
    """What an ended audit tells: the events it is (a channel that takes any of them gets one
    message) and the outcome it is told as (`failed`, or the verdict's status)."""

    events: frozenset[str]
    outcome: str

    @property
    def event(self) -> str:
        """The event the delivery log names: a failure first (it is also the verdict)."""
        if NotificationEvent.AUDIT_FAILED in self.events:
            return NotificationEvent.AUDIT_FAILED
        return NotificationEvent.POLICY_OUTCOME


def audit_outcome(audit: Audit) -> Outcome | None:
    """None while there is nothing to tell: a succeeded audit of no policy, a cancelled one, a
    policy verdict not reached yet (a gate waiting on its baseline)."""
    events = set()
    verdict = (audit.verdict or {}).get("status")
    if audit.policy_id is not None and verdict in VERDICTS:
        events.add(NotificationEvent.POLICY_OUTCOME)
    if audit.status == AuditStatus.FAILED:
        events.add(NotificationEvent.AUDIT_FAILED)
        return Outcome(frozenset(events), AuditStatus.FAILED)
    if not events:
        return None
    return Outcome(frozenset(events), str(verdict))


def masked_url(url: str) -> str:
    """`https://hooks.slack.com/…9xQz`: the scheme and host (never a user or password), and the
    last few characters of the rest only when the rest is long enough to stay secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    tail = rest[-SHOWN_TAIL_CHARS:] if len(rest) >= 5 * SHOWN_TAIL_CHARS else ""
    return f"{parts.scheme}://{host}{port}/…{tail}"


def mail_configured(settings: Settings) -> bool:
    """E-mail channels need the operator's relay and a sender."""
    return bool(settings.smtp_host and settings.smtp_from)


def recipients_outside(recipients: list[str], domains: list[str]) -> list[str]:
    """The recipients whose domain is none of `domains` nor a subdomain of one (none when no
    domain is set): the operator's relay mails only where the operator allows, not wherever a
    submit key names."""
    if not domains:
        return []
    outside = []
    for recipient in recipients:
        domain = recipient.rsplit("@", 1)[-1].lower().rstrip(".")
        if not any(domain == allowed or domain.endswith("." + allowed) for allowed in domains):
            outside.append(recipient)
    return outside
