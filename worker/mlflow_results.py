"""A finished policy audit's numbers in MLflow's own terms: metrics on a run linked to the
audited model version, where MLflow's UI charts and compares them beside training metrics.

The run is the version's registering run (its `run_id`) while that run is live; a version whose
run was deleted, or that names none, gets a run of its own in the `memaudit` experiment, tagged
with the model's name and version. Either way the version's `memaudit.run_id` tag names the
run. Metrics are stamped with the audit's end, so a re-audit adds a point to each metric's
history instead of replacing it.

The report quotes training records, so it is attached only when
MEMAUDIT_MLFLOW_ATTACH_REPORT is on, and then only masked: every string of the summary goes
through the dataset checks' `Display` (PII masked first, then shortened), never raw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from core.config import Settings
from core.models import Audit
from core.verdicts import metric_value
from worker.checks.dataset.display import Display, pii_key
from worker.registry_verdicts import TAG_UNSAFE

log = logging.getLogger(__name__)
EXPERIMENT = "memaudit"
RUN_TAG = "memaudit.run_id"
LOGGED_PREFIX = "memaudit.logged."  # + an audit id: a run tag once its results are all logged
THRESHOLD_PREFIX = "memaudit.verdict."  # + the verdict metric's name: its measured value
COMPARISON_PREFIX = "memaudit.comparison."  # + the metric's name and one of COMPARISON_FIELDS
COMPARISON_FIELDS = (
    "value",
    "baseline_value",
    "difference",
    "low",
    "high",
    "p_value",
    "n_shared",
    "newly",
    "no_longer",
)


@dataclass(frozen=True)
class ResultsRun:
    run_id: str
    model_id: str | None  # the version's logged model, when the run is the one that logged it
    own: bool  # created by memaudit for this version


def result_metrics(audit: Audit, headline_tags: Mapping[str, str]) -> dict[str, float]:
    """The headline numbers under their tag names, and each verdict threshold's measured value;
    a number the audit did not compute is left out (MLflow metrics are numbers)."""
    summary = audit.summary or {}
    metrics = {
        tag: value
        for tag, metric in headline_tags.items()
        if (value := metric_value(summary, metric)) is not None
    }
    verdict = audit.verdict or {}
    for result in verdict.get("results") or []:
        if isinstance(result.get("value"), int | float):
            metrics[f"{THRESHOLD_PREFIX}{_key(result['metric'])}"] = float(result["value"])
    # A relative condition's comparison with the baseline: charted beside the training metrics,
    # a version's p-value and interval read in MLflow's compare view without opening the report.
    for comparison in verdict.get("comparisons") or []:
        for field in COMPARISON_FIELDS:
            value = comparison.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                key = f"{COMPARISON_PREFIX}{_key(comparison['metric'])}.{field}"
                metrics[key] = float(value)
    return metrics


def _key(metric: str) -> str:
    """A metric's name in MLflow's key alphabet (`membership.min_k++.auc` has a `+`)."""
    return TAG_UNSAFE.sub("_", metric)


def _live_run(client: Any, run_id: str | None) -> Any | None:
    """The run, when it exists and is not deleted."""
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except Exception:  # MlflowException: the run was deleted, or never existed here
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _live(client: Any, run_id: str | None) -> bool:
    return _live_run(client, run_id) is not None


def _experiment_id(client: Any) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(EXPERIMENT)
    except Exception:  # another worker created it between the two calls
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is None:
            raise
        return found.experiment_id


def _logged_model_id(client: Any, registered: Any) -> str | None:
    """The version's MLflow 3 logged model, when its run logged it: the registry stores it only
    as the version's source, `models:/<model id>`."""
    found = getattr(registered, "model_id", None)
    source = str(registered.source or "")
    if not found and source.startswith("models:/") and "/" not in source[len("models:/") :]:
        found = source[len("models:/") :]
    if not found:
        return None
    try:
        logged = client.get_logged_model(found)
    except Exception:  # an older server, or a name that only looked like an id
        return None
    return found if logged.source_run_id == registered.run_id else None


