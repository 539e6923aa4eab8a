"""JSON from outside (request bodies, webhook payloads, dataset lines, a model's config files),
parsed with bounds: strict UTF-8, a nesting limit, and no lone surrogates.

Python's parser accepts `"\\ud800"` (a string no database or encoder can store) and recurses
once per nesting level; either reached deep code as a 500. Here each is a clear refusal that
names the line.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # far beyond any legitimate payload, far below the interpreter's recursion
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)  # a string, or a bracket
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


class JsonRefused(ValueError):
    """Input that is not acceptable JSON, with the 1-based line where the fault is."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"line {line}: {message}")
        self.reason, self.line = message, line


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (no surrogate code points, no stray bytes); a leading byte-order mark, as
    some editors save files, is dropped."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise JsonRefused(f"not valid UTF-8 (byte {exc.start})", line) from None


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for match in _TOKEN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > max_depth:
                line = _line_at(text, match.start())
                raise JsonRefused(f"nested deeper than {max_depth} levels", line)
        elif char in "]}":
            depth -= 1


def check_surrogates(text: str) -> None:
    """Refuse `\\uD800`-style escapes that are not a high-low pair."""
    if not _SURROGATE_HINT.search(text):
        return
    pending_high: int | None = None  # end position of an unpaired high surrogate escape
    for match in _ESCAPE.finditer(text):
        unit = int(match.group(1), 16) if match.group(1) else None
        if pending_high is not None:
            if unit is not None and 0xDC00 <= unit <= 0xDFFF and match.start() == pending_high:
                pending_high = None
                continue
            raise JsonRefused(
                "a lone surrogate escape (\\uD800-\\uDBFF unpaired)", _line_at(text, pending_high)
            )
        if unit is None:
            continue
        if 0xD800 <= unit <= 0xDBFF:
            pending_high = match.end()
        elif 0xDC00 <= unit <= 0xDFFF:
            line = _line_at(text, match.start())
            raise JsonRefused("a lone surrogate escape (\\uDC00-\\uDFFF unpaired)", line)
    if pending_high is not None:
        raise JsonRefused(
            "a lone surrogate escape (\\uD800-\\uDBFF unpaired)", _line_at(text, pending_high)
        )


def check_text(text: str, max_depth: int = MAX_DEPTH) -> None:
    check_depth(text, max_depth)
    check_surrogates(text)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads with the bounds above; JsonRefused for anything it would not accept."""
    text = decode_utf8(data) if isinstance(data, bytes | bytearray) else data
    check_text(text, max_depth)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"not valid JSON ({exc.msg}, column {exc.colno})", exc.lineno) from None
