"""API shapes: `XCreate` is what may come in, `XPublic` what goes out, `XsPublic` for lists."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    field_validator,
    model_validator,
)

from core.models import real_value

MAX_DB_INT = 2**31 - 1  # an INTEGER column (sample indexes, offsets) holds no more


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stored naive in UTC (core.db.utcnow); sent as RFC 3339 with its offset, as the schema says.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def _refuse_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item)
    return value


class StrictModel(BaseModel):
    """What may come in: no unknown fields, and no NUL anywhere (PostgreSQL text refuses it)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        return _refuse_nul(data)


class ModelRef(StrictModel):
    uri: str = Field(
        ..., min_length=1, max_length=4096, examples=["path:/data/models/gpt2-finetuned"]
    )


class DatasetRef(StrictModel):
    uri: str = Field(
        ..., min_length=1, max_length=4096, examples=["dataset:ds_0123456789abcdef01234567"]
    )


MAX_PARAMS = 64  # a check kind's params model validates each; this bounds the map itself
MAX_CHECKS = 32
MAX_LABELS = 32
LabelName = Annotated[str, Field(min_length=1, max_length=64)]
LabelValue = Annotated[str, Field(max_length=256)]


class CheckRequest(StrictModel):
    kind: str = Field(..., max_length=64, examples=["loss"])
    params: dict[Annotated[str, Field(max_length=64)], Any] = Field(
        default_factory=dict, max_length=MAX_PARAMS
    )


class AuditCreate(StrictModel):
    # None: a dataset audit, every check a kind that runs without a model.
    model: ModelRef | None = None
    reference_model: ModelRef | None = None
    dataset: DatasetRef
    checks: list[CheckRequest] = Field(..., min_length=1, max_length=MAX_CHECKS)
    labels: dict[LabelName, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    callback_url: HttpUrl | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class Progress(BaseModel):
    done: int
    total: int


class FindingPublic(BaseModel):
    """One check's verdict in words, as the report page opens with it."""

    kind: str
    text: str = Field(description="what was found, with the summary's numbers and 95% CIs")
    risk: Literal["high", "medium", "low", "none", "unknown"]
    control: str = Field(description="the control the check gives evidence for")
    next_step: str


class AuditPublic(BaseModel):
    id: str
    status: str
    progress: Progress
    error: str | None
    model_uri: str | None = Field(description="null for a dataset audit (no model)")
    model_family: str | None
    model_version: str | None
    reference_model_uri: str | None
    dataset_uri: str
    checks: list[dict[str, Any]]
    labels: dict[str, str]
    summary: dict[str, Any]
    provenance: dict[str, Any]
    policy_id: str | None = None
    verdict: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = Field(
        None, description="the policy's baseline as resolved when this audit started"
    )
    findings: list[FindingPublic] = Field(
        default_factory=list, description="one sentence per finished check: the report's top"
    )
    created_by: str | None = Field(None, description="id of the API key that submitted it")
    cancel_requested: bool
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    report_url: str


class AuditsPublic(BaseModel):
    data: list[AuditPublic]
    count: int


class SamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sample_index: int
    sample_id: str
    check: str
    score: float | None = Field(description="the check's rank score: higher = more memorized")
    values: dict[str, Any]

    @field_validator("score", mode="before")
    @classmethod
    def _no_value_is_none(cls, value: float | None) -> float | None:
        return real_value(value)


class SampleDetailPublic(SamplePublic):
    detail: dict[str, Any] | None = Field(description="the token-by-token view, when computed")


class SampleRecordPublic(BaseModel):
    sample_index: int
    sample_id: str
    checks: list[SampleDetailPublic]


class SamplesPublic(BaseModel):
    data: list[SamplePublic]
    count: int


class Threshold(StrictModel):
    """A condition: an absolute threshold (`op`, `value`), a comparison with the policy's
    baseline (`greater_is_better` and its margins, core/relative.py), or both."""

    metric: str = Field(..., max_length=200, examples=["extraction.greedy_extraction_rate"])
    op: Literal["<=", "<", ">=", ">"] | None = None
    value: float | None = None
    greater_is_better: bool | None = Field(
        None, description="compare with the baseline: which way of the metric is better"
    )
    min_absolute_change: float | None = Field(
        None, ge=0, description="the worsening tolerated, in the metric's units"
    )
    min_relative_change: float | None = Field(
        None, ge=0, le=1, description="the worsening tolerated, as a share of the baseline's value"
    )
    level: float | None = Field(
        None, gt=0, le=0.5, description="the paired test's significance level (default 0.05)"
    )


OnInconclusive = Literal["block", "allow"]


class PolicyCreate(StrictModel):
    name: str = Field(..., min_length=1, max_length=200)
    source: Literal["mlflow", "huggingface", "wandb"]
    model_pattern: str = Field(
        ...,
        min_length=1,
        max_length=500,
        description="glob over registered model names (MLflow), repository ids (huggingface), "
        "or artifact collections as <entity>/<project>/<collection> (wandb)",
    )
    dataset: DatasetRef
    checks: list[CheckRequest] = Field(..., min_length=1, max_length=MAX_CHECKS)
    thresholds: list[Threshold] = Field(default_factory=list, max_length=MAX_CHECKS)
    on_inconclusive: OnInconclusive = Field(
        "block",
        description="an `inconclusive` verdict (a condition on a membership metric the blind "
        "baseline or its CI withholds) blocks a promotion, or `allow`s it",
    )
    enabled: bool = True
    team: str | None = Field(
        None, min_length=1, max_length=200, description="the owning team's name; default: yours"
    )
    baseline: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="what relative conditions compare with: an MLflow alias (`champion`) or "
        "version number, a Hub revision, or `audit:<id>`",
    )


