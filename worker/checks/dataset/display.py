"""How a dataset audit shows a record's text anywhere outside the uploaded file (rows,
summaries, reports, exports): every value the PII inventory detects is masked first, then the
text is shortened, so the database and every page hold the masked form alone.

The keyed hash that counts a value's recurrences uses a key derived from the service's
callback secret and the audit's team: every worker of one deployment shares the secret
(production requires it set), so the hashes of one value agree across shards and hosts, and
nobody without it can test a guess against a stored hash."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace

DISPLAY_CHARS = 120  # enough to recognise a boilerplate line, short of a whole record
_KEY_LABEL = b"memaudit pii recurrence hash v1"


def pii_key(secret: str, team_id: str | None = None) -> bytes:
    """The PII hash key of one team of a deployment, derived from its callback secret: per
    team, so a team cannot learn whether a value it guesses is in another team's corpus by
    hashing the guess in an audit of its own."""
    label = _KEY_LABEL + b"\0" + (team_id or "").encode("utf-8")
    return hmac.new(secret.encode("utf-8"), label, hashlib.sha256).digest()


def shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= DISPLAY_CHARS else line[: DISPLAY_CHARS - 1] + "…"


@dataclass(frozen=True)
class Display:
    key: bytes

    def masked(self, text: str) -> str:
        """The text with every detected value replaced by its mask."""
        from worker.engine.corpus.pii import detect, masked_text

        return masked_text(text, detect(text, self.key))

    def excerpt(self, text: str, start: int, stop: int) -> str:
        """The short masked form of the bytes [start, stop) of a text. Values are detected in
        the whole text, and the excerpt widened over any value it cuts: a value cut in half is
        no longer recognisable as one, and would otherwise be stored half raw."""
        from worker.engine.corpus.pii import detect, masked_text

        encoded = text.encode("utf-8")
        first = len(encoded[:start].decode("utf-8", errors="ignore"))
        last = len(encoded[:stop].decode("utf-8", errors="ignore"))
        found = detect(text, self.key)
        for detection in found:
            if detection.start < last and detection.end > first:
                first, last = min(first, detection.start), max(last, detection.end)
        inside = [
            replace(d, start=d.start - first, end=d.end - first)
            for d in found
            if d.start >= first and d.end <= last
        ]
        return shorten(masked_text(text[first:last], inside))

    def short(self, text: str) -> str:
        """A short, single-line, masked form of a text, safe to store and show. Masked before
        it is cut, so a value cut in half is never shown half-raw."""
        return shorten(self.masked(text))
