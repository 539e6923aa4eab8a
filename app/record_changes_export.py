"""The per-record changes of a comparison as CSV and Parquet, streamed: the same rows, in the
same order, as the paged API returns."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import astuple, fields

import pyarrow as pa
import pyarrow.parquet as pq

from app.api.audits import csv_cell
from app.record_changes import Change

COLUMNS = [field.name for field in fields(Change)]
PARQUET_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("check", pa.string()),
        ("metric", pa.string()),
        ("sample_index", pa.int64()),
        ("sample_id", pa.string()),
        ("member", pa.bool_()),
        ("candidate_value", pa.float64()),
        ("baseline_value", pa.float64()),
        ("candidate_threshold", pa.float64()),
        ("baseline_threshold", pa.float64()),
    ]
)
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


def csv_chunks(pages: Iterable[list[Change]]) -> Iterator[str]:
    """A header, then each page's rows (text cells made formula-safe for spreadsheets)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(COLUMNS)
    yield buffer.getvalue()
    for rows in pages:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for change in rows:
            writer.writerow([csv_cell(cell) for cell in astuple(change)])
        yield buffer.getvalue()


class _Chunks:
    """A write-only file whose written bytes are taken out as they come: pyarrow writes a
    row group per page into it, and the response sends each before the next is read."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        found, self.parts = b"".join(self.parts), []
        return found


def parquet_chunks(pages: Iterable[list[Change]]) -> Iterator[bytes]:
    """One row group per page; the footer (written at close) ends the file."""
    sink = _Chunks()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), PARQUET_SCHEMA)
    try:
        for rows in pages:
            columns = list(zip(*(astuple(change) for change in rows), strict=True))
            writer.write_table(pa.Table.from_arrays(list(columns), schema=PARQUET_SCHEMA))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()
