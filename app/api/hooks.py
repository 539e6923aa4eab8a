"""Registry webhooks: authenticated by their signatures (MLflow) or shared secret (the Hub)."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app import hooks
from app.config import Settings
from app.deps import CeleryDep, SettingsDep

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])


async def _accept(
    request: Request, settings: Settings, celery: Celery, accept: Callable[..., str]
) -> dict[str, str]:
    """Verify and record in the database, queue the handling; the worker does the rest."""
    body = await request.body()
    key = await run_in_threadpool(accept, request.app.state.db, settings, request.headers, body)
    await run_in_threadpool(hooks.dispatch, celery, settings, key)
    return {"delivery": key, "status": "accepted"}


@router.post("/mlflow", status_code=202)
async def mlflow(request: Request, settings: SettingsDep, celery: CeleryDep) -> dict[str, str]:
    """MLflow >= 3.3 webhooks, answered 202 as soon as they are recorded."""
    return await _accept(request, settings, celery, hooks.accept_mlflow)


@router.post("/huggingface", status_code=202)
async def huggingface(request: Request, settings: SettingsDep, celery: CeleryDep) -> dict[str, str]:
    return await _accept(request, settings, celery, hooks.accept_huggingface)
