"""The tables. The database is the source of truth; the broker only carries shard ids."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.db import utcnow


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class AuditStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)
    FINAL = (SUCCEEDED, FAILED, CANCELLED)


class ShardStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


DEFAULT_TEAM = "default"  # the team every key, audit, dataset and policy of 0.1 belongs to
EVERYTHING = "*"  # a grant of every configured root, model name or repository


class Team(Base):
    """Who owns audits, datasets and policies, and which models and data its keys may audit."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Folders inside MODEL_ROOTS / DATA_ROOTS (or "*": every root); each confines on its own,
    # so a link in one team's folder cannot lead into another's.
    model_folders: Mapped[list[Any]] = mapped_column(JSON, default=list)
    data_folders: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Globs over MLflow registered model names, Hugging Face repository ids, and chat endpoint
    # models as `<model>@<base URL>` (one shared endpoint key must not audit another team's
    # hosted fine-tune).
    mlflow_models: Mapped[list[Any]] = mapped_column(JSON, default=list)
    hf_repos: Mapped[list[Any]] = mapped_column(JSON, default=list)
    chat_endpoints: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Globs over Weights & Biases artifact collections, `<entity>/<project>/<collection>`.
    wandb_artifacts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class KeyKind:
    KEY = "key"  # a machine's API key: the secret is shown once, stored as a hash
    USER = "user"  # a person signed in through the identity provider: no usable key at all


