"""Finalize reads the audited records' texts again, under the audit's grants, for the blind
baseline of a membership split; a dataset it cannot trust leaves the split not assessed and
every membership metric withheld."""

from __future__ import annotations

import json

from sqlalchemy import select

from core.models import Audit, AuditPolicy, Shard
from tests.flows import submit, upload
from worker.demo import DemoArtifacts
from worker.finalize import finalize_audit
from worker.runner import run_shard

CHECKS = [{"kind": "membership", "params": {"scores": ["loss"], "bootstrap": 200}}]
THRESHOLD = {"metric": "membership.loss.auc", "op": "<=", "value": 0.6}


def _run(stack, audit_id: str, policy_id: str | None = None) -> dict:
    with stack.db.session() as session:
        shards = session.scalars(select(Shard.id).where(Shard.audit_id == audit_id)).all()
        if policy_id:
            session.get(Audit, audit_id).policy_id = policy_id
            session.commit()
    for shard_id in shards:
        assert run_shard(stack.db, stack.settings, shard_id).status == "succeeded"
    finalize_audit(stack.db, stack.settings, audit_id)
    return stack.client.get(f"/v1/audits/{audit_id}", headers=stack.headers).json()


def _policy(stack, on_inconclusive: str = "block") -> str:
    with stack.db.session() as session:
        policy = AuditPolicy(
            name=f"p-{on_inconclusive}",
            source="mlflow",
            model_pattern="*",
            dataset_uri="dataset:unused",
            checks=CHECKS,
            thresholds=[THRESHOLD],
            on_inconclusive=on_inconclusive,
        )
        session.add(policy)
        session.commit()
        return policy.id


def test_a_confounded_upload_is_caught_at_finalize_and_its_verdict_is_inconclusive(
    make_stack, tiny_lm: DemoArtifacts, tmp_path
) -> None:
    stack = make_stack()
    lines = tiny_lm.dataset_path.read_text().splitlines()
    marked = []
    for line in lines:
        record = json.loads(line)
        if record["member"]:
            record["text"] += " (as noted above)"
        marked.append(json.dumps(record))
    path = tmp_path / "marked.jsonl"
    path.write_text("\n".join(marked) + "\n")
    dataset = upload(stack.client, stack.headers, path)
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"], CHECKS)
    done = _run(stack, audit["id"], _policy(stack, "allow"))
    membership = done["summary"]["membership"]
    assert membership["blind_baseline"]["reading"] == "confounded"
    assert membership["scores"]["loss"]["reading"]["reading"] == "inconclusive"
    assert membership["scores"]["loss"]["auroc"]["value"] > 0.9  # the value is still shown
    assert done["verdict"]["status"] == "inconclusive"
    assert done["verdict"]["promotion"] == "allowed"  # as this policy says
    assert done["verdict"]["results"][0]["reading"] == "inconclusive"


def test_a_dataset_changed_after_submission_is_not_assessed(
    make_stack, tiny_lm: DemoArtifacts
) -> None:
    stack = make_stack()
    path = tiny_lm.dataset_path.parent / "changing.jsonl"
    path.write_bytes(tiny_lm.dataset_path.read_bytes())
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, f"path:{path}", CHECKS)
    with stack.db.session() as session:
        shards = session.scalars(select(Shard.id).where(Shard.audit_id == audit["id"])).all()
    for shard_id in shards:
        assert run_shard(stack.db, stack.settings, shard_id).status == "succeeded"
    path.write_text(path.read_text().replace('member": false', 'member": true'))
    finalize_audit(stack.db, stack.settings, audit["id"])
    done = stack.client.get(f"/v1/audits/{audit['id']}", headers=stack.headers).json()
    membership = done["summary"]["membership"]
    assert membership["blind_baseline"]["reading"] == "not_assessed"
    assert "changed since the audit was submitted" in " ".join(membership["warnings"])
    reading = membership["scores"]["loss"]["reading"]
    assert reading["reading"] == "inconclusive" and "not assessed" in reading["why"]


def test_an_iid_upload_stands_and_the_policy_compares(make_stack, tiny_lm: DemoArtifacts) -> None:
    stack = make_stack()
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"], CHECKS)
    done = _run(stack, audit["id"], _policy(stack))
    membership = done["summary"]["membership"]
    assert membership["blind_baseline"]["reading"] == "no_confound_detected"
    assert membership["scores"]["loss"]["reading"] == {"reading": "stands"}
    assert done["verdict"]["status"] == "fail" and done["verdict"]["promotion"] == "blocked"
