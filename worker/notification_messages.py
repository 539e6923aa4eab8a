"""What a notification says: one short text per audit outcome, for a chat room and for e-mail.

Pure functions of the audit, its policy's name and the settings. A message leaves the service
for rooms and inboxes that are not the service's to guard, so it holds the outcome, the model,
the verdict's sentence and the report's link, and never a secret: no record text (no exemplar,
no summary), no key, token, password or webhook URL; an audit's error is cut to its first line
and anything that looks like a credential in it is masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.config import Settings
from core.integrations import scrubbed
from core.models import Audit
from core.notifications import Outcome

MAX_ERROR_CHARS = 300
MAX_SENTENCE_CHARS = 1000
MAX_SUBJECT_CHARS = 250
MASK = "***"
# Credentials that have a shape: memaudit keys, Hugging Face tokens, bearer headers.
TOKEN_SHAPES = re.compile(
    r"\bma_[A-Za-z0-9_-]{16,}|\bhf_[A-Za-z0-9]{16,}|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
)
MIN_SECRET_CHARS = 4  # shorter configured values would mask ordinary words


@dataclass(frozen=True)
class Message:
    subject: str
    text: str  # plain text: the e-mail body, and a chat room's `text`
    report_url: str


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold, as it could appear in an error."""
    values = [
        settings.callback_secret,
        settings.mlflow_webhook_secret,
        settings.hf_webhook_secret,
        settings.hf_token,
        settings.chat_endpoint_api_key,
        settings.smtp_user,
        settings.smtp_password,
    ]
    return [value for value in values if len(value) >= MIN_SECRET_CHARS]


def cleaned(text: str, secrets: Iterable[str]) -> str:
    """Text with URL credentials, token-shaped strings and the given secrets masked."""
    for secret in sorted(secrets, key=len, reverse=True):  # a longer one may hold a shorter
        text = text.replace(secret, MASK)
    return TOKEN_SHAPES.sub(MASK, scrubbed(text))


def short_error(error: str | None, secrets: Iterable[str]) -> str:
    """The error's first line, masked, cut short: a traceback's later lines may quote data."""
    lines = (error or "").strip().splitlines()
    first = cleaned(lines[0] if lines else "no error recorded", secrets)
    return first if len(first) <= MAX_ERROR_CHARS else first[: MAX_ERROR_CHARS - 1] + "…"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "not computed"


def verdict_sentence(verdict: Mapping[str, Any]) -> str:
    """The verdict explained: its own sentence (a gate's `explanation`, one per relative
    condition), else why it is unknown, else each condition with its value."""
    if verdict.get("explanation"):
        return str(verdict["explanation"])
    if verdict.get("reason"):
        return str(verdict["reason"])
    said = {True: "met", False: "not met", None: "not judged"}
    parts = [
        f"{r.get('metric')} = {_number(r.get('value'))} (needs {r.get('op')} "
        f"{_number(r.get('threshold'))}): {said[r.get('passed')]}"
        for r in verdict.get("results") or []
    ]
    return "; ".join(parts) or "no conditions"


def _subject_of(audit: Audit, secrets: list[str]) -> str:
    if audit.model_uri:
        return cleaned(audit.model_uri, secrets)
    return f"the dataset {cleaned(audit.dataset_uri, secrets)}"


def compose(
    audit: Audit, outcome: Outcome, policy: str | None, settings: Settings, secrets: list[str]
) -> Message:
    """The one message an outcome sends (`secrets`: the values to mask besides the settings',
    such as the channel's own webhook URL)."""
    secrets = [*secrets, *configured_secrets(settings)]
    report_url = f"{settings.public_url.rstrip('/')}/audits/{audit.id}"
    what = _subject_of(audit, secrets)
    lines = []
    if audit.status == "failed":
        subject = f"memaudit: audit {audit.id} of {what} failed"
        lines.append(f"Error: {short_error(audit.error, secrets)}")
    else:
        subject = f"memaudit: policy {policy or '?'}: {outcome.outcome.upper()} for {what}"
    verdict = audit.verdict or {}
    if policy is not None and verdict.get("status"):
        promotion = verdict.get("promotion") or "blocked"
        # A failed audit's verdict holds its whole error as the reason: said once, above.
        sentence = "The audit failed." if audit.status == "failed" else verdict_sentence(verdict)
        lines.append(
            f"Policy {policy}: {str(verdict['status']).upper()} (promotion {promotion}). "
            + cleaned(sentence, secrets)[:MAX_SENTENCE_CHARS]
        )
    lines.append(f"Report: {report_url}")
    # One line (an e-mail header refuses a line break, and a model path may hold one), bounded.
    subject = " ".join(subject.split())[:MAX_SUBJECT_CHARS]
    return Message(subject, "\n".join([subject, *lines]), report_url)


def _slack_escaped(text: str) -> str:
    """Slack reads `<`, `>` and `&` as markup; these three are all it asks to escape."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chat_payload(message: Message, blocks: bool) -> dict[str, Any]:
    """A Slack incoming-webhook body; `text` alone is what Mattermost and other Slack-compatible
    receivers read, so `blocks` are added only where a channel asks for them."""
    payload: dict[str, Any] = {"text": _slack_escaped(message.text)}
    if blocks:
        body = message.text.split("\n", 1)[1] if "\n" in message.text else ""
        payload["blocks"] = [
            {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escaped(body)}},
        ]
    return payload
