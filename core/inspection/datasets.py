"""JSONL datasets: one JSON object per line, blank lines ignored, read as a stream."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from core.confinement import DEFAULT_RULES, FileRules, PathRefused, RootLike, pin
from core.inspection.array_datasets import ArrayDatasetError, inspect_npz, iter_npz
from core.inspection.csv_datasets import CsvDatasetError, inspect_csv, iter_csv
from core.json_input import JsonRefused, loads

# A record's `id` falls back to its index; `text` is what LM checks read.
MAX_FIELDS_REPORTED = 50


class DatasetError(ValueError):
    """Bad data, with the 1-based physical line number where it was found."""

    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"line {line_no}: {message}")
        self.line_no = line_no


class DatasetLimitExceeded(DatasetError):
    """A dataset over one of the configured limits: the caller's request is too large."""

    def __init__(self, line_no: int, message: str, limit: str, value: int) -> None:
        super().__init__(line_no, message)
        self.limit, self.value = limit, value


@dataclass(frozen=True)
class DatasetLimits:
    max_records: int
    max_text_chars: int


@dataclass(frozen=True)
class DatasetInfo:
    sha256: str
    n_records: int
    size_bytes: int
    fields: list[str]


MAX_ID_CHARS = 256
UPLOAD_ID = re.compile(r"^ds_[0-9a-f]{24}$")


@dataclass(frozen=True)
class Record:
    index: int  # position among the non-blank lines: the sample index
    line_no: int  # physical line, for error messages
    data: dict[str, Any]

    @property
    def sample_id(self) -> str:
        value = self.data.get("id")
        return str(self.index) if value is None else str(value)


def parse_line(line: bytes, line_no: int) -> dict[str, Any]:
    try:
        value = loads(line)
    except JsonRefused as exc:
        raise DatasetError(line_no, exc.reason) from None
    if not isinstance(value, dict):
        raise DatasetError(line_no, f"expected a JSON object, got {type(value).__name__}")
    sample_id = str(value.get("id", ""))
    if len(sample_id) > MAX_ID_CHARS:  # ids are indexed for the records search
        raise DatasetError(line_no, f"field 'id' is longer than {MAX_ID_CHARS} characters")
    if "\x00" in sample_id:  # ids are stored as text, which PostgreSQL cannot hold NUL in
        raise DatasetError(line_no, "field 'id' contains a NUL character")
    return value


def check_text_length(record: dict[str, Any], line_no: int, max_chars: int) -> None:
    text = record.get("text")
    if isinstance(text, str) and len(text) > max_chars:
        raise DatasetLimitExceeded(
            line_no,
            f"field 'text' has {len(text)} characters; the limit is {max_chars} "
            "(MEMAUDIT_MAX_RECORD_CHARS)",
            "max_record_chars",
            len(text),
        )


def inspect_jsonl(
    stream: BinaryIO, *, validate_all: bool, limits: DatasetLimits | None = None
) -> DatasetInfo:
    """Hash and count a JSONL stream in one pass.

    Uploads are validated line by line (`validate_all`); for a large file named by path only
    the first record is parsed at submit time, and bad lines surface when a worker reads them.
    The record count limit holds for both; it stops reading at the first record too many.
    """
    digest = hashlib.sha256()
    n_records = size = 0
    fields: list[str] = []
    for line_no, line in enumerate(stream, start=1):
        digest.update(line)
        size += len(line)
        if not line.strip():
            continue
        if limits is not None and n_records >= limits.max_records:
            raise DatasetLimitExceeded(
                line_no,
                f"more than {limits.max_records} records (MEMAUDIT_MAX_RECORDS_PER_DATASET)",
                "max_records_per_dataset",
                n_records + 1,
            )
        if validate_all or n_records == 0:
            record = parse_line(line, line_no)
            if limits is not None:
                check_text_length(record, line_no, limits.max_text_chars)
            for key in record:
                if key not in fields and len(fields) < MAX_FIELDS_REPORTED:
                    fields.append(key)
        n_records += 1
    return DatasetInfo(digest.hexdigest(), n_records, size, fields)