class ApiKey(Base):
    """Every authenticated caller: a machine's API key, or a person who signed in through the
    identity provider (kind `user`), so ownership, confinement and "who" work alike for both."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # The first characters of the key, stored in clear to find the row; the rest only as a hash.
    prefix: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), default=DEFAULT_TEAM, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(16), default=KeyKind.KEY, server_default=KeyKind.KEY)
    # A person's identity at the identity provider: `<issuer> <sub>` (a `sub` is unique only
    # per issuer); None for machine keys.
    subject: Mapped[str | None] = mapped_column(String(500), unique=True, index=True)
    email: Mapped[str | None] = mapped_column(String(320))

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


class Dataset(Base):
    """One team's record of an upload; the bytes are stored once per content (sha256)."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("team_id", "sha256", name="uq_datasets_team_sha256"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), default=DEFAULT_TEAM)
    sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(500))
    n_records: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    fields: Mapped[list[Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(32))  # the API key that uploaded it
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditPolicy(Base):
    """Which registered models are audited, with which checks on which data, and the thresholds
    that turn the summary into a pass or fail verdict."""

    __tablename__ = "audit_policies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The team its audits belong to; its models must lie within that team's grants.
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), default=DEFAULT_TEAM)
    source: Mapped[str] = mapped_column(String(32))  # mlflow | huggingface | wandb
    # A glob over model names (W&B: `<entity>/<project>/<collection>`)
    model_pattern: Mapped[str] = mapped_column(String(500))
    dataset_uri: Mapped[str] = mapped_column(Text)
    checks: Mapped[list[Any]] = mapped_column(JSON)
    thresholds: Mapped[list[Any]] = mapped_column(JSON)
    # What an `inconclusive` verdict does to a promotion: `block` (the default) or `allow`.
    on_inconclusive: Mapped[str] = mapped_column(String(16), default="block")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # What may keep its audits from counting every record, or from reaching a verdict: a pass
    # over the dataset when the policy is written (`source: dataset`), the token counts of
    # the latest audit of each matched model (`source: audit`). See core/policy_fit.py.
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # What relative conditions compare with (core/baselines.py): an MLflow alias or version, a
    # Hub revision, or `audit:<id>`; resolved when each audit starts.
    baseline: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Audit(Base):
    __tablename__ = "audits"
    __table_args__ = (
        # The per-key limit on active audits counts through this.
        Index("ix_audits_created_by_status", "created_by", "status"),
        # A team's audits, newest first: every list a key sees.
        Index("ix_audits_team_created", "team_id", "created_at"),
        UniqueConstraint("team_id", "idempotency_key", name="uq_audits_team_idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), default=DEFAULT_TEAM)
    status: Mapped[str] = mapped_column(String(16), default=AuditStatus.QUEUED, index=True)
    # None: a dataset audit, run without a model.
    model_uri: Mapped[str | None] = mapped_column(Text, index=True)
    # The registered model (or directory) the URI is a version of: the model page's key.
    model_family: Mapped[str | None] = mapped_column(Text, index=True, server_default="")
    model_version: Mapped[str | None] = mapped_column(String(200))
    reference_model_uri: Mapped[str | None] = mapped_column(Text)
    dataset_uri: Mapped[str] = mapped_column(Text)
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    n_samples: Mapped[int] = mapped_column(Integer)
    checks: Mapped[list[Any]] = mapped_column(JSON)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    callback_url: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Rows per check and member label, counted once at finalize: {check: {all, true, false}}.
    row_counts: Mapped[dict[str, Any]] = mapped_column(JSON, server_default=text("'{}'"))
    created_by: Mapped[str | None] = mapped_column(String(32))
    # The policy that started this audit (a registry event), and its verdict once finished.
    policy_id: Mapped[str | None] = mapped_column(
        ForeignKey("audit_policies.id", ondelete="SET NULL"), index=True
    )
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The policy's baseline as resolved when this audit started ({ref, model_uri, version,
    # audit_id} or {ref, error}), and the audit whose records its relative conditions compare
    # with (this audit itself when it audits the baseline).
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    baseline_audit_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # The verdict waits for the baseline's audit to end (`pending`); cleared by the one
    # conditional UPDATE that reaches it, so it is reached and announced once.
    verdict_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class SplitStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FINAL = (SUCCEEDED, FAILED)


class Split(Base):
    """A member / non-member split built for a team: the blind baseline of the sets as given
    and, when matched, of the kept subsets; the combined labelled dataset once it succeeded."""

    __tablename__ = "splits"
    __table_args__ = (Index("ix_splits_team_created", "team_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), default=DEFAULT_TEAM)
    status: Mapped[str] = mapped_column(String(16), default=SplitStatus.QUEUED)
    members_uri: Mapped[str] = mapped_column(Text)
    nonmembers_uri: Mapped[str] = mapped_column(Text)
    match: Mapped[bool] = mapped_column(Boolean, default=False)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    # before, after, matching, counts: worker.split_builder's report
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(32))  # the API key that asked
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class BrowserSession(Base):
    """A signed-in browser: the cookie holds a random id, stored here only as its hash; it
    ends when it expires, when it signs out, or when its key is revoked."""

    __tablename__ = "browser_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class OidcSignIn(Base):
    """A sign-in through the identity provider, from the redirect until the browser comes back:
    the browser's cookie holds a random id (stored here as its hash), and the row its PKCE
    verifier, state and nonce. Taken once; short-lived."""

    __tablename__ = "oidc_sign_ins"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    next_path: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ThrottleWindow(Base):
    """Failed sign-ins and bad keys per client and window, shared by every API process."""

    __tablename__ = "throttle_windows"

    client: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class EventCount(Base):
    """Counts of refused events kept as numbers, not rows (bad webhook signatures)."""

    __tablename__ = "event_counts"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class CallbackDelivery(Base):
    """One attempt to POST an audit's result to its callback URL: the delivery log."""

    __tablename__ = "callback_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebhookDelivery(Base):
    """One registry event received: the replay guard (its id) and what was done about it."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # "<source>:<delivery id>"
    source: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32), default="received")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class WebhookRefusal(Base):
    """A delivery refused at the door (bad signature, stale, unsigned, replayed): what a user
    needs to mend the webhook, never its body. Only the latest few per source are kept; the
    key is our own, so a refused delivery id can never block a later genuine one."""

    __tablename__ = "webhook_refusals"
    __table_args__ = (Index("ix_webhook_refusals_source_id", "source", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))  # the refusal's error code
    message: Mapped[str] = mapped_column(String(500))
    delivery_id: Mapped[str | None] = mapped_column(String(200))  # as presented, unverified
    event: Mapped[str | None] = mapped_column(String(100))  # as the body names it, unverified
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class AuditLogEntry(Base):
    """Who changed what: one row per audit created or cancelled, policy, key or team changed.

    Append-only: the migration puts a trigger on the table that refuses UPDATE and DELETE. No
    foreign keys, so deleting what an entry names can never cascade into the log; the actor is
    copied (id, name, kind, team) as it was when it acted."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_actor", "actor_id", "id"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_target", "target_type", "target_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(32))  # an ApiKey id; None: cli, system
    actor_name: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(32))  # key (or the ApiKey's kind), cli, ...
    actor_team_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))  # e.g. policy.updated
    target_type: Mapped[str] = mapped_column(String(32))  # audit | policy | key | team
    target_id: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(32))
    client: Mapped[str | None] = mapped_column(String(100))


