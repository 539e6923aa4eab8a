"""Start-up refusals that need more than the settings: where the API listens, and which
hosts already run workers against this database."""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import upsert_insert, utcnow
from core.models import WorkerHost

# A host that claimed work this recently is alive: a second host must not share SQLite with it.
WORKER_HOST_ALIVE = timedelta(minutes=10)


class UnsafeDeployment(RuntimeError):
    """A configuration that would expose data or corrupt it; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, active_keys: int) -> None:
    """Listening beyond this machine needs a key made on purpose, never one made on the fly."""
    if not is_loopback(host) and active_keys == 0:
        raise UnsafeDeployment(
            f"refusing to listen on {host} with no API key: create one first with "
            "`memaudit keys create NAME --scope admin` (a first key is only generated "
            "automatically on a loopback address)"
        )


def record_worker_host(session: Session, hostname: str | None = None) -> None:
    """Upsert this host's last_seen: one cheap statement per claimed shard."""
    hostname = hostname or socket.gethostname()
    now = utcnow()
    statement = upsert_insert(session.get_bind().dialect.name)(WorkerHost).values(
        hostname=hostname, first_seen=now, last_seen=now
    )
    session.execute(
        statement.on_conflict_do_update(index_elements=["hostname"], set_={"last_seen": now})
    )


def check_single_host(session: Session, database_url: str, hostname: str | None = None) -> None:
    """On SQLite, refuse a worker on a second host while another host's workers are alive."""
    if not database_url.startswith("sqlite"):
        return
    hostname = hostname or socket.gethostname()
    others = session.scalars(
        select(WorkerHost.hostname).where(
            WorkerHost.hostname != hostname, WorkerHost.last_seen > utcnow() - WORKER_HOST_ALIVE
        )
    ).all()
    if others:
        raise UnsafeDeployment(
            f"this SQLite database already serves workers on {', '.join(sorted(others))}; "
            "workers on several hosts need PostgreSQL and Redis (MEMAUDIT_DATABASE_URL, "
            "MEMAUDIT_BROKER_URL)"
        )
