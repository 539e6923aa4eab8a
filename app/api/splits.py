"""Split routes: build a member / non-member split in a worker, read it back."""

from __future__ import annotations

from fastapi import APIRouter

from app import splits
from app.deps import CeleryDep, ReadKey, SessionDep, SettingsDep, SubmitKey
from core.schemas import SplitCreate, SplitPublic

router = APIRouter(prefix="/v1/splits", tags=["splits"])


@router.post("", response_model=SplitPublic, status_code=202)
def submit(
    body: SplitCreate, session: SessionDep, settings: SettingsDep, celery: CeleryDep, key: SubmitKey
) -> SplitPublic:
    """The blind baseline of the two sets (and, with match, of matched subsets), measured in a
    worker; the combined labelled dataset becomes one of the team's datasets."""
    return splits.to_public(splits.submit_split(session, settings, celery, body, key))


@router.get("/{split_id}", response_model=SplitPublic)
def get_split(split_id: str, session: SessionDep, key: ReadKey) -> SplitPublic:
    return splits.to_public(splits.get_split(session, split_id, key))
