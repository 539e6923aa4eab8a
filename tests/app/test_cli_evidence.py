"""`memaudit evidence`: an auditor verifies against a key they hold, pinned by fingerprint or
given as a file, never one the pack carries; no database, no service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.cli import build_parser
from core.evidence_keys import KeyStore
from core.signing import fingerprint, public_key_pem, sign_payload
from tests.conftest import REPO, make_settings

PAYLOAD = {
    "schema": "memaudit.evidence/v1",
    "audit": {"id": "c" * 32},
    "subject": {"model": {"uri": "path:/models/gpt2"}},
    "signed_at": "2026-01-01T00:00:00+00:00",
    "verdict": {"status": "fail"},
}


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", tmp_path / "models", tmp_path / "inputs")


@pytest.fixture
def service(tmp_path, settings):
    """The service's key directory, one pack it signed, and its public key as published."""
    private = KeyStore(settings.evidence_keys_dir).active_key()
    payload = {**PAYLOAD, "signing_key": fingerprint(private.public_key())}
    pack = tmp_path / "pack.json"
    pack.write_text(json.dumps(sign_payload(payload, private), indent=2))
    pem = tmp_path / "service.pem"
    pem.write_text(public_key_pem(private.public_key()))
    return pack, pem, fingerprint(private.public_key())