class PolicyUpdate(StrictModel):
    model_pattern: str | None = Field(None, min_length=1, max_length=500)
    dataset: DatasetRef | None = None
    checks: list[CheckRequest] | None = Field(None, min_length=1, max_length=MAX_CHECKS)
    thresholds: list[Threshold] | None = Field(None, max_length=MAX_CHECKS)
    on_inconclusive: OnInconclusive | None = None
    enabled: bool | None = None
    baseline: str | None = Field(None, max_length=300, description='`""` removes it')


class PolicyWarning(BaseModel):
    source: Literal["dataset", "audit"] = Field(
        ...,
        description="`dataset`: found by the pass over the dataset when the policy was written; "
        "`audit`: counted in the model's tokens by the policy's latest audit of that model",
    )
    check: str
    message: str
    model: str | None = Field(None, description="the registered model an `audit` warning is of")
    model_uri: str | None = None
    audit_id: str | None = None


class PolicyPublic(BaseModel):
    id: str
    name: str
    team_id: str
    source: str
    model_pattern: str
    dataset_uri: str
    checks: list[dict[str, Any]]
    thresholds: list[dict[str, Any]]
    on_inconclusive: str
    enabled: bool
    baseline: str | None = None
    warnings: list[PolicyWarning]
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PoliciesPublic(BaseModel):
    data: list[PolicyPublic]
    count: int


class ReauditRequest(StrictModel):
    model_uri: str = Field(
        ...,
        min_length=1,
        max_length=1000,
        description="the version to audit again: mlflow:models:/<name>/<version> or "
        "hf:<repo>@<sha>",
    )
    key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="one re-audit per key (a retry with the same key returns it); default: a "
        "fresh re-audit on every call",
    )


DeliverySource = Literal["mlflow", "huggingface", "wandb"]
DeliveryOutcome = Literal["received", "processed", "ignored", "failed", "reconciled", "refused"]


class DeliveryAudit(BaseModel):
    id: str
    status: str
    verdict: str | None = Field(None, description="the policy verdict once the audit finished")
    report_url: str


