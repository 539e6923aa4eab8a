"""Failed sign-ins and bad keys, counted per client in fixed windows in the database, so every
API process shares one count (and a restart forgets nothing).

The client is the peer address; a forwarded header is believed only from a configured trusted
proxy, and then the rightmost address no trusted proxy added is the client.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.config import Network
from core.db import upsert_insert, utcnow
from core.models import EventCount, ThrottleWindow

MAX_CLIENT_CHARS = 100


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """Who is asking: the peer, unless the peer is a trusted proxy and says who it serves."""
    peer = peer or "unknown"
    if not trusted or not _trusted(peer, trusted) or not forwarded_for:
        return peer[:MAX_CLIENT_CHARS]
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop[:MAX_CLIENT_CHARS]
    return (hops[0] if hops else peer)[:MAX_CLIENT_CHARS]


def _window(now: datetime, seconds: int) -> datetime:
    epoch = datetime(1970, 1, 1)
    start = math.floor((now - epoch).total_seconds() / seconds) * seconds
    return epoch + timedelta(seconds=start)


def retry_after(session: Session, client: str, limit: int, seconds: int) -> int | None:
    """Seconds until this client may try again, or None when it is under the limit."""
    now = utcnow()
    start = _window(now, seconds)
    failures = session.scalar(
        select(ThrottleWindow.failures).where(
            ThrottleWindow.client == client, ThrottleWindow.window_start == start
        )
    )
    if failures is None or failures < limit:
        return None
    return max(1, math.ceil((start + timedelta(seconds=seconds) - now).total_seconds()))


def _increment(session: Session, counter: Any, key: dict[str, Any], column: str) -> None:
    """Add one to a counter row, creating it at 1: one statement, safe under concurrency."""
    insert = upsert_insert(session.get_bind().dialect.name)
    statement: Any = insert(counter).values(**key, **{column: 1})
    session.execute(
        statement.on_conflict_do_update(
            index_elements=list(key), set_={column: getattr(counter, column) + 1}
        )
    )


def record_failure(session: Session, client: str, seconds: int) -> None:
    """One more failure for this client in the current window (old windows are dropped)."""
    start = _window(utcnow(), seconds)
    _increment(session, ThrottleWindow, {"client": client, "window_start": start}, "failures")
    session.execute(
        delete(ThrottleWindow).where(
            ThrottleWindow.window_start < start - timedelta(seconds=seconds)
        )
    )
    session.commit()


def count_event(session: Session, name: str) -> None:
    """A refused event kept as a number (e.g. a webhook delivery with a bad signature)."""
    _increment(session, EventCount, {"name": name}, "count")
    session.commit()
