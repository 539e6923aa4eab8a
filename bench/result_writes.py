"""Writing per-sample results: rows/s for a million-sample audit, and the space they take.

    .venv/bin/python -m bench.result_writes                       # SQLite (embedded default)
    createdb -h 127.0.0.1 -U postgres memaudit_bench_writes
    .venv/bin/python -m bench.result_writes --postgres postgresql+psycopg://postgres@127.0.0.1/memaudit_bench_writes

Rows are shaped exactly as the worker writes them (`result_row` over realistic extraction and
membership values, two checks per sample), and go through the worker's own `write_batch`: one
transaction that renews the lease, checks for cancellation and upserts the rows as one
executemany of a cached statement. The worker gathers MEMAUDIT_RESULT_FLUSH_ROWS rows (or a
second's worth) per write. The baseline, measured in the same run, is what it did before: a
transaction per model batch of 16 samples.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from itertools import islice
from pathlib import Path

from sqlalchemy import text

from app.migrate import upgrade
from bench.report_data import audit_checks, sample_rows
from core.config import Settings
from core.db import Database
from core.models import Shard
from worker import shard_store

BASELINE_SAMPLES = 100_000


def _new_claim(db: Database, n: int) -> shard_store.Claim:
    from core.models import Audit

    with db.session() as session:
        audit = Audit(
            model_uri="path:/bench", model_family="bench", dataset_uri="dataset:ds_bench",
            dataset_sha256="0" * 64, n_samples=n, checks=audit_checks(), labels={},
            summary={}, provenance={},
        )  # fmt: skip
        session.add(audit)
        session.flush()
        shard = Shard(audit_id=audit.id, index=0, start=0, stop=n, info={})
        session.add(shard)
        session.flush()
        audit_id, shard_id = audit.id, shard.id
    claim = shard_store.claim_shard(db, shard_id, "bench", 3600, 3)
    assert claim is not None and claim.audit_id == audit_id
    return claim


def _rows(claim: shard_store.Claim, n: int) -> list[list[dict]]:
    """Per sample, its rows (one per check), built before the clock starts."""
    per_sample: list[list[dict]] = []
    pending: list[dict] = []
    for row, _values in sample_rows(claim.audit_id, audit_checks(), n, strength=0.6):
        pending.append(row)
        if len(pending) == 2:
            per_sample.append(pending)
            pending = []
    return per_sample


def write_batched(db: Database, n: int, samples_per_batch: int) -> tuple[float, int]:
    claim = _new_claim(db, n)
    samples = _rows(claim, n)
    start = time.perf_counter()
    done = rows = 0
    iterator = iter(samples)
    while batch := list(islice(iterator, samples_per_batch)):
        flat = [row for sample in batch for row in sample]
        done += len(batch)
        rows += len(flat)
        shard_store.write_batch(db, claim, flat, done, 3600)
    return time.perf_counter() - start, rows


def table_bytes(db: Database, sqlite_file: Path | None) -> int:
    if sqlite_file is not None:
        with db.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        return sqlite_file.stat().st_size
    with db.engine.connect() as connection:
        return connection.execute(text("SELECT pg_total_relation_size('sample_results')")).scalar()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="the URL of an empty PostgreSQL database")
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()
    sqlite_file = None
    if args.postgres:
        url = args.postgres
    else:
        sqlite_file = Path(tempfile.mkdtemp()) / "bench.db"
        url = f"sqlite:///{sqlite_file}"
    upgrade(url)
    db = Database(url)
    flush_samples = Settings().result_flush_rows // 2  # two checks: two rows per sample
    print(f"database: {db.engine.dialect.name}; {os.cpu_count()} cores")

    # Baseline first, on a smaller table than the bulk run meets: the ratio is conservative.
    base_seconds, base_rows = write_batched(db, min(args.samples, BASELINE_SAMPLES), 16)
    base_rate = base_rows / base_seconds
    print(f"baseline, a transaction per model batch (16 samples, as before): {base_rows:,} rows "
          f"in {base_seconds:.1f}s = {base_rate:,.0f} rows/s")  # fmt: skip
    before = table_bytes(db, sqlite_file)
    seconds, rows = write_batched(db, args.samples, flush_samples)
    rate = rows / seconds
    grown = table_bytes(db, sqlite_file) - before
    print(
        f"bulk, as the worker writes ({2 * flush_samples} rows a transaction), {args.samples:,} "
        f"samples: {rows:,} rows in {seconds:.1f}s = {rate:,.0f} rows/s, "
        f"{rate / base_rate:.1f}x the baseline"
    )
    print(f"size: {grown / rows * 1e6 / 2**20:,.0f} MiB per million rows, indexes included "
          f"({grown / 2**30:.2f} GiB for this audit)")  # fmt: skip


if __name__ == "__main__":
    main()
