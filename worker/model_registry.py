"""Model registries: turning their events into policy audits, and audits into registry tags.

- `handle_delivery`: a recorded webhook (MLflow `model_version.created`, a Hub `repo.content`
  update, a W&B automation: worker/wandb_events.py) starts the audit of every matching
  policy; events about our own `memaudit.*` tags are ignored, so the write-back cannot loop,
  but for `memaudit.reaudit`, which a person sets to audit a version again (once per new
  value).
- `write_back`: the MLflow model version's tags become what the database says of it
  (`registry_verdicts`: each policy's verdict, the aggregate a promotion gate reads, the headline
  numbers), and a finished audit's metrics go to a run linked to it (`mlflow_results`).
- `reconcile`: MLflow keeps no outbox, so versions registered while deliveries were lost are
  found by listing recent versions of every policy-matched model (page by page, however many
  are registered); each version it audits is listed with the deliveries as reconciliation's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import Settings
from core.db import Database, utcnow
from core.errors import ApiError
from core.inspection import mlflow_models
from core.integrations import scrubbed
from core.models import Audit, AuditPolicy, AuditStatus, WebhookDelivery
from core.policies import (
    enabled_policies,
    matches,
    matching_policies,
    start_policy_audit,
)
from core.task_names import WRITE_BACK_TO_REGISTRY
from worker import wandb_events
from worker.checks.registry import REGISTRY
from worker.mlflow_results import RUN_TAG, log_results, logged_run
from worker.registry_verdicts import (
    HEADLINE_TAGS,
    judges_version,
    reached_audit,
    version_tags,
    write_settled,
)

log = logging.getLogger(__name__)
OWN_TAG_PREFIX = "memaudit."
OWN_HUB_TAG_PREFIX = "memaudit-"  # git tags the Hub write-back leaves on audited commits
# Set by a person (or a pipeline) to audit a version again: each new value starts one re-audit.
REAUDIT_TAG = "memaudit.reaudit"
REAUDIT_LABEL = "reaudit"
MAX_REAUDIT_VALUE = 200


def _start(
    db: Database,
    settings: Settings,
    celery: Celery,
    policies: Sequence[AuditPolicy],
    model_uri: str,
    labels: dict[str, str],
    reaudit: str | None = None,
) -> tuple[list[str], list[dict[str, str]]]:
    """Each policy's audit of this model version: (ids created now, refusals). A policy whose
    audit is refused (its team is not granted the model, its dataset is gone) is recorded and
    passed over; it never keeps the other policies' audits from starting."""
    started, refused = [], []
    for policy in policies:
        try:
            with db.session() as session:
                audit, created = start_policy_audit(
                    session, settings, celery, REGISTRY, policy, model_uri, labels, reaudit
                )
        except ApiError as exc:
            log.warning("policy %s refused %s: %s", policy.name, model_uri, exc.message)
            refused.append({"policy": policy.name, "error": exc.message})
            continue
        if created:
            started.append(audit.id)
    return started, refused


def _mlflow_action(
    payload: Mapping[str, Any],
) -> tuple[str, str, str, dict[str, str]] | tuple[str, str]:
    """("start", name, uri, labels) or ("ignore", reason). A `memaudit.reaudit` tag starts a
    re-audit: its labels carry the tag's value, on which the re-audit's idempotency is keyed."""
    entity, action = payload.get("entity"), payload.get("action")
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    name, version = str(data.get("name", "")), str(data.get("version", ""))
    if (entity, action) == ("model_version_tag", "set") and data.get("key") == REAUDIT_TAG:
        value = str(data.get("value") or "").strip()
        if not name or not version.isdigit() or not value:
            return "ignore", f"{REAUDIT_TAG} without a model name, version and value"
        if len(value) > MAX_REAUDIT_VALUE:
            return "ignore", f"{REAUDIT_TAG} value longer than {MAX_REAUDIT_VALUE} characters"
        return "start", name, f"{mlflow_models.PREFIX}{name}/{version}", {REAUDIT_LABEL: value}
    if entity == "model_version_tag" and str(data.get("key", "")).startswith(OWN_TAG_PREFIX):
        return "ignore", "our own memaudit.* tag"
    if (entity, action) != ("model_version", "created"):
        return "ignore", f"event {entity}.{action} starts nothing"
    if not name or not version.isdigit():
        return "ignore", "model_version.created without a name and version"
    labels = {"mlflow.run_id": str(data.get("run_id") or "")}
    return "start", name, f"{mlflow_models.PREFIX}{name}/{version}", labels


