"""A kind the worker does not know (its package is missing here) fails its audit at once,
saying what to install, in the shard and at finalize alike; it is never retried."""

from __future__ import annotations

from sqlalchemy import select, update

from core.models import Audit, AuditStatus, Shard
from tests.flows import submit, upload
from worker.demo import DemoArtifacts
from worker.finalize import finalize_audit
from worker.runner import run_shard

GONE = [{"kind": "gone_kind", "params": {}}]


def test_an_unknown_kind_fails_the_shard_and_the_finalize_permanently(
    make_stack, tiny_lm: DemoArtifacts
) -> None:
    stack = make_stack()
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
    first = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])
    second = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])
    with stack.db.session() as session:
        # As if both were submitted to an API that had the kind's package installed.
        session.execute(update(Audit).where(Audit.id == first["id"]).values(checks=GONE))
        session.execute(
            update(Audit)
            .where(Audit.id == second["id"])
            .values(checks=GONE, status=AuditStatus.RUNNING)
        )
        session.execute(
            update(Shard).where(Shard.audit_id == second["id"]).values(status="succeeded")
        )
        session.commit()
        shard_id = session.scalar(select(Shard.id).where(Shard.audit_id == first["id"]))

    outcome = run_shard(stack.db, stack.settings, shard_id)
    assert outcome.status == "failed"
    failed = stack.client.get(f"/v1/audits/{first['id']}", headers=stack.headers).json()
    assert failed["status"] == "failed"
    assert "unknown check kind 'gone_kind'" in failed["error"]
    assert "install it on every worker" in failed["error"]

    assert finalize_audit(stack.db, stack.settings, second["id"]).status == "failed"
    ended = stack.client.get(f"/v1/audits/{second['id']}", headers=stack.headers).json()
    assert "install the package that declares it on every worker" in ended["error"]
