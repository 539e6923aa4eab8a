"""Notification channels and their delivery log: a team's own (submit scope to change, read
scope to read), every team's for an admin key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app import notifications
from app.deps import ReadKey, SessionDep, SettingsDep, SubmitKey
from core.schemas import (
    MAX_DB_INT,
    ChannelCreate,
    ChannelPublic,
    ChannelsPublic,
    NotificationDeliveriesPublic,
    NotificationDeliveryPublic,
)

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_DB_INT)]
Id = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.post("/channels", response_model=ChannelPublic, status_code=201)
def create(
    body: ChannelCreate, session: SessionDep, settings: SettingsDep, key: SubmitKey
) -> ChannelPublic:
    """A webhook URL is shown masked from here on: keep it where you found it."""
    return notifications.to_public(notifications.create_channel(session, settings, body, key))


@router.get("/channels", response_model=ChannelsPublic)
def list_all(
    session: SessionDep, key: ReadKey, limit: Limit = 100, offset: Offset = 0
) -> ChannelsPublic:
    rows, count = notifications.list_channels(session, key, limit, offset)
    return ChannelsPublic(data=[notifications.to_public(c) for c in rows], count=count)


@router.get("/channels/{channel_id}", response_model=ChannelPublic)
def read(channel_id: str, session: SessionDep, key: ReadKey) -> ChannelPublic:
    return notifications.to_public(notifications.get_channel(session, channel_id, key))


@router.delete("/channels/{channel_id}", status_code=204)
def delete(channel_id: str, session: SessionDep, key: SubmitKey) -> Response:
    notifications.delete_channel(session, notifications.get_channel(session, channel_id, key))
    return Response(status_code=204)


@router.get("/deliveries", response_model=NotificationDeliveriesPublic)
def deliveries(
    session: SessionDep,
    key: ReadKey,
    channel_id: Id = None,
    audit_id: Id = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> NotificationDeliveriesPublic:
    """Every attempt, newest first: its answer (HTTP status or SMTP code), error and time."""
    rows, count = notifications.list_deliveries(
        session, key, channel_id=channel_id, audit_id=audit_id, limit=limit, offset=offset
    )
    return NotificationDeliveriesPublic(
        data=[NotificationDeliveryPublic.model_validate(r) for r in rows], count=count
    )