def _huggingface_action(
    payload: Mapping[str, Any],
) -> tuple[str, str, str, dict[str, str]] | tuple[str, str]:
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    repo = payload.get("repo") if isinstance(payload.get("repo"), dict) else {}
    if event.get("scope") != "repo.content" or event.get("action") != "update":
        return "ignore", f"event {event.get('scope')}.{event.get('action')} starts nothing"
    if repo.get("type") != "model" or not repo.get("name") or not repo.get("headSha"):
        return "ignore", "not a model repository update with a head revision"
    refs = payload.get("updatedRefs") if isinstance(payload.get("updatedRefs"), list) else []
    own = f"refs/tags/{OWN_HUB_TAG_PREFIX}"
    if refs and all(isinstance(r, dict) and str(r.get("ref", "")).startswith(own) for r in refs):
        return "ignore", "our own memaudit-* tag"
    name, head = str(repo["name"]), str(repo["headSha"])
    return "start", name, f"hf:{name}@{head}", {}


REAUDIT_BUSY = (
    f"{REAUDIT_TAG} starts nothing while this policy's audit of the version is still queued or "
    "running: set a new value once it has ended"
)


def _still_auditing(session: Session, policies: Sequence[AuditPolicy], uri: str) -> list[str]:
    """The policies with an audit of this version queued or running. A tag re-audit waits for
    it: whoever may set tags in MLflow must not queue audits without bound."""
    if not policies:
        return []
    busy = session.scalars(
        select(Audit.policy_id).where(
            Audit.model_uri == uri,
            Audit.policy_id.in_([p.id for p in policies]),
            Audit.status.in_(AuditStatus.ACTIVE),
        )
    )
    ids = set(busy)
    return [p.name for p in policies if p.id in ids]


def _decide(
    source: str, payload: Mapping[str, Any], settings: Settings
) -> tuple[str, str, str, dict[str, str]] | tuple[str, str]:
    """What a delivery of this source asks for: start audits of a model version, or nothing."""
    if source == "wandb":
        return wandb_events.action(payload, settings)
    return (_mlflow_action if source == "mlflow" else _huggingface_action)(payload)


def handle_delivery(db: Database, settings: Settings, celery: Celery, key: str) -> dict[str, Any]:
    """Act on one recorded delivery, once; the outcome is stored on the delivery row."""
    with db.session() as session:
        delivery = session.get(WebhookDelivery, key)
        if delivery is None or delivery.status != "received":
            return {"status": "skipped"}
        source, payload = delivery.source, dict(delivery.payload)
    action = _decide(source, payload, settings)
    if action[0] == "ignore":
        outcome: dict[str, Any] = {"status": "ignored", "reason": action[1]}
    else:
        _, name, uri, labels = action
        reaudit = labels.pop(REAUDIT_LABEL, None)
        with db.session() as session:
            policies = matching_policies(session, source, name)
            busy = _still_auditing(session, policies, uri) if reaudit is not None else []
        policies = [p for p in policies if p.name not in busy]
        audits, refused = _start(db, settings, celery, policies, uri, labels, reaudit)
        refused = [{"policy": name, "error": REAUDIT_BUSY} for name in busy] + refused
        outcome = {"status": "processed", "model_uri": uri, "audits": audits}
        if reaudit is not None:  # a repeated value starts nothing: `audits` is then empty
            outcome["reaudit"] = reaudit
        if refused:
            outcome["refused"] = refused
    with db.session() as session:
        delivery = session.get(WebhookDelivery, key)
        # A redelivery's count (app/wandb_hooks.py) stays shown beside the outcome.
        retries = {k: v for k, v in (delivery.detail or {}).items() if k == "retries"}
        delivery.status, delivery.detail = outcome["status"], {**outcome, **retries}
    return outcome


