"""Dataset uploads: validated line by line, stored once per content (sha256)."""

from __future__ import annotations

import os
import tempfile
from typing import BinaryIO

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.config import Settings
from core.errors import ApiError
from core.inspection.datasets import (
    DatasetError,
    DatasetLimitExceeded,
    inspect_jsonl,
    new_dataset_id,
    uploaded_dataset_path,
)
from core.models import ApiKey, Dataset
from core.submission import limit_error

CHUNK = 1 << 20


def _spool(upload: BinaryIO, directory: str, limit: int) -> str:
    """Copy the upload to a temporary file beside its destination, refusing oversize input."""
    fd, tmp_path = tempfile.mkstemp(dir=directory, suffix=".part")
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := upload.read(CHUNK):
            written += len(chunk)
            if written > limit:
                out.close()
                os.unlink(tmp_path)
                raise ApiError(
                    413,
                    "limit_exceeded",
                    f"upload exceeds {limit} bytes (MEMAUDIT_MAX_UPLOAD_BYTES)",
                    {"limit": "max_upload_bytes", "value": written},
                )
            out.write(chunk)
    return tmp_path


def store_upload(
    session: Session,
    settings: Settings,
    upload: BinaryIO,
    filename: str,
    key: ApiKey,
) -> tuple[Dataset, bool]:
    """Returns (the team's dataset record, created now).

    Every upload takes the same path whatever is stored already: read, hashed and parsed in
    full, then kept once per content. Another team's identical bytes give a new record of this
    team's own (201, its own id, filename and time), so nobody learns what others stored; the
    same team uploading the same bytes again gets its existing record (200).
    """
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    tmp_path = _spool(upload, str(settings.datasets_dir), settings.max_upload_bytes)
    try:
        with open(tmp_path, "rb") as stream:
            info = inspect_jsonl(stream, validate_all=True, limits=settings.dataset_limits)
    except DatasetLimitExceeded as exc:
        os.unlink(tmp_path)
        raise limit_error(filename, exc) from None
    except DatasetError as exc:
        os.unlink(tmp_path)
        raise ApiError(
            422, "invalid_dataset", f"{filename}: {exc}", {"line": exc.line_no}
        ) from None
    if info.n_records == 0:
        os.unlink(tmp_path)
        raise ApiError(422, "empty_dataset", f"{filename} has no records")

    # The same bytes replace themselves: one file per content, whoever uploads it.
    final_path = uploaded_dataset_path(settings.datasets_dir, info.sha256)
    os.chmod(tmp_path, 0o640)
    os.replace(tmp_path, final_path)
    existing = session.scalar(_team_record(key, info.sha256))
    if existing is not None:
        return existing, False
    dataset = Dataset(
        id=new_dataset_id(),
        team_id=key.team_id,
        sha256=info.sha256,
        filename=filename[:500],
        n_records=info.n_records,
        size_bytes=info.size_bytes,
        fields=info.fields,
        created_by=key.id,
    )
    session.add(dataset)
    try:
        session.commit()
    except IntegrityError:  # the team's concurrent upload of the same bytes won
        session.rollback()
        return session.scalars(_team_record(key, info.sha256)).one(), False
    return dataset, True


def _team_record(key: ApiKey, sha256: str) -> Select[tuple[Dataset]]:
    """The key's team's record of this content (at most one: unique per team and sha256)."""
    return select(Dataset).where(Dataset.team_id == key.team_id, Dataset.sha256 == sha256)
