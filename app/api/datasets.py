"""Dataset uploads (multipart JSONL)."""

from __future__ import annotations

from fastapi import APIRouter, File, Response, UploadFile

from app.datasets import store_upload
from app.deps import SessionDep, SettingsDep, SubmitKey
from core.models import Dataset
from core.schemas import DatasetPublic

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def to_public(dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id,
        uri=f"dataset:{dataset.id}",
        sha256=dataset.sha256,
        n_records=dataset.n_records,
        size_bytes=dataset.size_bytes,
        fields=list(dataset.fields),
        filename=dataset.filename,
        created_by=dataset.created_by,
        created_at=dataset.created_at,
    )


@router.post(
    "",
    response_model=DatasetPublic,
    status_code=201,
    responses={
        200: {"model": DatasetPublic, "description": "your team uploaded the same bytes before"}
    },
)
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    key: SubmitKey,
    response: Response,
    file: UploadFile = File(...),
) -> DatasetPublic:
    dataset, created = store_upload(session, settings, file.file, file.filename or "upload", key)
    if not created:
        response.status_code = 200
    return to_public(dataset)
