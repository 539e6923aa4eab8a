"""Evidence packs through the API: a real audit of the demo model, run by the worker's own
shard runner and finalize, signed, verified, tampered with, rotated, and scoped to its team."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from app.keys import create_key
from app.teams import create_team
from core.evidence_keys import KeyStore
from core.models import Audit, Shard
from core.signing import (
    EvidenceInvalid,
    canonical_sha256,
    fingerprint,
    load_public_key,
    parse_envelope,
    verify_envelope,
)
from worker.finalize import finalize_audit
from worker.runner import run_shard

HOSTILE_MODEL = "m<img src=x onerror=alert(1)>"
HOSTILE_DATA = "d\"'><svg onload=alert(2)>&amp.jsonl"
HOSTILE_LABEL = "<script>alert(3)</script>"


@dataclass
class Audited:
    stack: object
    audit: dict
    model_dir: Path


def run_audit(stack, audit_id: str) -> dict:
    """Every shard through the worker's runner, then finalize: what a worker process does."""
    with stack.db.session() as session:
        shard_ids = session.scalars(
            select(Shard.id).where(Shard.audit_id == audit_id).order_by(Shard.index)
        ).all()
    for shard_id in shard_ids:
        assert run_shard(stack.db, stack.settings, shard_id).status == "succeeded"
    assert finalize_audit(stack.db, stack.settings, audit_id).status == "succeeded"
    return stack.client.get(f"/v1/audits/{audit_id}", headers=stack.headers).json()