def iter_records(path: Path, start: int = 0, stop: int | None = None) -> Iterator[Record]:
    """Records with index in [start, stop), parsed lazily so memory stays flat."""
    if path.suffix == ".npz":
        for position, data in iter_npz(path, start, stop):
            yield Record(position, position + 1, data)  # "line" = row, 1-based
        return
    if path.suffix == ".csv":
        try:
            for position, line_no, data in iter_csv(path, start, stop):
                yield Record(position, line_no, data)
        except CsvDatasetError as exc:
            raise DatasetError(exc.line_no, str(exc)) from None
        return
    index = 0
    with path.open("rb") as stream:
        for line_no, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield Record(index, line_no, parse_line(line, line_no))
            index += 1


def inspect_dataset_file(path: Path, limits: DatasetLimits | None = None) -> DatasetInfo:
    """A file named by path: JSONL (first record parsed), CSV (every row parsed) or an `.npz`
    archive."""
    if path.suffix == ".npz":
        try:
            sha, n_records, size, fields = inspect_npz(path)
        except ArrayDatasetError as exc:
            raise DatasetError(1, str(exc)) from None
        if limits is not None and n_records > limits.max_records:
            raise DatasetLimitExceeded(
                1,
                f"more than {limits.max_records} records (MEMAUDIT_MAX_RECORDS_PER_DATASET)",
                "max_records_per_dataset",
                n_records,
            )
        return DatasetInfo(sha, n_records, size, fields)
    if path.suffix == ".csv":
        limit = limits.max_records if limits is not None else None
        try:
            sha, n_records, size, fields = inspect_csv(path, limit)
        except CsvDatasetError as exc:
            raise DatasetError(exc.line_no, str(exc)) from None
        except UnicodeDecodeError:
            raise DatasetError(1, "the CSV file is not UTF-8") from None
        if limit is not None and n_records > limit:
            raise DatasetLimitExceeded(
                n_records + 1,
                f"more than {limit} records (MEMAUDIT_MAX_RECORDS_PER_DATASET)",
                "max_records_per_dataset",
                n_records,
            )
        return DatasetInfo(sha, n_records, size, fields)
    with path.open("rb") as stream:
        return inspect_jsonl(stream, validate_all=False, limits=limits)


def require_label(record: Record) -> int:
    value = record.data.get("label")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetError(record.line_no, "field 'label' must be a non-negative integer")
    return value


def require_input(record: Record, input_kind: str) -> Any:
    """`text` for token models, `features` (numbers, nested lists allowed) for the others."""
    if input_kind == "text":
        return require_text(record)
    features = record.data.get("features")
    if not isinstance(features, list) or not features:
        raise DatasetError(record.line_no, "field 'features' must be a non-empty list of numbers")
    return features


def require_text(record: Record) -> str:
    text = record.data.get("text")
    if not isinstance(text, str):
        raise DatasetError(record.line_no, "field 'text' must be a string")
    return text


def uploaded_dataset_path(datasets_dir: Path, sha256: str) -> Path:
    """Uploads are stored once per content, whichever teams hold a record of them."""
    return datasets_dir / f"ds_{sha256[:24]}.jsonl"


def new_dataset_id() -> str:
    """A team's record of an upload: random, so an id says nothing about the content."""
    return "ds_" + secrets.token_hex(12)


@contextmanager
def open_dataset(
    uri: str,
    uploads: Callable[[str], Path | None],
    data_roots: Sequence[RootLike],
    rules: FileRules = DEFAULT_RULES,
) -> Iterator[Path]:
    """The file behind a dataset URI, for as long as the block runs: an upload (`uploads`
    finds one the audit's team holds), or a file resolved beneath the data roots and pinned
    (readers get its staging link or its checked path)."""
    scheme, _, rest = uri.partition(":")
    if scheme == "dataset" and UPLOAD_ID.match(rest):
        path = uploads(rest)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"no uploaded dataset {rest}")
        yield path
        return
    if scheme == "path" and rest:
        with ExitStack() as stack:
            try:
                pinned = stack.enter_context(
                    pin(rest, data_roots, kind="dataset", want="file", rules=rules)
                )
            except PathRefused as exc:
                raise FileNotFoundError(str(exc)) from None
            yield pinned.readable
        return
    raise FileNotFoundError(f"unsupported dataset URI {uri!r}: use dataset:<id> or path:<file>")
