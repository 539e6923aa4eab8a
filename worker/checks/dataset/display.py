"""How a dataset audit shows a record's text anywhere outside the uploaded file (summaries,
rows, reports, exports): the one hook every view goes through.

Today it only shortens; the PII inventory will mask detected values here, so the database and
every page keep the masked form alone."""

from __future__ import annotations

DISPLAY_CHARS = 120  # enough to recognise a boilerplate line, short of a whole record


def display_text(text: str) -> str:
    """A short, single-line form of a record's text, safe to store and show."""
    line = " ".join(text.split())
    return line if len(line) <= DISPLAY_CHARS else line[: DISPLAY_CHARS - 1] + "…"