@pytest.fixture
def audited(make_stack, tiny_lm, tmp_path) -> Audited:
    """The demo model and canaries at hostile paths, audited under a policy with loss,
    membership and extraction checks."""
    stack = make_stack()
    model_dir = tiny_lm.model_dir.parent / HOSTILE_MODEL
    if not model_dir.exists():
        shutil.copytree(tiny_lm.model_dir, model_dir)
    dataset = tiny_lm.dataset_path.parent / HOSTILE_DATA
    shutil.copy(tiny_lm.dataset_path, dataset)
    policy = stack.client.post(
        "/v1/policies",
        headers=stack.headers,
        json={
            "name": "release-gate",
            "source": "mlflow",
            "model_pattern": "support-*",
            "dataset": {"uri": f"path:{dataset}"},
            "checks": [{"kind": "loss", "params": {}}, {"kind": "membership", "params": {}}],
            "thresholds": [{"metric": "membership.best.auc", "op": "<=", "value": 0.6}],
        },
    ).json()
    body = {
        "model": {"uri": f"path:{model_dir}"},
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [
            {"kind": "loss", "params": {}},
            {"kind": "membership", "params": {"bootstrap": 50}},
            {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
        ],
        "labels": {"stage": HOSTILE_LABEL},
    }
    submitted = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert submitted.status_code == 202, submitted.text
    audit_id = submitted.json()["id"]
    with stack.db.session() as session:
        session.get(Audit, audit_id).policy_id = policy["id"]
    audit = run_audit(stack, audit_id)
    assert audit["status"] == "succeeded", audit
    return Audited(stack, audit, model_dir)


def get_pack(stack, audit_id: str, headers: dict | None = None, **params) -> dict:
    response = stack.client.get(
        f"/v1/audits/{audit_id}/evidence", headers=headers or stack.headers, params=params
    )
    assert response.status_code == 200, response.text
    return parse_envelope(response.content)


def published_keys(stack) -> list[dict]:
    response = stack.client.get("/v1/evidence/keys", headers=stack.headers)
    assert response.status_code == 200, response.text
    assert "PRIVATE" not in response.text
    return response.json()["data"]


def test_a_pack_states_the_audit_and_verifies_with_the_published_key(audited) -> None:
    stack, audit = audited.stack, audited.audit
    started = time.perf_counter()
    pack = get_pack(stack, audit["id"])
    print(f"\njson pack signed and served in {time.perf_counter() - started:.3f}s")
    (key,) = published_keys(stack)
    assert key["status"] == "active" and key["retired_at"] is None
    public = load_public_key(key["public_key_pem"])
    assert key["key_id"] == fingerprint(public) == pack["signature"]["key_id"]
    payload = verify_envelope(pack, public).payload

    assert payload["schema"] == "memaudit.evidence/v1"
    assert payload["audit"]["id"] == audit["id"] and payload["audit"]["team"]["name"] == "default"
    assert payload["subject"]["model"]["uri"] == audit["model_uri"]
    assert payload["subject"]["model"]["sha256"] == audit["provenance"]["model_sha256"]
    assert len(payload["subject"]["model"]["sha256"]) == 64
    assert payload["subject"]["dataset"]["sha256"] == audit["provenance"]["dataset_sha256"]
    assert [m["kind"] for m in payload["methods"]] == ["loss", "membership", "extraction"]
    assert payload["methods"][1]["params"]["bootstrap"] == 50
    assert payload["methods"][1]["role"] == "membership_inference"
    n = audit["progress"]["total"]
    assert payload["sample_sizes"]["records"] == n == 48
    assert payload["sample_sizes"]["per_check"]["membership"]["rows"] == n
    members = payload["sample_sizes"]["per_check"]["membership"]["members"]
    assert 0 < members < n
    assert payload["provenance"] == audit["provenance"]
    # The full summary is bound by its hash, not carried (its exemplars hold record text).
    assert payload["results"]["summary_sha256"] == canonical_sha256(audit["summary"])
    keys = {h["key"] for h in payload["results"]["headlines"]}
    assert {"membership.best_auroc", "extraction.all.greedy_rate"} <= keys
    scores = payload["results"]["readings"]["membership"]["scores"]
    assert (
        scores["loss"]["auroc"]["value"]
        == audit["summary"]["membership"]["scores"]["loss"]["auroc"]["value"]
    )
    assert payload["verdict"]["policy"]["name"] == "release-gate"
    assert payload["verdict"]["status"] == audit["verdict"]["status"]
    assert payload["verdict"]["status"] in ("fail", "inconclusive")  # it memorizes
    # The verdict in words and the blind-baseline reading, as the report and the API state them.
    assert payload["results"]["findings"] == audit["findings"] and len(audit["findings"]) == 3
    blind = payload["results"]["readings"]["membership"]["blind_baseline"]
    assert blind["reading"] == audit["summary"]["membership"]["blind_baseline"]["reading"]
    controls = {c["control"]: c for c in payload["controls"]}
    assert set(controls) == {"AIG-035", "Art. 15", "MEASURE 2.7", "MEASURE 2.10"}
    cited = {item["item"] for item in controls["AIG-035"]["evidence"]}
    assert {"/methods/1", "/methods/2", "/verdict", "/sample_sizes"} <= cited
    assert "/methods/0" not in cited  # the loss check is no membership or extraction test
    assert all(c["not_covered"] for c in controls.values())
    # Every cited item is a JSON Pointer that resolves in the signed payload.
    for control in payload["controls"]:
        for item in control["evidence"]:
            node = payload
            for part in item["item"].split("/")[1:]:
                node = node[int(part)] if isinstance(node, list) else node[part]

    text = json.dumps(pack)
    for record in audited.stack.settings.data_root_paths[0].glob("*.jsonl"):
        # The data folder is shared with other tests: any record text there must stay out.
        rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
        secrets = [row["text"] for row in rows if isinstance(row.get("text"), str)]
        assert not any(secret in text for secret in secrets[:10])  # no record text leaks


def test_a_changed_pack_or_one_signed_by_another_key_fails(audited) -> None:
    stack, audit = audited.stack, audited.audit
    pack = get_pack(stack, audit["id"])
    public = load_public_key(published_keys(stack)[0]["public_key_pem"])

    tampered = json.loads(json.dumps(pack))
    tampered["payload"]["verdict"]["status"] = "pass"
    with pytest.raises(EvidenceInvalid, match="changed after signing"):
        verify_envelope(tampered, public)
    moved = json.loads(json.dumps(pack))
    moved["payload"]["sample_sizes"]["records"] += 1
    with pytest.raises(EvidenceInvalid):
        verify_envelope(moved, public)

    # A forger re-signs the altered payload with a key of their own and names it in the file.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from core.signing import sign_payload

    forger = Ed25519PrivateKey.generate()
    forged_payload = {**tampered["payload"], "signing_key": fingerprint(forger.public_key())}
    forged = sign_payload(forged_payload, forger)
    verify_envelope(forged, forger.public_key())  # valid under the forger's own key only
    with pytest.raises(EvidenceInvalid, match="not the key you trust"):
        verify_envelope(forged, public)


def test_rotation_keeps_old_packs_verifiable_and_lists_the_retired_key(audited) -> None:
    stack, audit = audited.stack, audited.audit
    before = get_pack(stack, audit["id"])
    (old,) = published_keys(stack)
    store = KeyStore(stack.settings.evidence_keys_dir)
    private_dir = stack.settings.evidence_keys_dir / "private"
    assert stat.S_IMODE(os.stat(private_dir).st_mode) == 0o700
    (private_file,) = private_dir.iterdir()
    assert stat.S_IMODE(os.stat(private_file).st_mode) == 0o600

    new, retired = store.rotate()
    assert retired is not None and retired.key_id == old["key_id"]
    assert not private_file.exists()  # nothing can sign with a retired key again
    listed = {k["key_id"]: k for k in published_keys(stack)}
    assert listed[old["key_id"]]["status"] == "retired"
    assert listed[old["key_id"]]["retired_at"] is not None
    assert listed[new.key_id]["status"] == "active"

    old_public = load_public_key(old["public_key_pem"])
    assert verify_envelope(before, old_public).key_id == old["key_id"]
    after = get_pack(stack, audit["id"])
    assert after["signature"]["key_id"] == new.key_id
    assert verify_envelope(after, load_public_key(new.public_key_pem)).key_id == new.key_id
    with pytest.raises(EvidenceInvalid):
        verify_envelope(after, old_public)

    (current,) = private_dir.iterdir()
    current.chmod(0o644)  # an operator's slip: the signing key readable by others
    refused = stack.client.get(f"/v1/audits/{audit['id']}/evidence", headers=stack.headers)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "signing_unavailable"
    assert str(private_dir) not in refused.text  # the reason goes to the log, not the caller


def test_the_page_escapes_hostile_names_and_shows_the_signature(audited) -> None:
    stack, audit = audited.stack, audited.audit
    response = stack.client.get(
        f"/v1/audits/{audit['id']}/evidence", headers=stack.headers, params={"format": "html"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    page = response.text
    assert HOSTILE_MODEL in audit["model_uri"] and HOSTILE_LABEL in json.dumps(audit["labels"])
    for raw in ("<img src=x", "<svg onload", "<script>alert"):
        assert raw not in page, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;svg onload=alert(2)&gt;&amp;amp.jsonl" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "<script" not in page  # the page runs nothing
    (key,) = published_keys(stack)
    assert key["key_id"] in page and "Ed25519" in page
    pack = get_pack(stack, audit["id"])
    assert pack["signature"]["key_id"] in page
    assert len(base64.b64decode(pack["signature"]["value"])) == 64
    for control in ("AIG-035", "Art. 15", "MEASURE 2.7", "MEASURE 2.10"):
        assert control in page


def test_pdf_needs_a_renderer_and_is_bounded_in_time(audited, tmp_path) -> None:
    stack, audit = audited.stack, audited.audit
    path = f"/v1/audits/{audit['id']}/evidence"
    stack.settings.pdf_renderer = "none"
    missing = stack.client.get(path, headers=stack.headers, params={"format": "pdf"})
    assert missing.status_code == 501 and missing.json()["error"]["code"] == "pdf_unavailable"

    # No browser here: a stand-in with Chromium's command line prints the page it is given.
    printer = tmp_path / "printer"
    printer.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --print-to-pdf=*) out="${a#--print-to-pdf=}";; '
        'file://*) page="${a#file://}";; esac; done\n'
        '{ printf "%%PDF-1.4\\n"; cat "$page"; } > "$out"\n'
    )
    printer.chmod(0o755)
    stack.settings.pdf_renderer = str(printer)
    printed = stack.client.get(path, headers=stack.headers, params={"format": "pdf"})
    assert printed.status_code == 200, printed.text
    assert printed.headers["content-type"] == "application/pdf"
    assert printed.content.startswith(b"%PDF") and audit["id"].encode() in printed.content

    stuck = tmp_path / "stuck"
    pid_file = tmp_path / "stuck.pid"
    stuck.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    stuck.chmod(0o755)
    stack.settings.pdf_renderer, stack.settings.pdf_timeout_seconds = str(stuck), 1.0
    started = time.monotonic()
    slow = stack.client.get(path, headers=stack.headers, params={"format": "pdf"})
    assert slow.status_code == 503 and slow.json()["error"]["code"] == "pdf_render_failed"
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the renderer was killed, not left running


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="no Chromium installed")
def test_pdf_from_a_real_chromium(audited) -> None:
    stack, audit = audited.stack, audited.audit
    stack.settings.pdf_renderer = "/usr/bin/chromium"
    response = stack.client.get(
        f"/v1/audits/{audit['id']}/evidence", headers=stack.headers, params={"format": "pdf"}
    )
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"%PDF") and len(response.content) > 10_000


