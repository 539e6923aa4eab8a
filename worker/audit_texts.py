"""The audited records' texts, read again at finalize for the summaries that need them (the
blind baseline of a membership split) rather than stored beside every result row."""

from __future__ import annotations

import hashlib
import logging
from contextlib import ExitStack
from typing import Any

from core.config import Settings
from core.db import Database
from core.inspection.datasets import DatasetError, iter_records
from core.tenancy import NotGranted
from worker import shard_store
from worker.access import Access
from worker.engine.blind_baseline import MAX_CHARS

log = logging.getLogger(__name__)


class AuditTexts:
    """Each record's text by sample index, read once on first use under the audit's grants as
    they stand now; None for every record when the dataset cannot be read or has changed
    since submission (its sha256 no longer matches), so a summary reports it not assessed."""

    def __init__(self, db: Database, settings: Settings, audit: Any) -> None:
        self._db, self._settings, self._audit = db, settings, audit
        self._texts: dict[int, str | None] | None = None
        self.problem: str | None = None

    def text(self, index: int) -> str | None:
        if self._texts is None:
            self._texts = self._read()
        return self._texts.get(index)

    def _read(self) -> dict[int, str | None]:
        audit = self._audit
        try:
            with ExitStack() as files:
                grants = shard_store.audit_grants(self._db, audit)
                access = Access(self._settings, self._db, audit, grants, files)
                path = access.open_dataset(audit.dataset_uri)
                with path.open("rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
                if digest != audit.dataset_sha256:
                    self.problem = "the dataset changed since the audit was submitted"
                    return {}
                # Only the blind baseline reads texts, and only their first MAX_CHARS: holding
                # no more keeps a ten-million-record finalize within memory.
                return {
                    record.index: text[:MAX_CHARS]
                    if isinstance(text := record.data.get("text"), str)
                    else None
                    for record in iter_records(path)
                }
        except (OSError, DatasetError, NotGranted, ValueError) as exc:
            self.problem = f"the dataset could not be read at finalize: {exc}"
            log.warning("audit %s: %s", audit.id, self.problem)
            return {}
