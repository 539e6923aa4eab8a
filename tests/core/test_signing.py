"""Canonical JSON (RFC 8785) and Ed25519 envelopes: what is signed, and every way a pack fails."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.signing import (
    EvidenceInvalid,
    canonical_json,
    fingerprint,
    load_public_key,
    normalize_fingerprint,
    parse_envelope,
    public_key_pem,
    sign_payload,
    verify_envelope,
)

PAYLOAD = {
    "audit": {"id": "a" * 32, "labels": {"stage": "release"}},
    "results": {"auroc": 0.9375, "ci95": [0.81, 1.0], "n": 48},
    "verdict": {"status": "fail"},
}


# RFC 8785 Appendix B (numbers as ECMAScript writes a double), and §3.2.3's sorting example.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (333333333.33333329, "333333333.3333333"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1.0, "1"),
        (-1.5e-10, "-1.5e-10"),
        (48, "48"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_them(value, expected) -> None:
    assert canonical_json(value) == expected.encode()


def test_objects_sort_by_utf16_code_units_and_strings_escape_as_json_stringify() -> None:
    # U+1F600 is D83D DE00 in UTF-16: before U+FB33 there, after it by code point.
    assert canonical_json({"\ufb33": 1, "\U0001f600": 2, "a": 3, "B": 4}) == (
        '{"B":4,"a":3,"\U0001f600":2,"\ufb33":1}'.encode()
    )
    text = 'q"b\\s/\b\f\n\r\t\x01\x1f\x7f é€'
    assert canonical_json(text) == '"q\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f é€"'.encode()
    assert canonical_json([None, True, False, {"x": []}]) == b'[null,true,false,{"x":[]}]'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53 + 1, {1: "x"}, b"bytes"])
def test_values_without_one_json_form_are_refused(value) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


def test_a_signed_payload_verifies_and_names_the_trusted_key() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign_payload(PAYLOAD, key)
    assert envelope["signature"]["algorithm"] == "Ed25519"
    assert envelope["signature"]["key_id"] == fingerprint(key.public_key())
    assert fingerprint(key.public_key()).startswith("sha256:")
    assert len(fingerprint(key.public_key())) == len("sha256:") + 64
    # Through a file and back (another key order, other whitespace): still the same bytes.
    reread = parse_envelope(json.dumps(envelope, indent=4, sort_keys=False))
    verified = verify_envelope(reread, load_public_key(public_key_pem(key.public_key())))
    assert verified.key_id == fingerprint(key.public_key()) and verified.payload == PAYLOAD


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e["payload"]["verdict"].update(status="pass"),
        lambda e: e["payload"]["results"].update(auroc=0.9376),
        lambda e: e["payload"]["audit"]["labels"].update(extra="x"),
        lambda e: e["payload"].pop("verdict"),
        lambda e: e["signature"].update(
            value=base64.b64encode(bytes(64)).decode()  # a well-formed, wrong signature
        ),
    ],
)
def test_any_change_after_signing_fails(change) -> None:
    key = Ed25519PrivateKey.generate()
    envelope = json.loads(json.dumps(sign_payload(PAYLOAD, key)))
    change(envelope)
    with pytest.raises(EvidenceInvalid, match="changed after signing"):
        verify_envelope(envelope, key.public_key())


def test_a_pack_resigned_by_another_key_fails_though_it_names_that_key() -> None:
    service, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    forged = sign_payload({**PAYLOAD, "verdict": {"status": "pass"}}, forger)
    assert forged["signature"]["key_id"] == fingerprint(forger.public_key())
    with pytest.raises(EvidenceInvalid, match="not the key you trust") as refused:
        verify_envelope(forged, service.public_key())
    assert fingerprint(forger.public_key()) in str(refused.value)
    assert fingerprint(service.public_key()) in str(refused.value)


def test_a_payload_naming_another_signing_key_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    other = fingerprint(Ed25519PrivateKey.generate().public_key())
    envelope = sign_payload({**PAYLOAD, "signing_key": other}, key)
    with pytest.raises(EvidenceInvalid, match="names signing key"):
        verify_envelope(envelope, key.public_key())


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ({"payload": {}}, "expected exactly payload and signature"),
        ({"payload": {}, "signature": {}, "key": "x"}, "expected exactly payload and signature"),
        ({"payload": [], "signature": {}}, "must be JSON objects"),
        ({"payload": {}, "signature": {"algorithm": "RS256", "value": ""}}, "not Ed25519"),
        ({"payload": {}, "signature": {"algorithm": "Ed25519", "value": "!!"}}, "not base64"),
        ({"payload": {}, "signature": {"algorithm": "Ed25519", "value": "AAAA"}}, "64 bytes"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(envelope, reason) -> None:
    with pytest.raises(EvidenceInvalid, match=reason):
        verify_envelope(envelope, Ed25519PrivateKey.generate().public_key())


def test_files_two_readers_could_read_differently_are_refused() -> None:
    with pytest.raises(EvidenceInvalid, match="repeats the key"):
        parse_envelope('{"payload": {"verdict": "fail", "verdict": "pass"}, "signature": {}}')
    with pytest.raises(EvidenceInvalid, match="not JSON"):
        parse_envelope('{"payload": {"auroc": NaN}, "signature": {}}')
    with pytest.raises(EvidenceInvalid, match="not JSON"):
        parse_envelope("{")


def test_keys_other_than_ed25519_and_bad_fingerprints_are_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ecdsa = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = ecdsa.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(EvidenceInvalid, match="not Ed25519"):
        load_public_key(pem)
    with pytest.raises(EvidenceInvalid, match="not a PEM public key"):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    digest = "AB" * 32
    assert normalize_fingerprint(digest) == "sha256:" + digest.lower()
    with pytest.raises(EvidenceInvalid, match="not a key fingerprint"):
        normalize_fingerprint("sha256:1234")
