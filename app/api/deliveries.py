"""Webhook deliveries: admin scope, since they name registry models and the policies they hit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deliveries import list_deliveries
from app.deps import AdminKey, SessionDep, SettingsDep
from core.schemas import MAX_DB_INT, DeliveriesPublic, DeliveryOutcome, DeliverySource

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])


@router.get("", response_model=DeliveriesPublic)
def list_all(
    session: SessionDep,
    settings: SettingsDep,
    _key: AdminKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    source: DeliverySource | None = None,
    outcome: DeliveryOutcome | None = None,
) -> DeliveriesPublic:
    """Newest first: accepted deliveries, the latest refused ones, reconciliation's catches."""
    return list_deliveries(
        session, settings, source=source, outcome=outcome, limit=limit, offset=offset
    )
