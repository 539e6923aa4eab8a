"""The printable page of a signed pack: rendered from the envelope itself (autoescaped), with
the signature block, so paper and file say the same thing and the page names the file it
renders by the payload's sha256."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.dashboard.rendering import TEMPLATES
from core.signing import canonical_sha256

# Nothing on the page runs or loads: styles are inline, there is no script.
EVIDENCE_CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

# Said as the report says them; "no confound detected" is never "not confounded".
READING_TEXT = {
    "confounded": "confounded: a model-free classifier separates members from non-members, so "
    "membership scores on this split are inconclusive",
    "no_confound_detected": "no confound detected by the blind baseline",
    "not_assessed": "not assessed",
    "stands": "stands: read as measured, on a split the blind baseline did not flag",
    "no_membership_signal": "no membership signal above AUROC 0.55",
    "underpowered": "underpowered: too few records to tell",
    "inconclusive": "inconclusive",
}


def reading_text(reading: Any) -> str:
    if isinstance(reading, Mapping):
        text = READING_TEXT.get(str(reading.get("reading")), str(reading.get("reading")))
        return f"{text} ({reading['why']})" if reading.get("why") else text
    return READING_TEXT.get(str(reading), str(reading))


def render_evidence_html(envelope: Mapping[str, Any]) -> str:
    template = TEMPLATES.env.get_template("evidence.html")
    return template.render(
        payload=envelope["payload"],
        signature=envelope["signature"],
        payload_sha256=canonical_sha256(envelope["payload"]),
        reading_text=reading_text,
    )
