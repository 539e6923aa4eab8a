"""Registry webhooks: authenticated by their signatures (MLflow), shared secret (the Hub), or
access token and signature (W&B)."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app import hooks, wandb_hooks
from app.deps import CeleryDep, SettingsDep
from app.throttle import count_event
from core.config import Settings
from core.errors import ApiError

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])


def _refused(request: Request, source: str, refused: ApiError, body: bytes) -> None:
    """Counted per reason for the metrics, and kept among the latest for the deliveries page."""
    with request.app.state.db.session() as session:
        hooks.record_refusal(session, source, refused, request.headers, body)
        count_event(session, f"webhook.{source}.{refused.code}")


async def _accept(
    request: Request,
    settings: Settings,
    celery: Celery,
    accept: Callable[..., str],
    source: str,
) -> dict[str, str]:
    """Verify and record in the database, queue the handling; the worker does the rest.
    A refused delivery is counted and kept among the latest few, its body never stored."""
    body = await request.body()
    try:
        key = await run_in_threadpool(accept, request.app.state.db, settings, request.headers, body)
    except ApiError as refused:
        await run_in_threadpool(_refused, request, source, refused, body)
        raise
    await run_in_threadpool(hooks.dispatch, celery, settings, key)
    return {"delivery": key, "status": "accepted"}


@router.post("/mlflow", status_code=202)
async def mlflow(request: Request, settings: SettingsDep, celery: CeleryDep) -> dict[str, str]:
    """MLflow >= 3.3 webhooks, answered 202 as soon as they are recorded."""
    return await _accept(request, settings, celery, hooks.accept_mlflow, "mlflow")


@router.post("/huggingface", status_code=202)
async def huggingface(request: Request, settings: SettingsDep, celery: CeleryDep) -> dict[str, str]:
    return await _accept(request, settings, celery, hooks.accept_huggingface, "huggingface")


@router.post("/wandb", status_code=202, response_model=None)
async def wandb(
    request: Request, settings: SettingsDep, celery: CeleryDep
) -> dict[str, str] | JSONResponse:
    """W&B registry automations (a version linked, an alias added), answered 202 once recorded;
    the same event again is answered 200 with the first one's state, and starts nothing, unless
    the first was never handled (failed, or lost): then it is queued again as a retry."""
    body = await request.body()
    try:
        accepted = await run_in_threadpool(
            wandb_hooks.accept_wandb, request.app.state.db, settings, request.headers, body
        )
    except ApiError as refused:
        await run_in_threadpool(_refused, request, "wandb", refused, body)
        raise
    key = accepted.key
    if accepted.earlier is not None:
        return JSONResponse({"delivery": key, "status": "duplicate", "earlier": accepted.earlier})
    await run_in_threadpool(hooks.dispatch, celery, settings, key)
    if accepted.retry:
        return {"delivery": key, "status": "accepted", "retry": str(accepted.retry)}
    return {"delivery": key, "status": "accepted"}
