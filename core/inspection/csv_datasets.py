"""CSV datasets named by path: a header row, then one record per row.

`id`, `text` and `split` stay text; `label` and `duplicates` are integers; `member` is
true/false; `features` may hold a JSON list. Every other column must be numeric and, in header
order, becomes the record's `features`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEXT_COLUMNS = ("id", "text", "split")
INTEGER_COLUMNS = ("label", "duplicates")
RESERVED = (*TEXT_COLUMNS, *INTEGER_COLUMNS, "member", "features")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


class CsvDatasetError(ValueError):
    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(message)
        self.line_no = line_no


def _value(column: str, raw: str, line_no: int) -> Any:
    if column in TEXT_COLUMNS:
        return raw
    if raw == "":
        return None
    if column in INTEGER_COLUMNS:
        try:
            return int(raw)
        except ValueError:
            raise CsvDatasetError(line_no, f"column {column!r} must be an integer") from None
    if column == "member":
        if raw.lower() in TRUE + FALSE:
            return raw.lower() in TRUE
        raise CsvDatasetError(line_no, "column 'member' must be true or false")
    if column == "features":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise CsvDatasetError(line_no, "column 'features' must hold a JSON list") from None
    try:
        return float(raw)
    except ValueError:
        raise CsvDatasetError(line_no, f"column {column!r} must be numeric") from None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
            raise CsvDatasetError(1, "the header names a column twice")
        numeric = [c for c in header if c not in RESERVED]
        for row in reader:
            line_no = reader.line_num
            if None in row:
                raise CsvDatasetError(line_no, "more cells than header columns")
            data = {c: _value(c, row[c] or "", line_no) for c in header if c not in numeric}
            if numeric:
                data["features"] = [_value(c, row[c] or "", line_no) for c in numeric]
                if any(v is None for v in data["features"]):
                    raise CsvDatasetError(line_no, "an empty feature cell")
            yield line_no, data


def inspect_csv(path: Path, max_records: int | None = None) -> tuple[str, int, int, list[str]]:
    """(sha256, records, bytes, fields), every row parsed; stops past `max_records`."""
    with path.open("rb") as stream:  # streamed: a large file is never held whole in memory
        digest = hashlib.file_digest(stream, "sha256")
    count, fields = 0, []
    for _line_no, data in _rows(path):
        count += 1
        if max_records is not None and count > max_records:
            break
        for key in data:
            if key not in fields:
                fields.append(key)
    return digest.hexdigest(), count, path.stat().st_size, fields


def iter_csv(path: Path, start: int, stop: int | None) -> Iterator[tuple[int, int, dict]]:
    for index, (line_no, data) in enumerate(_rows(path)):
        if stop is not None and index >= stop:
            return
        if index >= start:
            yield index, line_no, data
