"""The embedded broker: kombu's SQLAlchemy transport, polled often enough to feel immediate.

Kombu's virtual transports sleep `polling_interval` (1 s) between fetches and hand every
transport option to `create_engine`, so the interval cannot be set through options. A worker
with prefetch 1 would then take at most one task per second; this subclass polls every 0.1 s.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport

EMBEDDED_POLLING_SECONDS = 0.1


class EmbeddedTransport(Transport):
    polling_interval = EMBEDDED_POLLING_SECONDS


def register() -> None:
    """Make `sqla+...` broker URLs use this transport, in this process."""
    TRANSPORT_ALIASES["sqla"] = "core.embedded_broker:EmbeddedTransport"
    TRANSPORT_ALIASES["sqlalchemy"] = "core.embedded_broker:EmbeddedTransport"
