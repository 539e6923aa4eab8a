"""Dataset uploads: validated line by line, stored once per content (sha256)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import ApiError
from app.models import Dataset
from worker.loaders.datasets import (
    DatasetError,
    DatasetLimitExceeded,
    dataset_id_for,
    inspect_jsonl,
    uploaded_dataset_path,
)

CHUNK = 1 << 20


def limit_error(name: str, exc: DatasetLimitExceeded) -> ApiError:
    return ApiError(
        413,
        "limit_exceeded",
        f"{name}: {exc}",
        {"limit": exc.limit, "value": exc.value, "line": exc.line_no},
    )


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
    created_by: str | None = None,
) -> tuple[Dataset, bool]:
    """Returns (dataset, created); the same bytes uploaded twice give the same dataset."""
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

    dataset_id = dataset_id_for(info.sha256)
    existing = session.get(Dataset, dataset_id)
    final_path = uploaded_dataset_path(settings.datasets_dir, dataset_id)
    if existing is not None and final_path.is_file():
        os.unlink(tmp_path)
        return existing, False
    shutil.move(tmp_path, final_path)
    os.chmod(final_path, 0o640)
    if existing is not None:
        return existing, False
    dataset = Dataset(
        id=dataset_id,
        sha256=info.sha256,
        filename=filename[:500],
        n_records=info.n_records,
        size_bytes=info.size_bytes,
        fields=info.fields,
        created_by=created_by,
    )
    session.add(dataset)
    session.commit()
    return dataset, True