def run(settings, capsys, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(list(argv))
    code = args.handler(settings, args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_pack_verifies_with_a_public_key_file_and_prints_its_fingerprint(
    settings, service, capsys
) -> None:
    pack, pem, key_id = service
    code, out, _ = run(settings, capsys, "evidence", "verify", str(pack), "--public-key", str(pem))
    assert code == 0
    assert out.splitlines()[0] == f"valid, signed by key {key_id}"
    assert "c" * 32 in out


def test_a_tampered_pack_fails(settings, service, capsys) -> None:
    pack, pem, _ = service
    envelope = json.loads(pack.read_text())
    envelope["payload"]["verdict"]["status"] = "pass"
    pack.write_text(json.dumps(envelope))
    code, out, err = run(
        settings, capsys, "evidence", "verify", str(pack), "--public-key", str(pem)
    )
    assert code == 1 and out == ""
    assert err.startswith("invalid:") and "changed after signing" in err


def test_pinning_and_a_pack_resigned_by_an_unpinned_key(settings, service, tmp_path, capsys):
    pack, pem, key_id = service
    trust = tmp_path / "auditor" / "trust.json"
    code, out, _ = run(
        settings,
        capsys,
        "evidence",
        "pin",
        str(pem),
        "--expect",
        key_id,
        "--trust-file",
        str(trust),
    )
    assert code == 0 and out.strip() == key_id
    assert oct(trust.stat().st_mode & 0o777) == "0o600"
    code, out, _ = run(
        settings,
        capsys,
        "evidence",
        "verify",
        str(pack),
        "--pinned",
        key_id,
        "--trust-file",
        str(trust),
    )
    assert code == 0 and key_id in out

    # The forger edits the verdict, re-signs with their own key and names it everywhere.
    forger = Ed25519PrivateKey.generate()
    envelope = json.loads(pack.read_text())
    payload = {**envelope["payload"], "verdict": {"status": "pass"}}
    payload["signing_key"] = fingerprint(forger.public_key())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(sign_payload(payload, forger)))
    code, out, err = run(
        settings,
        capsys,
        "evidence",
        "verify",
        str(forged),
        "--pinned",
        key_id,
        "--trust-file",
        str(trust),
    )
    assert code == 1 and out == ""
    assert fingerprint(forger.public_key()) in err and "not the key you trust" in err
    # Asking for the forger's key by name finds nothing pinned: the file's key is never used.
    code, _, err = run(
        settings,
        capsys,
        "evidence",
        "verify",
        str(forged),
        "--pinned",
        fingerprint(forger.public_key()),
        "--trust-file",
        str(trust),
    )
    assert code == 1 and "is pinned" in err

    code, out, _ = run(settings, capsys, "evidence", "unpin", key_id, "--trust-file", str(trust))
    assert code == 0 and key_id in out
    code, _, err = run(
        settings,
        capsys,
        "evidence",
        "verify",
        str(pack),
        "--pinned",
        key_id,
        "--trust-file",
        str(trust),
    )
    assert code == 1 and "is pinned" in err  # no longer trusted


def test_pin_refuses_an_unexpected_fingerprint_and_a_trust_file_edited_under_a_name(
    settings, service, tmp_path, capsys
) -> None:
    pack, pem, key_id = service
    trust = tmp_path / "trust.json"
    wrong = "sha256:" + "0" * 64
    code, _, err = run(
        settings, capsys, "evidence", "pin", str(pem), "--expect", wrong, "--trust-file", str(trust)
    )
    assert code == 1 and key_id in err and not trust.exists()
    run(settings, capsys, "evidence", "pin", str(pem), "--trust-file", str(trust))
    stored = json.loads(trust.read_text())
    other = public_key_pem(Ed25519PrivateKey.generate().public_key())
    stored["keys"][key_id] = other  # another key slipped in under the pinned fingerprint
    trust.write_text(json.dumps(stored))
    code, _, err = run(
        settings,
        capsys,
        "evidence",
        "verify",
        str(pack),
        "--pinned",
        key_id,
        "--trust-file",
        str(trust),
    )
    assert code == 1 and "trust file changed" in err


def test_rotate_key_retires_the_old_key_and_old_packs_still_verify(
    settings, service, tmp_path, capsys
) -> None:
    pack, _pem, key_id = service
    code, out, _ = run(settings, capsys, "evidence", "rotate-key")
    assert code == 0 and f"retired {key_id}" in out
    keys = KeyStore(settings.evidence_keys_dir).published()
    assert [k.status for k in keys] == ["active", "retired"] and keys[1].key_id == key_id
    old = tmp_path / "old.pem"
    old.write_text(keys[1].public_key_pem)
    code, out, _ = run(settings, capsys, "evidence", "verify", str(pack), "--public-key", str(old))
    assert code == 0 and key_id in out
    new = tmp_path / "new.pem"
    new.write_text(keys[0].public_key_pem)
    code, _, _ = run(settings, capsys, "evidence", "verify", str(pack), "--public-key", str(new))
    assert code == 1


def test_the_command_verifies_with_no_database_or_service_reachable(service, tmp_path) -> None:
    """The installed entry point, in a fresh process whose database and broker do not exist."""
    pack, pem, key_id = service
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAUDIT_")}
    env.update(
        MEMAUDIT_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:9/none",
        MEMAUDIT_BROKER_URL="redis://127.0.0.1:9/0",
        MEMAUDIT_DATA_DIR=str(tmp_path / "elsewhere"),
        PYTHONPATH=str(REPO),
    )
    command = [sys.executable, "-m", "app.cli", "evidence", "verify", str(pack)]
    done = subprocess.run(
        [*command, "--public-key", str(pem)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"valid, signed by key {key_id}"
    assert not Path(tmp_path / "elsewhere").exists()  # nothing of the service was set up
    missing = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 2 and "--public-key" in missing.stderr  # a key is required


@pytest.mark.parametrize("content", ["{not json", "[]", '{"keys": 3}'])
def test_an_unreadable_trust_file_is_one_error_line_never_a_traceback(
    settings, service, tmp_path, capsys, content
) -> None:
    pack, pem, key_id = service
    trust = tmp_path / "trust.json"
    trust.write_text(content)
    for command in (
        ["verify", str(pack), "--pinned", key_id],
        ["pin", str(pem)],
        ["unpin", key_id],
    ):
        code, _, err = run(settings, capsys, "evidence", *command, "--trust-file", str(trust))
        assert code == 1 and "trust file" in err and "unreadable" in err, (command, err)
        assert "Traceback" not in err
