"""The one typed configuration object, read from `MEMAUDIT_*` environment variables."""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.confinement import FileRules
from core.inspection.datasets import DatasetLimits

# Values that appear in examples and tutorials; a production secret is never one of them.
PLACEHOLDER_SECRETS = frozenset(
    {
        "admin", "change-me", "changeme", "change_me", "default", "example", "memaudit",
        "password", "postgres", "redis", "secret", "test", "12345678", "mlflow", "huggingface",
    }
)  # fmt: skip
MIN_WEBHOOK_SECRET_CHARS = 16


def _url_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password or ""
    except ArgumentError:
        return ""


def _split_roots(value: str) -> list[Path]:
    # As configured (made absolute, not resolved): users name paths through the same folders;
    # confinement compares with both this form and the real path.
    return [
        Path(os.path.abspath(Path(part).expanduser())) for part in value.split(os.pathsep) if part
    ]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(value: str) -> list[Network]:
    """MEMAUDIT_TRUSTED_PROXIES: comma-separated addresses or CIDR networks."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    return [ipaddress.ip_network(part, strict=False) for part in parts]


_BYTE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_bytes(value: str | int) -> int:
    """A size as people write it: 75GiB, 80GB, 512MiB or a plain number of bytes."""
    if isinstance(value, int):
        size = value
    else:
        text = value.strip().lower().replace(" ", "")
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :]
        if unit not in _BYTE_UNITS or not number:
            raise ValueError(f"{value!r} is not a size (e.g. 75GiB, 80GB, 1024)")
        try:
            amount = float(number)
        except ValueError:
            raise ValueError(f"{value!r} is not a size (e.g. 75GiB, 80GB, 1024)") from None
        if not math.isfinite(amount):
            raise ValueError(f"{value!r} is not a finite size")
        size = int(amount * _BYTE_UNITS[unit])
    if size < 1:
        raise ValueError(f"{value!r}: a size must be at least one byte")
    return size


def device_budgets(value: str) -> dict[int | str, int]:
    """MEMAUDIT_GPU_MEMORY: `device:size` pairs, a device a GPU index or `cpu`, in order."""
    budgets: dict[int | str, int] = {}
    for part in (p.strip() for p in value.split(",") if p.strip()):
        device, sep, size = part.partition(":")
        device = device.strip().lower()
        if not sep or not (device.isdigit() or device == "cpu"):
            raise ValueError(f"{part!r}: write <gpu index or cpu>:<size>, e.g. 0:75GiB")
        key = int(device) if device.isdigit() else device
        if key in budgets:
            raise ValueError(f"{part!r}: device {device} is budgeted twice")
        budgets[key] = parse_bytes(size)
    return budgets


def gpu_ids(value: str) -> list[int]:
    """MEMAUDIT_WORKER_GPUS: comma-separated CUDA device indices."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{value!r}: write GPU indices, e.g. 0,1")
    ids = [int(part) for part in parts]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{value!r}: a GPU is named twice")
    return ids


# The API scopes, in order (app.security.SCOPES): defined here, where roles are mapped on them.
SCOPE_NAMES = ("read", "submit", "admin")


def role_scopes(value: str) -> dict[str, str]:
    """MEMAUDIT_OIDC_ROLE_SCOPES: `role=scope` pairs, e.g. auditor=submit,viewer=read."""
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",") if p.strip()):
        role, sep, scope = (item.strip() for item in part.partition("="))
        if not sep or not role or scope not in SCOPE_NAMES:
            raise ValueError(f"{part!r}: write <role>=<{'|'.join(SCOPE_NAMES)}>")
        if role in mapping:
            raise ValueError(f"{part!r}: role {role!r} is mapped twice")
        mapping[role] = scope
    return mapping


def _split_hosts(value: str) -> list[str]:
    return [host.strip() for host in value.split(",") if host.strip()]


