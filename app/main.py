"""The FastAPI application: routers, error handlers, static files."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import core
from app.api import (
    audit_log,
    audits,
    checks,
    compare,
    datasets,
    deliveries,
    docs,
    evidence,
    health,
    hooks,
    metrics,
    notifications,
    policies,
    splits,
    teams,
)
from app.body_limits import BodyLimitMiddleware
from app.dashboard import oidc_sign_in
from app.dashboard import routes as dashboard
from app.errors import install_error_handlers
from app.openapi import documented_openapi
from app.request_context import RequestContextMiddleware
from app.security_headers import SecurityHeadersMiddleware
from core.celery_app import create_celery
from core.config import Settings, get_settings
from core.db import Database
from core.integrations import log_integrations
from worker.checks.registry import REGISTRY

STATIC_DIR = Path(__file__).resolve().parent.parent / "frontend" / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    REGISTRY.load()  # a check family that cannot be read stops the start, by name
    application = FastAPI(
        title="memaudit",
        version=core.__version__,
        description="Memorization audits for ML models and datasets.",
        # The schema and docs are served behind a key like every route but health (docs.py).
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    application.state.settings = settings
    application.state.db = Database(settings.database_url)
    application.state.celery = create_celery(settings)
    install_error_handlers(application)
    log_integrations(settings)
    for router in (
        health.router,
        docs.router,
        checks.router,
        datasets.router,
        audits.router,
        audit_log.router,
        compare.router,
        splits.router,
        evidence.router,
        policies.router,
        teams.router,
        hooks.router,
        deliveries.router,
        notifications.router,
        metrics.router,
        dashboard.router,
        oidc_sign_in.router,
    ):
        application.include_router(router)
    application.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    application.add_middleware(BodyLimitMiddleware, settings=settings)
    application.add_middleware(SecurityHeadersMiddleware)
    application.add_middleware(RequestContextMiddleware)
    application.openapi = lambda: documented_openapi(application)  # type: ignore[method-assign]
    # What start-up built (torch, transformers, the app: ~250k objects) lives as long as the
    # process; frozen, a full garbage collection no longer walks it (a 200 ms pause on this
    # machine, in the middle of whichever request triggered it).
    gc.collect()
    gc.freeze()
    return application