class DeliveryPublic(BaseModel):
    id: str = Field(..., description="`<source>:<delivery id>`, or `refused:<n>` for a refusal")
    received_at: UtcDatetime
    source: str
    event: str | None = Field(None, description="a refused delivery's is as its body named it")
    outcome: str = Field(
        ...,
        description="received (queued), processed, ignored, reconciled (found by reconciliation:"
        " the webhook never announced it) or refused (at the door; never acted upon)",
    )
    reason: str | None
    delivery_id: str | None = Field(None, description="the id a refused delivery presented")
    model_uri: str | None = None
    audits: list[DeliveryAudit] = Field(default_factory=list, description="audits it started")


class DeliveriesPublic(BaseModel):
    data: list[DeliveryPublic]
    count: int
    refused: dict[str, dict[str, int]] = Field(
        ..., description="refusals per source and reason since the service began counting"
    )
    kept_refusals: int = Field(..., description="the latest refusals kept per source")


class CallbackDeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    url: str
    status_code: int | None
    error: str | None
    duration_ms: int
    delivered: bool
    created_at: UtcDatetime


class CallbackDeliveriesPublic(BaseModel):
    data: list[CallbackDeliveryPublic]
    count: int


class DatasetPublic(BaseModel):
    id: str
    uri: str
    sha256: str
    n_records: int
    size_bytes: int
    fields: list[str]
    filename: str
    created_by: str | None = Field(None, description="id of the API key that uploaded it")
    created_at: UtcDatetime


DatasetUri = Annotated[
    str,
    Field(min_length=1, max_length=4096, examples=["dataset:ds_0123456789abcdef01234567"]),
]


class SplitCreate(StrictModel):
    members: DatasetUri = Field(..., description="the candidate members: dataset:<id> or path:")
    nonmembers: DatasetUri = Field(..., description="the candidate non-members, the same way")
    match: bool = Field(
        False, description="draw matched subsets that bring the blind baseline toward 0.5"
    )
    seed: int = Field(0, ge=0, le=MAX_DB_INT)


class SplitPublic(BaseModel):
    id: str
    status: str
    error: str | None
    members: str
    nonmembers: str
    match: bool
    seed: int
    n_members: int | None = Field(None, description="records in the candidate member set")
    n_nonmembers: int | None = None
    before: dict[str, Any] | None = Field(
        None, description="the blind baseline of the sets as given"
    )
    after: dict[str, Any] | None = Field(
        None, description="with match: a fresh blind baseline of the matched subsets"
    )
    matching: dict[str, Any] | None = Field(None, description="what was matched on, and kept")
    dataset_uri: str | None = Field(
        None, description="the combined labelled dataset (member: true|false), ready to audit"
    )
    created_by: str | None = Field(None, description="id of the API key that asked for it")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class CheckPublic(BaseModel):
    kind: str
    description: str
    params_schema: dict[str, Any]
    defaults: dict[str, Any]
    required_params: list[str] = []
    model_kinds: list[str] = Field(description='"none": runs without a model too')
    runs_without_model: bool = False
    required_fields: list[str]
    metrics: list[dict[str, Any]]