class Settings(BaseSettings):
    """Embedded defaults (SQLite, a SQLite broker) unless production URLs are given."""

    model_config = SettingsConfigDict(env_prefix="MEMAUDIT_", extra="ignore")

    environment: str = Field("development", description="development or production")
    data_dir: Path = Path(".memaudit")
    database_url: str = ""
    broker_url: str = ""
    # os.pathsep-separated allow-lists; nothing outside them is ever opened.
    model_roots: str = ""
    data_roots: str = ""
    public_url: str = "http://127.0.0.1:8000"
    queue: str = "memaudit"

    # Shards are the unit of retry: small enough that a crash loses little work.
    shard_size: int = Field(256, ge=1)
    batch_size: int = Field(16, ge=1)
    # Results are written in bulk: a transaction per this many rows or this many seconds.
    result_flush_rows: int = Field(1024, ge=1)
    result_flush_seconds: float = Field(1.0, ge=0)
    # A shard whose worker stops heartbeating for this long is given to another worker.
    lease_seconds: int = Field(300, ge=2)
    reaper_interval_seconds: float = Field(30.0, gt=0)
    # A queued shard whose message may have been lost is re-sent after this long.
    orphan_after_seconds: int = Field(600, ge=1)
    max_attempts: int = Field(3, ge=1)
    task_soft_time_limit: int = Field(6 * 3600, ge=10)
    task_time_limit: int = Field(6 * 3600 + 300, ge=20)
    worker_concurrency: int = Field(1, ge=1)
    # The GPUs one worker owns (empty: the first visible one). A model that does not fit the
    # first one's budget is split across all of them (and `cpu` if budgeted) by a device map.
    worker_gpus: str = Field("", description="CUDA indices, comma-separated, e.g. 0,1")
    # Memory a model's weights may take per device, e.g. 0:75GiB,1:75GiB,cpu:200GiB; a GPU left
    # out gets 90% of its total (the rest is the forward's activations and the head's chunks).
    gpu_memory: str = ""
    # Audits of models whose loaded size (ModelSpec.loaded_bytes) reaches the threshold go here,
    # served by workers that own several GPUs (`memaudit worker --queues ...`); empty: off.
    large_model_queue: str = ""
    large_model_min_bytes: int | str = "70GiB"
    # Limits on what one caller can ask for; each violation is a 4xx that says which limit.
    max_upload_bytes: int = Field(2 * 1024**3, ge=1)
    max_records_per_dataset: int = Field(10_000_000, ge=1)
    # Checked on the characters of `text`; tokens are cut to the model context in the worker
    # (flagged `truncated`), so this bounds the work per record before any tokenizer runs.
    max_record_chars: int = Field(1_000_000, ge=1)
    max_active_audits_per_key: int = Field(50, ge=1)
    # JSON request bodies (audits, policies, webhooks) past this many bytes are refused (413).
    max_json_body_bytes: int = Field(1024**2, ge=1024)
    # Failed keys and sign-ins per client and window before answers become 429.
    auth_failure_limit: int = Field(20, ge=1)
    auth_failure_window_seconds: int = Field(300, ge=1)
    # Addresses or CIDR networks of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    session_hours: float = Field(12.0, gt=0)  # a dashboard sign-in lasts this long
    # Pickled `.bin`/`.pt` weights can run code when unpickled; off by default, and when on they
    # are read with torch.load(weights_only=True), never a plain unpickler.
    allow_pickle_weights: bool = False
    # A TorchScript archive is a program (its graph runs as shipped); off by default.
    allow_torchscript: bool = False
    # A file with a second name (hard link) may be any file on the filesystem: refused unless on.
    allow_hardlinks: bool = False
    # Can those who submit audits write into the model and data roots? Then loaders read each
    # checked file through its pinned descriptor (a private staging directory of links to
    # /proc/self/fd/N), so nothing can be swapped between the check and the read.
    roots_writable_by_submitters: bool = True
    # A worker or shard retry waits this long before the next attempt.
    retry_delay_seconds: float = Field(10.0, ge=0)
    log_format: str = Field("json", pattern="^(json|text)$")
    log_level: str = "INFO"
    # Outbound callbacks: signed with this secret (embedded: generated into the data dir).
    callback_secret: str = ""
    callback_allowed_hosts: str = Field("", description="host globs, comma-separated; empty: any")
    callback_allow_private: bool = False
    callback_max_attempts: int = Field(5, ge=1)
    callback_backoff_seconds: float = Field(5.0, gt=0)  # doubles after each failed attempt
    callback_timeout_seconds: float = Field(10.0, gt=0)
    # Notification e-mail (a team's e-mail channels): the relay, how the connection is secured
    # (`starttls` upgrades a plain connection, `ssl` is TLS from the first byte, `none` is plain
    # text), its login and the sender. The host is resolved and judged before each connection;
    # a relay on a private network (the usual case) needs SMTP_ALLOW_PRIVATE, which opens only
    # the relay, never a team's webhook (those follow the callback rules). Recipients must be
    # in SMTP_ALLOWED_DOMAINS (or a subdomain); empty: any, refused in production, since any
    # submit key could otherwise send mail through the operator's relay to anyone. Every
    # notification is retried like a callback (CALLBACK_MAX_ATTEMPTS, _BACKOFF_SECONDS).
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: str = Field("starttls", pattern="^(starttls|ssl|none)$")
    smtp_user: str = ""
    smtp_password: str = Field("", repr=False)
    smtp_from: str = ""
    smtp_allow_private: bool = False
    smtp_allowed_domains: str = Field("", description="domains, comma-separated; empty: any")
    # Model registries: MLflow (tracking server, webhook secret) and the Hugging Face Hub.
    mlflow_tracking_uri: str = ""
    mlflow_webhook_secret: str = ""
    # Where a browser reaches MLflow's UI, for links to a version (empty: the tracking URI,
    # which is the worker's address and may not be the browser's).
    mlflow_ui_url: str = ""
    # Attach each policy audit's report to its MLflow run: it quotes training records, so it
    # is off unless asked for, and every string in it is masked.
    mlflow_attach_report: bool = False
    hf_webhook_secret: str = ""
    hf_cache_dir: str = ""  # the Hub's cache; empty: the library default (HF_HUB_CACHE)
    # Where workers download Hub revisions and write verdicts back (a mirror or a test's fake);
    # empty: huggingface_hub's own (its HF_ENDPOINT, else https://huggingface.co).
    hf_endpoint: str = ""
    # A Hub write token: verdicts become a discussion and a tag on the audited repository.
    # Empty: no write-back. A secret: kept out of the settings' repr, never logged or returned.
    hf_token: str = Field("", repr=False)
    # Weights & Biases registry automations (POST /v1/hooks/wandb): the webhook's access token,
    # which W&B sends as `Authorization: Bearer`, and, when the webhook has a secret, the secret
    # it signs each payload with (X-Wandb-Signature). Both secrets: never logged or returned.
    wandb_webhook_token: str = Field("", repr=False)
    wandb_webhook_secret: str = Field("", repr=False)
    # Alias events start audits only for these aliases (comma-separated); a new version linked
    # to a collection always does.
    wandb_aliases: str = "production"
    # Where workers read versions and write verdicts back: W&B's API key and host (empty: the
    # `wandb` package's own, WANDB_API_KEY / api.wandb.ai).
    wandb_api_key: str = Field("", repr=False)
    wandb_base_url: str = ""
    # The client class as `module:callable` taking the Settings (empty: the `wandb` package,
    # core/wandb_client.py); the tests name a local fake here.
    wandb_client: str = ""
    webhook_tolerance_seconds: int = Field(300, ge=1)  # older signed timestamps are stale
    registry_poll_seconds: float = Field(300.0, gt=0)  # reconciliation of dropped deliveries
    registry_lookback_days: float = Field(7.0, gt=0)
    # OpenAI-compatible chat endpoints (`wilt` on a hosted model): refused unless the host
    # matches this list; the key is sent as a bearer token and never stored with an audit.
    chat_endpoint_hosts: str = Field("", description="host globs, comma-separated; empty: none")
    chat_endpoint_api_key: str = ""
    chat_endpoint_timeout_seconds: float = Field(120.0, gt=0)
    # Dashboard sign-in through the organisation's identity provider (OpenID Connect, code flow
    # with PKCE). Empty issuer: off, API keys only. The scopes and team a person gets come from
    # the ID token's claims (docs/sign-in.md): a roles claim mapped role=scope, and a teams
    # claim whose values (less oidc_team_prefix) name service teams.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = Field("", repr=False)
    oidc_scopes: str = "openid email profile"
    oidc_provider_name: str = ""  # the button's label; empty: the issuer's host
    oidc_roles_claim: str = "roles"
    oidc_role_scopes: str = Field("", description="role=scope pairs, comma-separated")
    oidc_teams_claim: str = "groups"
    # Required with an issuer: without one, any IdP group that happens to share a team's name
    # (all, in a shared directory) would grant that team. e.g. memaudit-: the group
    # memaudit-vision names team vision. The default team is never granted by a group.
    oidc_team_prefix: str = ""
    # The issuer is operator configuration, yet its requests still go through the outbound
    # rules: an identity provider on a private network must be allowed explicitly.
    oidc_allow_private: bool = False
    oidc_timeout_seconds: float = Field(10.0, gt=0)
    oidc_sign_in_seconds: int = Field(600, ge=30)  # how long the IdP's page may take
    # Sign-ins started and not yet back (`GET /login/oidc` needs no key and stores a row each):
    # past this many, new ones wait (503). Far above any real crowd; it bounds the table.
    oidc_max_sign_ins_in_progress: int = Field(10000, ge=1)

    # Evidence packs: the signing keys' directory (empty: <data_dir>/evidence-keys; keep it
    # off the workers' volumes where they run apart), the headless browser that prints a pack
    # to PDF (empty: chromium found on PATH; "none": no PDF) and how long it may take.
    evidence_key_dir: str = ""
    pdf_renderer: str = ""
    pdf_timeout_seconds: float = Field(60.0, gt=0)
    # Where `memaudit evidence pin` keeps the keys an auditor trusts (empty: per user, under
    # $XDG_CONFIG_HOME or ~/.config). A client-side file: the service never reads it.
    evidence_trust_file: str = ""

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'memaudit.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if self.task_time_limit <= self.task_soft_time_limit:
            raise ValueError("task_time_limit must exceed task_soft_time_limit")
        try:
            trusted_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ValueError(f"MEMAUDIT_TRUSTED_PROXIES: {exc}") from None
        self._check_devices()
        if self.environment not in ("development", "production"):
            raise ValueError("environment must be development or production")
        self._check_oidc()
        if self.environment == "production":
            self._refuse_insecure_production()
        return self

    def _check_oidc(self) -> None:
        if not self.oidc_issuer:
            return
        parts = urlsplit(self.oidc_issuer)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("MEMAUDIT_OIDC_ISSUER must be an absolute http(s) URL")
        if not self.oidc_client_id:
            raise ValueError("MEMAUDIT_OIDC_ISSUER needs MEMAUDIT_OIDC_CLIENT_ID")
        if "openid" not in self.oidc_scopes.split():
            raise ValueError("MEMAUDIT_OIDC_SCOPES must include openid")
        if not self.oidc_team_prefix.strip():
            raise ValueError(
                "MEMAUDIT_OIDC_ISSUER needs MEMAUDIT_OIDC_TEAM_PREFIX (e.g. memaudit-): without "
                "a prefix any identity provider group named like a team would grant it"
            )
        try:
            role_scopes(self.oidc_role_scopes)
        except ValueError as exc:
            raise ValueError(f"MEMAUDIT_OIDC_ROLE_SCOPES: {exc}") from None

    def _check_devices(self) -> None:
        checks = {
            "MEMAUDIT_WORKER_GPUS": lambda: gpu_ids(self.worker_gpus),
            "MEMAUDIT_GPU_MEMORY": lambda: device_budgets(self.gpu_memory),
            "MEMAUDIT_LARGE_MODEL_MIN_BYTES": lambda: parse_bytes(self.large_model_min_bytes),
        }
        for name, check in checks.items():
            try:
                check()
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        self.large_model_min_bytes = parse_bytes(self.large_model_min_bytes)
        owned = set(gpu_ids(self.worker_gpus))
        stray = [d for d in device_budgets(self.gpu_memory) if isinstance(d, int) and owned
                 and d not in owned]  # fmt: skip
        if stray:
            raise ValueError(
                f"MEMAUDIT_GPU_MEMORY budgets GPU {stray[0]}, which MEMAUDIT_WORKER_GPUS "
                f"({self.worker_gpus}) does not give this worker"
            )

    def _refuse_insecure_production(self) -> None:
        """Production start-up fails on any setting that would be unsafe on a shared network."""
        if self.database_url.startswith("sqlite"):
            raise ValueError(
                "production needs MEMAUDIT_DATABASE_URL (PostgreSQL): a SQLite file cannot be "
                "shared by workers on several hosts"
            )
        if self.broker_url.startswith(("sqla+", "sqlalchemy+")):
            raise ValueError(
                "production needs MEMAUDIT_BROKER_URL (redis://...), not the embedded broker"
            )
        if len(self.callback_secret) < 32:
            raise ValueError("production needs MEMAUDIT_CALLBACK_SECRET (32 characters or more)")
        secrets_in_use = {
            "MEMAUDIT_CALLBACK_SECRET": self.callback_secret,
            "MEMAUDIT_MLFLOW_WEBHOOK_SECRET": self.mlflow_webhook_secret,
            "MEMAUDIT_HF_WEBHOOK_SECRET": self.hf_webhook_secret,
            "MEMAUDIT_HF_TOKEN": self.hf_token,
            "MEMAUDIT_SMTP_PASSWORD": self.smtp_password,
            "MEMAUDIT_WANDB_WEBHOOK_TOKEN": self.wandb_webhook_token,
            "MEMAUDIT_WANDB_WEBHOOK_SECRET": self.wandb_webhook_secret,
            "MEMAUDIT_WANDB_API_KEY": self.wandb_api_key,
            "the password in MEMAUDIT_DATABASE_URL": _url_password(self.database_url),
            "the password in MEMAUDIT_BROKER_URL": _url_password(self.broker_url),
        }
        if self.oidc_issuer and not self.oidc_issuer.startswith("https://"):
            raise ValueError("production needs an https MEMAUDIT_OIDC_ISSUER")
        secrets_in_use["MEMAUDIT_OIDC_CLIENT_SECRET"] = self.oidc_client_secret
        if self.smtp_host and not self.smtp_domains:
            raise ValueError(
                "production needs MEMAUDIT_SMTP_ALLOWED_DOMAINS with MEMAUDIT_SMTP_HOST: "
                "otherwise any submit key sends mail through the relay to any address"
            )
        if self.smtp_password and self.smtp_security == "none":
            raise ValueError(
                "MEMAUDIT_SMTP_PASSWORD would cross the network in clear: set "
                "MEMAUDIT_SMTP_SECURITY to starttls or ssl"
            )
        for name, value in secrets_in_use.items():
            if value and value.lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"{name} is a well-known default ({value!r}); set a real secret")
        webhook_secrets = (
            "MEMAUDIT_MLFLOW_WEBHOOK_SECRET",
            "MEMAUDIT_HF_WEBHOOK_SECRET",
            "MEMAUDIT_WANDB_WEBHOOK_TOKEN",
            "MEMAUDIT_WANDB_WEBHOOK_SECRET",
        )
        for name in webhook_secrets:
            value = secrets_in_use[name]
            if value and len(value) < MIN_WEBHOOK_SECRET_CHARS:
                raise ValueError(f"{name} must be {MIN_WEBHOOK_SECRET_CHARS} characters or more")

    @property
    def mlflow_ui_base(self) -> str:
        """The MLflow UI's address as a browser reaches it; empty when MLflow is not set up.
        Without the user and password a URI may carry: every dashboard reader sees the links."""
        parts = urlsplit(self.mlflow_ui_url or self.mlflow_tracking_uri)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")

    @property
    def oidc_role_scope_map(self) -> dict[str, str]:
        return role_scopes(self.oidc_role_scopes)

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def worker_gpu_ids(self) -> list[int]:
        return gpu_ids(self.worker_gpus)

    @property
    def gpu_memory_budgets(self) -> dict[int | str, int]:
        return device_budgets(self.gpu_memory)

    @property
    def dataset_limits(self) -> DatasetLimits:
        return DatasetLimits(self.max_records_per_dataset, self.max_record_chars)

    @property
    def trusted_proxy_networks(self) -> list[Network]:
        return trusted_networks(self.trusted_proxies)

    @property
    def file_rules(self) -> FileRules:
        return FileRules(self.allow_hardlinks, stage=self.roots_writable_by_submitters)

    @property
    def model_root_paths(self) -> list[Path]:
        return _split_roots(self.model_roots) or [self.data_dir / "models"]

    @property
    def data_root_paths(self) -> list[Path]:
        return _split_roots(self.data_roots) or [self.data_dir / "data"]

    @property
    def datasets_dir(self) -> Path:
        """Where uploaded datasets live, content-addressed by sha256."""
        return self.data_dir / "datasets"

    @property
    def model_cache_dir(self) -> Path:
        """Registry models downloaded for audits, by name and version."""
        return self.data_dir / "model-cache"

    @property
    def evidence_keys_dir(self) -> Path:
        """The evidence signing keys: private halves mode 0600, never in the database."""
        if self.evidence_key_dir:
            return Path(os.path.abspath(Path(self.evidence_key_dir).expanduser()))
        return self.data_dir / "evidence-keys"

    @property
    def evidence_trust_path(self) -> Path:
        if self.evidence_trust_file:
            return Path(self.evidence_trust_file).expanduser()
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "memaudit" / "trusted-evidence-keys.json"

    @property
    def wandb_audit_aliases(self) -> list[str]:
        return [alias.strip() for alias in self.wandb_aliases.split(",") if alias.strip()]

    @property
    def callback_hosts(self) -> list[str]:
        return _split_hosts(self.callback_allowed_hosts)

    @property
    def smtp_domains(self) -> list[str]:
        """The allowed recipient domains, lower case, without a leading `@` or dot."""
        return [d.lower().lstrip("@.").rstrip(".") for d in _split_hosts(self.smtp_allowed_domains)]

    @property
    def chat_hosts(self) -> list[str]:
        return _split_hosts(self.chat_endpoint_hosts)

    def callback_signing_secret(self) -> str:
        """The configured secret, or one generated once into the data dir (mode 0600) so the
        embedded API and worker sign alike."""
        if self.callback_secret:
            return self.callback_secret
        path = self.data_dir / "callback.secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process of this service wrote it first
                pass
            else:
                with os.fdopen(descriptor, "w") as stream:
                    stream.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    def ensure_dirs(self) -> None:
        for path in [
            self.data_dir,
            self.datasets_dir,
            *self.model_root_paths,
            *self.data_root_paths,
        ]:
            path.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
