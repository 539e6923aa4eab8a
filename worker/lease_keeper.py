"""A heartbeat that keeps a shard's lease alive while its worker is busy for longer than a
lease between two writes (loading a large model, one long batch). A worker that dies stops
beating, so its lease runs out and another worker takes the shard over."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from core.db import Database
from worker import shard_store

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, db: Database, claim: shard_store.Claim, lease_seconds: int) -> None:
        self.db, self.claim, self.lease_seconds = db, claim, lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lease-keeper")

    def _beat(self) -> None:
        # A third of the lease: two beats can be missed (a slow database) before it expires.
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                if not shard_store.renew_lease(self.db, self.claim, self.lease_seconds):
                    self.lost.set()
                    return
            except Exception as exc:  # the database is down: the batch writes will say so
                log.warning("could not renew the lease of shard %s: %s", self.claim.shard_id, exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease_seconds)
