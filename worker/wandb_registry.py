"""Weights & Biases: a finished policy audit's verdict becomes metadata on the audited artifact
version. (Which events start audits: worker/wandb_events.py.)

The same names MLflow's version tags get (`memaudit.<policy>.verdict` per policy, the aggregate
`memaudit.verdict` and `memaudit.promotion`, `pending` until every matching policy's audit of the
version has ended, ..., from `registry_verdicts.verdict_tags`) are set as
top-level metadata keys of the version in one save; optional ones an earlier audit left and
this one does not write are removed. The save replaces the whole metadata, so a concurrent
write-back's save can put back what ours replaced: `write_settled` reads it back and saves
again until the version holds what the database says. Editing metadata is no automation
event, so the write-back cannot loop. The task retries it (worker/tasks.py) like the other
registries' write-backs.
"""

from __future__ import annotations

import logging

from core.config import Settings
from core.db import Database
from core.inspection import wandb_models
from core.models import Audit
from core.wandb_client import wandb_client
from worker.registry_verdicts import write_settled

log = logging.getLogger(__name__)


def write_back(db: Database, settings: Settings, audit_id: str) -> dict[str, str]:
    """Set this W&B policy audit's verdict as metadata on its artifact version (`pending` from
    its start until its verdict is reached); {} for any other audit (a hand-submitted one must
    not replace a policy's verdict)."""
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        if (
            audit is None
            or audit.policy_id is None
            or audit.model_uri is None
            or not audit.model_uri.startswith(wandb_models.PREFIX)
        ):
            return {}
        version = wandb_models.parse_uri(audit.model_uri)
    client = wandb_client(settings)
    tags = write_settled(
        db,
        settings,
        audit_id,
        "wandb",
        version.path,
        lambda: client.metadata(version),
        lambda values, stale: client.update_metadata(version, values, stale),
    )
    log.info("audit %s: verdict written to %s's metadata", audit_id, version.name)
    return {**tags, "wandb.version": version.name}