def mark_failed(db: Database, key: str, reason: str) -> None:
    """A delivery whose handling raised ends `failed` rather than `received` for ever: the
    deliveries page says why, and the same W&B event delivered again is queued again
    (app/wandb_hooks.py)."""
    with db.session() as session:
        delivery = session.get(WebhookDelivery, key)
        if delivery is not None and delivery.status == "received":
            delivery.status = "failed"
            delivery.detail = {**(delivery.detail or {}), "status": "failed", "reason": reason}


def write_back(db: Database, settings: Settings, audit_id: str) -> dict[str, str]:
    """Make the MLflow model version this policy audit examines hold what the database says of
    it (`registry_verdicts.verdict_tags`: every policy's verdict, the aggregate); {} for any
    other audit. Queued when the audit starts (its policy's verdict reads `pending`), when it
    ends, and when a verdict that waited for its baseline is reached; the audit's own results go
    to the version's run once its verdict is known."""
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        if (
            audit is None
            or audit.model_uri is None  # a dataset audit: no model version to tag
            or not audit.model_uri.startswith(mlflow_models.PREFIX)
            or not settings.mlflow_tracking_uri
            # Only a policy's verdict is what a gate reads: an audit submitted by hand (any submit
            # key may audit a granted version) must not replace it or block a promotion.
            or audit.policy_id is None
        ):
            return {}
        name, version = mlflow_models.parse_uri(audit.model_uri)
        reached = audit.status in AuditStatus.FINAL and not audit.verdict_pending
        own = version_tags(audit, settings) if reached and judges_version(audit) else None
    client = mlflow_models.client(settings.mlflow_tracking_uri)
    logged = {}
    if own is not None:  # its results, once its verdict is known
        registered = client.get_model_version(name, version)
        try:
            run_id = logged_run(client, registered, audit.id) or log_results(
                client, settings, audit, own, HEADLINE_TAGS, registered
            )
            client.set_model_version_tag(name, version, RUN_TAG, run_id)
            logged[RUN_TAG] = run_id
        except Exception as exc:  # the tags a gate reads must not wait on the run's metrics
            log.warning("could not log audit %s to an MLflow run: %s", audit_id, scrubbed(str(exc)))

    def write(tags: dict[str, str], stale: list[str]) -> None:
        for key in stale:
            client.delete_model_version_tag(name, version, key)
        # The verdicts go last, the aggregate after the policies' own: a gate that sees one can
        # trust every other tag is there.
        for key in sorted(
            tags, key=lambda key: (key == "memaudit.verdict", key.endswith(".verdict"))
        ):
            client.set_model_version_tag(name, version, key, tags[key])

    def read() -> dict[str, str]:
        return dict(client.get_model_version(name, version).tags or {})

    return {**write_settled(db, settings, audit_id, "mlflow", name, read, write), **logged}


REGISTRY_PAGE_SIZE = 100  # MLflow's default page of registered models
VERSION_PAGE_SIZE = 10_000  # and of model versions
RECONCILED_REASON = "found by reconciliation: no webhook delivery announced this version"