class WorkerHost(Base):
    """A host that has run a worker, and when it last claimed work: a SQLite database lives
    on one host's disk, so a worker on a second host is refused while the first is alive."""

    __tablename__ = "worker_hosts"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Shard(Base):
    """A fixed slice [start, stop) of an audit's records: the unit of work, lease and retry."""

    __tablename__ = "shards"
    __table_args__ = (UniqueConstraint("audit_id", "index"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ShardStatus.QUEUED, index=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


NO_VALUE = -1e300  # a sort key's "no value": below every real score


def real_value(value: float | None) -> float | None:
    """A sort key as a value: None where it holds NO_VALUE."""
    return None if value is None or value <= NO_VALUE else value


SORT_SLOTS = (1, 2, 3, 4)  # worker.checks.MAX_TABLE_COLUMNS


class SampleResult(Base):
    """One check's values for one record; the key makes a re-run overwrite, never duplicate.

    `score`, `member` and `sort_1..4` copy the values the records table sorts and filters by
    into indexed columns, so a million-row audit sorts and pages in the database. Sort columns
    are never NULL: a missing value is NO_VALUE, below every real one, so one plain index
    serves both directions on SQLite and PostgreSQL alike.
    """

    __tablename__ = "sample_results"
    __table_args__ = (
        Index("ix_sample_results_score", "audit_id", "check", "score", "sample_index"),
        Index(
            "ix_sample_results_member_score", "audit_id", "check", "member", "score", "sample_index"
        ),
        *[
            Index(f"ix_sample_results_sort_{i}", "audit_id", "check", f"sort_{i}", "sample_index")
            for i in SORT_SLOTS
        ],
        # Covers the id search: matches are found in this narrow index, then sorted.
        Index(
            "ix_sample_results_search", "audit_id", "check", "sample_id", "score", "sample_index"
        ),
    )

    audit_id: Mapped[str] = mapped_column(
        ForeignKey("audits.id", ondelete="CASCADE"), primary_key=True
    )
    check: Mapped[str] = mapped_column(String(64), primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[str] = mapped_column(Text)
    values: Mapped[dict[str, Any]] = mapped_column("values_json", JSON)
    score: Mapped[float] = mapped_column(Float, server_default=text(str(NO_VALUE)))
    member: Mapped[bool | None] = mapped_column(Boolean)
    sort_1: Mapped[float] = mapped_column(Float, server_default=text(str(NO_VALUE)))
    sort_2: Mapped[float] = mapped_column(Float, server_default=text(str(NO_VALUE)))
    sort_3: Mapped[float] = mapped_column(Float, server_default=text(str(NO_VALUE)))
    sort_4: Mapped[float] = mapped_column(Float, server_default=text(str(NO_VALUE)))
    # The token-by-token view of a record, read only when one record is opened.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class NotificationEvent:
    """What a channel may be told: a policy audit's verdict, an audit that failed."""

    POLICY_OUTCOME = "policy.outcome"
    AUDIT_FAILED = "audit.failed"
    ALL = (POLICY_OUTCOME, AUDIT_FAILED)


class NotificationChannel(Base):
    """Where a team is told of its audits' outcomes: a Slack-compatible incoming webhook or
    e-mail recipients. The webhook URL is a secret (whoever holds it can post to the room):
    stored to send, never returned in full, logged or put in a message."""

    __tablename__ = "notification_channels"
    __table_args__ = (
        UniqueConstraint("team_id", "name", name="uq_notification_channels_team_name"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # webhook | email
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # Slack's `blocks` besides `text` (receivers that only read `text` ignore them).
    slack_blocks: Mapped[bool] = mapped_column(Boolean, default=False)
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    events: Mapped[list[Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(32))  # the API key that made it
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NotificationDelivery(Base):
    """One attempt to tell a channel of one audit outcome: the delivery log, and the guard that
    sends each outcome to each channel once (a delivered row ends every later attempt)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        Index("ix_notification_deliveries_channel_audit", "channel_id", "audit_id", "outcome"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("notification_channels.id", ondelete="CASCADE")
    )
    audit_id: Mapped[str] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    # The outcome told: `failed`, or the policy verdict's status; a later different outcome of
    # the same audit (a verdict reached after its baseline ended) is told again.
    outcome: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer)
    # The receiver's answer: an HTTP status, or an SMTP reply code; None when none came.
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
