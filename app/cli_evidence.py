"""`memaudit evidence`: verify a pack against a key the auditor holds, pin keys by fingerprint,
and rotate the service's signing key on its host.

`verify` and `pin` need neither the database nor the service: an outside auditor runs them on
their own machine, with a public key obtained beforehand (`GET /v1/evidence/keys`, or from the
operator), never with one that comes inside the file being checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from core.config import Settings
from core.signing import (
    EvidenceInvalid,
    fingerprint,
    load_public_key,
    normalize_fingerprint,
    parse_envelope,
    verify_envelope,
)

TRUST_FILE_VERSION = 1


def _read_trust(path: Path) -> dict[str, str]:
    """fingerprint -> PEM of every key pinned so far; empty when nothing is."""
    if not path.exists():
        return {}
    try:
        found = json.loads(path.read_text())
        keys = found.get("keys", {}) if isinstance(found, dict) else None
        if not isinstance(keys, dict):
            raise ValueError("no keys object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceInvalid(
            f"the trust file {path} is unreadable ({exc}): mend or remove it"
        ) from None
    return dict(keys)


def _write_trust(path: Path, keys: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump({"version": TRUST_FILE_VERSION, "keys": keys}, stream, indent=2, sort_keys=True)
    os.replace(temporary, path)


def _trust_path(settings: Settings, args: argparse.Namespace) -> Path:
    return Path(args.trust_file) if args.trust_file else settings.evidence_trust_path


def _pinned_key(settings: Settings, args: argparse.Namespace) -> Ed25519PublicKey:
    """The key pinned under this fingerprint, re-checked: a trust file edited to hold another
    key under a pinned name is refused."""
    wanted = normalize_fingerprint(args.pinned)
    path = _trust_path(settings, args)
    pem = _read_trust(path).get(wanted)
    if pem is None:
        raise EvidenceInvalid(f"no key {wanted} is pinned in {path}; pin it first")
    key = load_public_key(pem)
    if fingerprint(key) != wanted:
        raise EvidenceInvalid(f"{path} holds another key under {wanted}: the trust file changed")
    return key


def cmd_evidence_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 and name the key when the pack verifies; exit 1 and say why when it does not."""
    try:
        if args.public_key:
            key = load_public_key(Path(args.public_key).read_bytes())
        else:
            key = _pinned_key(settings, args)
        verified = verify_envelope(parse_envelope(Path(args.file).read_bytes()), key)
    except (EvidenceInvalid, OSError) as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"valid, signed by key {verified.key_id}")
    audit = verified.payload.get("audit") or {}
    subject = verified.payload.get("subject") or {}
    model_uri = (subject.get("model") or {}).get("uri")
    print(f"audit {audit.get('id')} of {model_uri or 'a dataset (no model)'}")
    print(f"signed at {verified.payload.get('signed_at')}")
    return 0


def cmd_evidence_pin(settings: Settings, args: argparse.Namespace) -> int:
    """Trust a public key from now on; print its fingerprint to compare with the operator's."""
    try:
        key = load_public_key(Path(args.pem).read_bytes())
        found = fingerprint(key)
        if args.expect and normalize_fingerprint(args.expect) != found:
            raise EvidenceInvalid(f"the key's fingerprint is {found}, not {args.expect}")
        path = _trust_path(settings, args)
        keys = _read_trust(path)
    except (EvidenceInvalid, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    keys[found] = Path(args.pem).read_text()
    _write_trust(path, keys)
    print(found)
    return 0


def cmd_evidence_unpin(settings: Settings, args: argparse.Namespace) -> int:
    """Stop trusting a key (one that may have leaked): packs it signed no longer verify here."""
    try:
        wanted = normalize_fingerprint(args.fingerprint)
        path = _trust_path(settings, args)
        keys = _read_trust(path)
    except (EvidenceInvalid, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if keys.pop(wanted, None) is None:
        print(f"error: {wanted} is not pinned in {path}", file=sys.stderr)
        return 1
    _write_trust(path, keys)
    print(f"unpinned {wanted}")
    return 0


def cmd_evidence_rotate(settings: Settings, _args: argparse.Namespace) -> int:
    """On the service's host: a new active key; the old one retired and still published."""
    from core.evidence_keys import KeyStore

    new, old = KeyStore(settings.evidence_keys_dir).rotate()
    if old is not None:
        print(f"retired {old.key_id} (still published; its private key is deleted)")
    print(f"active  {new.key_id}")
    return 0


def add_evidence_commands(commands: argparse._SubParsersAction) -> None:
    evidence = commands.add_parser("evidence", help="verify evidence packs; manage signing keys")
    actions = evidence.add_subparsers(dest="evidence_command", required=True)
    trust_help = "the trust file (default: MEMAUDIT_EVIDENCE_TRUST_FILE or ~/.config/memaudit/)"

    verify = actions.add_parser("verify", help="check a pack against a key you hold")
    verify.add_argument("file", help="the pack: GET /v1/audits/{id}/evidence, saved")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--public-key", help="a PEM file of the service's public key")
    source.add_argument("--pinned", help="the fingerprint of a key pinned earlier")
    verify.add_argument("--trust-file", default=None, help=trust_help)
    verify.set_defaults(handler=cmd_evidence_verify)

    pin = actions.add_parser("pin", help="trust a public key (PEM); prints its fingerprint")
    pin.add_argument("pem")
    pin.add_argument("--expect", default=None, help="refuse unless it has this fingerprint")
    pin.add_argument("--trust-file", default=None, help=trust_help)
    pin.set_defaults(handler=cmd_evidence_pin)

    unpin = actions.add_parser("unpin", help="stop trusting a pinned key")
    unpin.add_argument("fingerprint")
    unpin.add_argument("--trust-file", default=None, help=trust_help)
    unpin.set_defaults(handler=cmd_evidence_unpin)

    rotate = actions.add_parser(
        "rotate-key", help="on the service host: new signing key, the old one retired"
    )
    rotate.set_defaults(handler=cmd_evidence_rotate)