def _every(search: Callable[..., Any], *args: Any, page_size: int) -> Iterator[Any]:
    """Every result of a paged MLflow search, page by page."""
    token = None
    while True:
        page = search(*args, max_results=page_size, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _record_catch(db: Database, uri: str, audits: list[str]) -> None:
    """A version reconciliation audited is listed with the deliveries, as reconciliation's:
    a user sees which versions the webhook missed. Only catches are kept, so rounds that
    find nothing add nothing."""
    detail = {
        "status": "reconciled",
        "reason": RECONCILED_REASON,
        "model_uri": uri,
        "audits": audits,
    }
    with db.session() as session:
        session.add(
            WebhookDelivery(
                id=f"mlflow:reconciliation-{uuid.uuid4().hex}",
                source="mlflow",
                event="reconciliation",
                payload={"model_uri": uri},
                status="reconciled",
                detail=detail,
            )
        )


# The write-back task's retries: Celery's exponential backoff with full jitter, so the n-th wait
# is at most 10 s doubled n - 1 times. Past their sum and a margin, none is left.
WRITE_BACK_RETRIES = 5
WRITE_BACK_BACKOFF_SECONDS = 10
WRITE_BACK_RETRY_SPAN = timedelta(
    seconds=sum(WRITE_BACK_BACKOFF_SECONDS * 2**n for n in range(WRITE_BACK_RETRIES)) + 60
)


def _repeat_lost_write_back(
    db: Database,
    settings: Settings,
    celery: Celery,
    policies: Sequence[AuditPolicy],
    uri: str,
    tags: Mapping[str, str],
) -> None:
    """Queue the write-back again when the version's tags lack its latest finished policy
    audit: MLflow was down for longer than the write-back's retries, and a gate would otherwise
    wait for a verdict for ever. An audit whose own write-back may still be retrying is left to
    it (a second one would log its metrics twice)."""
    with db.session() as session:
        latest = reached_audit(
            session.scalars(
                select(Audit).where(
                    Audit.model_uri == uri, Audit.policy_id.in_([p.id for p in policies])
                )
            )
        )
        if latest is None or tags.get("memaudit.audit_id") == latest.id:
            return
        if latest.finished_at and latest.finished_at > utcnow() - WRITE_BACK_RETRY_SPAN:
            return
        latest_id = latest.id
    log.info("reconciliation: %s lacks audit %s's tags; writing them back again", uri, latest_id)
    celery.send_task(WRITE_BACK_TO_REGISTRY, args=[latest_id], queue=settings.queue)


def reconcile(db: Database, settings: Settings, celery: Celery) -> list[str]:
    """Audit recent versions of policy-matched registered models that no delivery announced."""
    if not settings.mlflow_tracking_uri:
        return []
    with db.session() as session:
        policies = enabled_policies(session, "mlflow")
    if not policies:
        return []
    client = mlflow_models.client(settings.mlflow_tracking_uri)
    since_ms = (time.time() - settings.registry_lookback_days * 86400) * 1000
    started: list[str] = []
    for model in _every(client.search_registered_models, page_size=REGISTRY_PAGE_SIZE):
        matched = [p for p in policies if matches(p, model.name)]
        if not matched:
            continue
        try:
            versions = list(
                _every(
                    client.search_model_versions,
                    mlflow_models.name_filter(model.name),
                    page_size=VERSION_PAGE_SIZE,
                )
            )
        except Exception as exc:  # one model the registry cannot list must not stop the round
            log.warning(
                "reconciliation could not list the versions of %r: %s",
                model.name,
                scrubbed(str(exc)),
            )
            continue
        for version in versions:
            if version.creation_timestamp and version.creation_timestamp < since_ms:
                continue
            uri = f"{mlflow_models.PREFIX}{model.name}/{version.version}"
            labels = {"mlflow.run_id": version.run_id or ""}
            caught = _start(db, settings, celery, matched, uri, labels)[0]
            if caught:
                _record_catch(db, uri, caught)
            else:
                _repeat_lost_write_back(db, settings, celery, matched, uri, version.tags or {})
            started += caught
    if started:
        log.info("reconciliation started %d audits of unannounced versions", len(started))
    return started
