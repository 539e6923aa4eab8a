"""Report and records-table latency at 1k and 1M per-sample rows, on this machine.

    .venv/bin/python -m bench.dashboard                 # SQLite (the embedded default)
    createdb -h 127.0.0.1 -U postgres memaudit_bench
    .venv/bin/python -m bench.dashboard --postgres postgresql+psycopg://postgres@127.0.0.1/memaudit_bench

Each audit has two checks, so 1M records are 2M rows. Every request goes through the real app
(FastAPI, auth, templates, SQL); the figure is the median of several calls after one warm-up.
The baseline is the same request on the 1k audit, measured in the same run: the ratio shows
what the million rows cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.keys import create_key
from app.main import create_app
from app.migrate import upgrade
from bench.report_data import seed_audit
from core.config import Settings
from core.db import Database

SIZES = (1_000, 1_000_000)
REPEATS = 5


def requests_for(audit_id: str, n: int) -> dict[str, str]:
    samples = f"/v1/audits/{audit_id}/samples?limit=25"
    return {
        "report page": f"/audits/{audit_id}",
        "table: most memorized first": f"{samples}&check=extraction&order_by=score&desc=true",
        "table: members only": f"{samples}&check=membership&order_by=score&desc=true&member=true",
        "table: middle page": f"{samples}&check=extraction&order_by=score&offset={n // 2}",
        "table: sort by another column": f"{samples}&check=membership&order_by=zlib&desc=true",
        "table: sort by an unindexed field": f"{samples}&check=extraction&order_by=min_margin",
        "table: id search": f"{samples}&check=extraction&q=rec-00001",
        "one record with tokens": f"/v1/audits/{audit_id}/samples/{n // 3}",
    }


def timed(client: TestClient, path: str, headers: dict[str, str]) -> float:
    client.get(path, headers=headers).raise_for_status()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        client.get(path, headers=headers).raise_for_status()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", help="the URL of an empty PostgreSQL database")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memaudit-bench-"))
    settings = Settings(data_dir=work, database_url=args.postgres or "")
    settings.ensure_dirs()
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    with db.session() as session:
        key = create_key(session, "bench", "read")
    headers = {"Authorization": f"Bearer {key}"}
    client = TestClient(create_app(settings))
    engine = "PostgreSQL" if args.postgres else "SQLite"

    audit_ids = {}
    for n in args.sizes:
        start = time.perf_counter()
        audit_ids[n] = seed_audit(db, n, bootstrap=100 if n <= 10_000 else 0, batch=20_000)
        print(f"seeded {n:,} records ({2 * n:,} rows) in {time.perf_counter() - start:.0f} s")
    report(client, headers, audit_ids, f"{engine}, right after the rows were written")
    if args.postgres:
        # Index-only scans need the visibility map that (auto)vacuum writes after bulk inserts.
        with db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE sample_results"
            )
        report(client, headers, audit_ids, f"{engine}, after VACUUM ANALYZE (autovacuum's work)")


def report(
    client: TestClient, headers: dict[str, str], audit_ids: dict[int, str], title: str
) -> None:
    results = {
        n: {name: timed(client, path, headers) for name, path in requests_for(audit_id, n).items()}
        for n, audit_id in audit_ids.items()
    }
    small, large = min(results), max(results)
    print(f"\n{title}: median of {REPEATS} after a warm-up, seconds")
    print(f"{'request':34} {small:>11,} {large:>11,}  ratio")
    for name in results[small]:
        a, b = results[small][name], results[large][name]
        print(f"{name:34} {a:11.3f} {b:11.3f}  {b / a:5.1f}x")


if __name__ == "__main__":
    main()
