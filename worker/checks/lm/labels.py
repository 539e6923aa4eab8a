"""How the LM passes read a record: its text and its labels, each refused with its line when it
cannot be read. Light (no torch), so a policy's dataset pass runs the same readers in the API."""

from __future__ import annotations

from core.inspection.datasets import DatasetError, Record, require_text


def member_label(record: Record) -> bool | None:
    value = record.data.get("member")
    if value is None or isinstance(value, bool):
        return value
    raise DatasetError(record.line_no, "field 'member' must be true, false or absent")


def duplicates_label(record: Record) -> int | None:
    value = record.data.get("duplicates")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise DatasetError(record.line_no, "field 'duplicates' must be a non-negative integer")


def read_record(record: Record) -> tuple[str, bool | None, int | None]:
    """(text, member, duplicates): what every LM pass reads of each record."""
    return require_text(record), member_label(record), duplicates_label(record)