def logged_run(client: Any, registered: Any, audit_id: str) -> str | None:
    """The run that already holds this audit's results, if any: a retried write-back must not
    log them twice (or, the version having no run of its own, make a second run). Every
    policy's audit logs to the version's one run, so each marks itself done, last."""
    for run_id in (registered.run_id, (registered.tags or {}).get(RUN_TAG)):
        run = _live_run(client, run_id)
        if run is not None and logged_tag(audit_id) in run.data.tags:
            return run_id
    return None


def logged_tag(audit_id: str) -> str:
    return f"{LOGGED_PREFIX}{audit_id}"


def results_run(client: Any, registered: Any) -> ResultsRun:
    """The run this registered version's audit results go to, created (and named by the
    version's `memaudit.run_id` tag) when the version has no live run of its own."""
    name, version = registered.name, str(registered.version)
    if _live(client, registered.run_id):
        return ResultsRun(registered.run_id, _logged_model_id(client, registered), own=False)
    existing = (registered.tags or {}).get(RUN_TAG)
    if _live(client, existing):
        return ResultsRun(existing, None, own=True)
    run = client.create_run(
        _experiment_id(client),
        tags={
            "mlflow.runName": f"memaudit {name} v{version}",
            "memaudit.model_name": name,
            "memaudit.model_version": version,
        },
    )
    client.set_terminated(run.info.run_id)
    return ResultsRun(run.info.run_id, None, own=True)


def masked_report(audit: Audit, settings: Settings, report_url: str) -> str:
    """The audit's verdict and summary as JSON, every string masked and shortened."""
    display = Display(pii_key(settings.callback_signing_secret(), audit.team_id))

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return display.short(value)
        if isinstance(value, Mapping):
            return {str(k): mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mask(v) for v in value]
        return value

    report = {
        "audit_id": audit.id,
        "model_uri": audit.model_uri,
        "dataset_uri": audit.dataset_uri,
        "report_url": report_url,
        "status": audit.status,
        "verdict": mask(audit.verdict),
        "summary": mask(audit.summary or {}),
        "masked": "every string: PII values masked, then cut to a short line",
    }
    return json.dumps(report, indent=1, allow_nan=False, default=str)


def log_results(
    client: Any,
    settings: Settings,
    audit: Audit,
    tags: Mapping[str, str],
    headline_tags: Mapping[str, str],
    registered: Any,
) -> str:
    """Log the audit's numbers, verdict and report link to the results run of the registered
    version it audited (`client.get_model_version`'s answer); the run's id."""
    from mlflow.entities import Metric, RunTag

    name, version = registered.name, str(registered.version)
    run = results_run(client, registered)
    finished = audit.finished_at or audit.created_at
    if finished is not None and finished.tzinfo is None:  # SQLite keeps UTC without a zone
        finished = finished.replace(tzinfo=UTC)
    stamp = int(finished.timestamp() * 1000) if finished is not None else 0
    metrics = [
        Metric(key, value, stamp, 0, model_id=run.model_id)
        for key, value in result_metrics(audit, headline_tags).items()
        if value == value and abs(value) != float("inf")  # NaN and infinities: not numbers
    ]
    run_tags = [RunTag(key, value) for key, value in tags.items() if key != RUN_TAG]
    if run.own:
        link = tags["memaudit.report_url"]
        note = f"memaudit's audit of `{name}` version {version}: [report]({link})"
        run_tags.append(RunTag("mlflow.note.content", note))
    client.log_batch(run.run_id, metrics=metrics, tags=run_tags)
    if settings.mlflow_attach_report:
        client.log_text(
            run.run_id,
            masked_report(audit, settings, tags["memaudit.report_url"]),
            f"memaudit/{audit.id}/report.json",
        )
    client.set_tag(run.run_id, logged_tag(audit.id), "true")  # last: all of it is there
    return run.run_id
