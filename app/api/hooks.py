"""Registry webhooks: authenticated by their signatures (MLflow) or shared secret (the Hub)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app import hooks
from app.deps import CeleryDep, SettingsDep

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])


@router.post("/mlflow", status_code=202)
async def mlflow(request: Request, settings: SettingsDep, celery: CeleryDep) -> dict[str, str]:
    """Verify, record and queue; the worker does the rest, so MLflow gets its 202 at once."""
    body = await request.body()
    key = await run_in_threadpool(
        hooks.accept_mlflow, request.app.state.db, settings, request.headers, body
    )
    await run_in_threadpool(hooks.dispatch, celery, settings, key)
    return {"delivery": key, "status": "accepted"}


@router.post("/huggingface", status_code=202)
async def huggingface(request: Request, settings: SettingsDep, celery: CeleryDep) -> dict[str, str]:
    body = await request.body()
    key = await run_in_threadpool(
        hooks.accept_huggingface, request.app.state.db, settings, request.headers, body
    )
    await run_in_threadpool(hooks.dispatch, celery, settings, key)
    return {"delivery": key, "status": "accepted"}