class ChecksPublic(BaseModel):
    data: list[CheckPublic]
    count: int


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ReadyPublic(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


Grant = Annotated[str, Field(min_length=1, max_length=500)]
GrantList = Annotated[list[Grant], Field(max_length=100)]


class TeamCreate(StrictModel):
    name: str = Field(..., min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][\w.-]*$")
    model_folders: GrantList = Field(
        default_factory=list, description="folders inside MODEL_ROOTS, or * for every root"
    )
    data_folders: GrantList = Field(
        default_factory=list, description="folders inside DATA_ROOTS, or * for every root"
    )
    mlflow_models: GrantList = Field(
        default_factory=list, description="globs over MLflow registered model names"
    )
    hf_repos: GrantList = Field(
        default_factory=list, description="globs over Hugging Face repository ids"
    )
    chat_endpoints: GrantList = Field(
        default_factory=list, description="globs over chat endpoint models, <model>@<base URL>"
    )
    wandb_artifacts: GrantList = Field(
        default_factory=list,
        description="globs over W&B artifact collections, <entity>/<project>/<collection>",
    )


class TeamUpdate(StrictModel):
    model_folders: GrantList | None = None
    data_folders: GrantList | None = None
    mlflow_models: GrantList | None = None
    hf_repos: GrantList | None = None
    chat_endpoints: GrantList | None = None
    wandb_artifacts: GrantList | None = None


class TeamPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    model_folders: list[str]
    data_folders: list[str]
    mlflow_models: list[str]
    hf_repos: list[str]
    chat_endpoints: list[str]
    wandb_artifacts: list[str]
    created_at: UtcDatetime


class TeamsPublic(BaseModel):
    data: list[TeamPublic]
    count: int


class KeyCreate(StrictModel):
    name: str = Field(..., min_length=1, max_length=200)
    scope: Literal["read", "submit", "admin"]
    team: str | None = Field(None, min_length=1, max_length=200, description="default: yours")


class KeyUpdate(StrictModel):
    team: str = Field(..., min_length=1, max_length=200, description="the team's id or name")


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str = Field(description="the key's first characters, shown to tell keys apart")
    kind: str = Field(
        description="key: a machine's API key; user: a person signed in through the identity "
        "provider (no usable key; scope and team from the claims at each sign-in)"
    )
    email: str | None = None
    scope: str
    team_id: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked_at: UtcDatetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself, shown this once; only its hash is stored")


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


class AuditLogActor(BaseModel):
    id: str | None = Field(description="the ApiKey's id; none for the CLI and the system")
    name: str
    kind: str = Field(
        description="`key`, `user` (a person signed in through the identity provider), `cli`, "
        "`policy`, `identity_provider` (its claims made or changed a person), `system`"
    )
    team_id: str | None


class AuditLogEntryPublic(BaseModel):
    id: int
    created_at: UtcDatetime
    actor: AuditLogActor
    action: str = Field(examples=["policy.updated"])
    target_type: str = Field(description="audit, policy, key, team or channel")
    target_id: str
    detail: dict[str, Any] = Field(description="what changed; never a secret")
    request_id: str | None = Field(description="the X-Request-ID of the request that acted")
    client: str | None = Field(description="the address the request came from")


class AuditLogPublic(BaseModel):
    data: list[AuditLogEntryPublic]
    count: int


class EvidenceKeyPublic(BaseModel):
    """An evidence signing key's public half: what an auditor pins, by its fingerprint."""

    key_id: str = Field(description="sha256:<hex> of the raw 32-byte Ed25519 public key")
    algorithm: Literal["Ed25519"]
    public_key_pem: str
    status: Literal["active", "retired"]
    created_at: datetime
    retired_at: datetime | None


class EvidenceKeysPublic(BaseModel):
    data: list[EvidenceKeyPublic]
    count: int


class EvidenceSignature(BaseModel):
    algorithm: Literal["Ed25519"]
    key_id: str = Field(description="the signing key's fingerprint; verify against your own copy")
    value: str = Field(description="base64 Ed25519 signature of the payload's RFC 8785 bytes")


class EvidencePack(BaseModel):
    payload: dict[str, Any]
    signature: EvidenceSignature


NotificationEventName = Literal["policy.outcome", "audit.failed"]
# An address as a relay takes it: no display name, no spaces or CR/LF (nothing to inject).
EMAIL_ADDRESS = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"  # noqa: E501
EmailAddress = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_ADDRESS)]
MAX_RECIPIENTS = 50
_HTTP_URL = TypeAdapter(HttpUrl)


