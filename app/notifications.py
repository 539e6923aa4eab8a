"""A team's notification channels: made, listed and deleted through the API, team-confined.

A key manages its own team's channels with submit scope (as it may point an audit's callback
anywhere the callback rules allow) and reads them with read scope; an admin key manages every
team's. The webhook URL is checked against the callback address rules when the channel is
made (and again on every send), and never leaves the service again in full; an e-mail
channel's recipients must be in MEMAUDIT_SMTP_ALLOWED_DOMAINS (when set), also on every send.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import teams
from core.audit_log import record
from core.config import Settings
from core.errors import ApiError
from core.models import ApiKey, NotificationChannel, NotificationDelivery
from core.notifications import mail_configured, masked_url, recipients_outside
from core.outbound import UrlNotAllowed, check_url
from core.schemas import ChannelCreate, ChannelPublic
from core.tenancy import can_see, visible


def to_public(channel: NotificationChannel) -> ChannelPublic:
    return ChannelPublic(
        id=channel.id,
        team_id=channel.team_id,
        name=channel.name,
        kind=channel.kind,
        url=masked_url(channel.webhook_url) if channel.webhook_url else None,
        recipients=list(channel.recipients or []),
        events=list(channel.events or []),
        slack_blocks=channel.slack_blocks,
        created_by=channel.created_by,
        created_at=channel.created_at,
    )


def _team_id(session: Session, name: str | None, key: ApiKey) -> str:
    """The key's own team, or (admin keys) the team the body names."""
    if name is None:
        return key.team_id
    team = teams.named_team(session, name)
    if not can_see(key, team.id):
        raise ApiError(403, "forbidden", "a key manages its own team's channels only")
    return team.id


def _check_target(body: ChannelCreate, settings: Settings) -> None:
    if body.kind == "webhook":
        try:
            check_url(body.url or "", settings.callback_hosts, settings.callback_allow_private)
        except (UrlNotAllowed, ValueError) as exc:  # ValueError: a name IDNA cannot encode
            raise ApiError(422, "webhook_url_not_allowed", str(exc)) from None
    elif not mail_configured(settings):
        raise ApiError(
            422,
            "email_not_configured",
            "e-mail channels need the service's relay: MEMAUDIT_SMTP_HOST and MEMAUDIT_SMTP_FROM",
        )
    elif outside := recipients_outside(body.recipients, settings.smtp_domains):
        raise ApiError(
            422,
            "recipient_not_allowed",
            f"{', '.join(outside)}: not in a domain this service mails "
            "(MEMAUDIT_SMTP_ALLOWED_DOMAINS)",
        )


def create_channel(
    session: Session, settings: Settings, body: ChannelCreate, key: ApiKey
) -> NotificationChannel:
    team_id = _team_id(session, body.team, key)
    _check_target(body, settings)
    taken = session.scalar(
        select(NotificationChannel.id).where(
            NotificationChannel.team_id == team_id, NotificationChannel.name == body.name
        )
    )
    if taken is not None:
        raise ApiError(409, "channel_exists", f"the team has a channel named {body.name!r}")
    channel = NotificationChannel(
        team_id=team_id,
        name=body.name,
        kind=body.kind,
        webhook_url=body.url,
        slack_blocks=body.slack_blocks,
        recipients=body.recipients,
        events=body.events,
        created_by=key.id,
    )
    session.add(channel)
    session.flush()
    # Where a team's outcomes go is team configuration: logged, without the webhook's URL.
    record(session, "channel.created", "channel", channel.id, _recorded(channel))
    session.commit()
    return channel


def _recorded(channel: NotificationChannel) -> dict:
    return {
        "name": channel.name,
        "team": channel.team_id,
        "kind": channel.kind,
        "events": list(channel.events or []),
        "recipients": len(channel.recipients or []),
    }


def list_channels(
    session: Session, key: ApiKey, limit: int, offset: int
) -> tuple[list[NotificationChannel], int]:
    query = visible(select(NotificationChannel), NotificationChannel.team_id, key)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(NotificationChannel.created_at, NotificationChannel.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(count or 0)


def get_channel(session: Session, channel_id: str, key: ApiKey) -> NotificationChannel:
    """Another team's channel answers exactly as one that does not exist."""
    channel = session.get(NotificationChannel, channel_id)
    if channel is None or not can_see(key, channel.team_id):
        raise ApiError(404, "not_found", f"no channel {channel_id!r}")
    return channel


def delete_channel(session: Session, channel: NotificationChannel) -> None:
    """The channel and its delivery log; a retry already queued finds it gone and stops."""
    record(session, "channel.deleted", "channel", channel.id, _recorded(channel))
    session.delete(channel)
    session.commit()


def list_deliveries(
    session: Session,
    key: ApiKey,
    *,
    channel_id: str | None,
    audit_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[NotificationDelivery], int]:
    """Every attempt, newest first, of the channels the key's team owns (an admin's: all)."""
    query = visible(
        select(NotificationDelivery).join(
            NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id
        ),
        NotificationChannel.team_id,
        key,
    )
    if channel_id is not None:
        query = query.where(NotificationDelivery.channel_id == channel_id)
    if audit_id is not None:
        query = query.where(NotificationDelivery.audit_id == audit_id)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(
        query.order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(count or 0)


def audit_notifications(
    session: Session, audit_id: str
) -> list[tuple[NotificationDelivery, NotificationChannel]]:
    """Every attempt to tell of one audit, oldest first, with its channel (the audit's team's,
    so whoever sees the audit sees them): the report page's table."""
    rows = session.execute(
        select(NotificationDelivery, NotificationChannel)
        .join(NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id)
        .where(NotificationDelivery.audit_id == audit_id)
        .order_by(NotificationDelivery.created_at, NotificationChannel.name)
    ).all()
    return [(delivery, channel) for delivery, channel in rows]