def test_only_a_succeeded_audit_of_ones_own_team_has_evidence(make_stack, tiny_lm) -> None:
    stack = make_stack()
    body = {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    queued = stack.client.post("/v1/audits", headers=stack.headers, json=body).json()
    path = f"/v1/audits/{queued['id']}/evidence"
    early = stack.client.get(path, headers=stack.headers)
    assert early.status_code == 409 and early.json()["error"]["code"] == "audit_not_finished"
    assert not stack.settings.evidence_keys_dir.exists()  # no key made for a refusal

    with stack.db.session() as session:
        team = create_team(session, stack.settings, "other", model_folders=["*"])
        other = {"Authorization": f"Bearer {create_key(session, 'other', 'read', team.id)}"}
    run_audit(stack, queued["id"])
    assert stack.client.get(path, headers=stack.headers).status_code == 200
    for target in (path, path.replace(queued["id"], "f" * 32)):
        refused = stack.client.get(target, headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    cancelled = stack.client.post("/v1/audits", headers=stack.headers, json=body).json()
    stack.client.post(f"/v1/audits/{cancelled['id']}/cancel", headers=stack.headers)
    late = stack.client.get(f"/v1/audits/{cancelled['id']}/evidence", headers=stack.headers)
    assert late.status_code == 409 and "cancelled" in late.json()["error"]["message"]