class ChannelCreate(StrictModel):
    """A Slack-compatible incoming webhook (`url`) or e-mail recipients, and what to tell it."""

    name: str = Field(..., min_length=1, max_length=200)
    kind: Literal["webhook", "email"]
    url: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="webhook only: the incoming-webhook URL, a secret (never shown again in "
        "full); held to the callback address rules",
    )
    recipients: list[EmailAddress] = Field(
        default_factory=list, max_length=MAX_RECIPIENTS, description="email only"
    )
    events: list[NotificationEventName] = Field(
        default_factory=lambda: ["policy.outcome", "audit.failed"], min_length=1, max_length=2
    )
    slack_blocks: bool = Field(
        False, description="webhook only: Slack `blocks` besides `text` (Slack itself)"
    )
    team: str | None = Field(
        None, min_length=1, max_length=200, description="admin keys: the team's name or id"
    )

    @field_validator("url")
    @classmethod
    def _an_http_url(cls, url: str | None) -> str | None:
        """Checked as a URL, kept as given: a normalised copy might not be the hook's address."""
        if url is not None:
            _HTTP_URL.validate_python(url)
        return url

    @model_validator(mode="after")
    def _fits_its_kind(self) -> ChannelCreate:
        if self.kind == "webhook" and (self.url is None or self.recipients):
            raise ValueError("a webhook channel takes a `url` and no `recipients`")
        if self.kind == "email" and (self.url is not None or not self.recipients):
            raise ValueError("an email channel takes `recipients` and no `url`")
        if self.kind == "email" and self.slack_blocks:
            raise ValueError("`slack_blocks` is for webhook channels")
        self.events = list(dict.fromkeys(self.events))
        return self


class ChannelPublic(BaseModel):
    id: str
    team_id: str
    name: str
    kind: str
    url: str | None = Field(None, description="masked: scheme, host and the last characters")
    recipients: list[str]
    events: list[str]
    slack_blocks: bool
    created_by: str | None = Field(None, description="id of the API key that made it")
    created_at: UtcDatetime


class ChannelsPublic(BaseModel):
    data: list[ChannelPublic]
    count: int


class NotificationDeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    channel_id: str
    audit_id: str
    event: str
    outcome: str = Field(..., description="`failed`, or the policy verdict told")
    attempt: int
    status_code: int | None = Field(None, description="the HTTP status or SMTP reply code")
    error: str | None
    duration_ms: int
    delivered: bool
    created_at: UtcDatetime


class NotificationDeliveriesPublic(BaseModel):
    data: list[NotificationDeliveryPublic]
    count: int


class ThresholdPublic(BaseModel):
    """One audit's membership threshold at 1% FPR: the smallest t with at most ⌊n/100⌋ of
    its n non-members scoring above t (a record is above when its score > t)."""

    value: float | None
    n_nonmembers: int
    reason: str | None = None


class ChangeGroupPublic(BaseModel):
    kind: str = Field(
        description="newly_extractable, no_longer_extractable, "
        "newly_above_threshold or no_longer_above_threshold"
    )
    check: str
    metric: str | None = Field(description="greedy_extracted, or the membership score")
    computed: bool
    reason: str | None = Field(None, description="why this change is not computed")
    count: int | None = None
    candidate_threshold: ThresholdPublic | None = None
    baseline_threshold: ThresholdPublic | None = None


class ChangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    check: str
    metric: str
    sample_index: int
    sample_id: str
    member: bool | None
    candidate_value: float = Field(description="extraction: 1 = greedily extracted")
    baseline_value: float
    candidate_threshold: float | None
    baseline_threshold: float | None


class ChangesPublic(BaseModel):
    """Per-record changes of the candidate audit against the baseline (the second id)."""

    candidate_id: str
    baseline_id: str
    data: list[ChangePublic]
    count: int = Field(description="changes matching the filters, across pages")
    totals: dict[str, int] = Field(description="changes per kind, over every computed metric")
    groups: list[ChangeGroupPublic]
