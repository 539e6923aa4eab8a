"""The check-kind registry, as the API shows it."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ReadKey
from core.schemas import CheckPublic, ChecksPublic
from worker.checks.registry import REGISTRY

router = APIRouter(prefix="/v1/checks", tags=["checks"])


@router.get("", response_model=ChecksPublic)
def list_checks(_key: ReadKey) -> ChecksPublic:
    data = [CheckPublic(**check.describe()) for check in REGISTRY.kinds.values()]
    return ChecksPublic(data=data, count=len(data))
