"""Ed25519 signatures over canonical JSON: what an evidence pack's envelope is, and how anyone
checks one against a public key they already hold.

The signed bytes are the payload in the JSON Canonicalization Scheme (RFC 8785): object keys
sorted by their UTF-16 code units, no whitespace, strings escaped as ECMAScript's
`JSON.stringify` does (only `"`, `\\` and control characters; everything else as UTF-8), numbers
as ECMAScript writes a double (`1` for 1.0, `0.002`, `1e-7`, `1e+21`). Any RFC 8785 library
gives the same bytes (Python's `rfc8785`, JavaScript's `canonicalize`, Go's `jsoncanonicalizer`),
so a verifier needs no memaudit code; the README shows one in ten lines.

A key's id is its fingerprint: `sha256:` and the hex SHA-256 of the raw 32-byte public key.
Nothing here touches a file, a database or the network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
FINGERPRINT_PREFIX = "sha256:"
MAX_EXACT_INTEGER = 2**53  # past it a JSON number is not the same value in every reader
SIGNATURE_BYTES = 64


class EvidenceInvalid(ValueError):
    """The pack does not verify with the key the auditor holds; the message says why."""


# ---- canonical JSON (RFC 8785) --------------------------------------------------------------


def _number(value: float) -> str:
    """A double as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no JSON form; canonical JSON refuses it")
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that read back as the same double, as ECMAScript does.
    _, digits_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple))
    k = len(digits)
    n = int(exponent) + k  # value = 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + text


_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"
}  # fmt: skip


def _string(value: str) -> str:
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _utf16_order(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_EXACT_INTEGER:
            raise ValueError(f"integer {value} is past 2^53: not one value in every JSON reader")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("canonical JSON objects have string keys only")
        out.append("{")
        for index, key in enumerate(sorted(value, key=_utf16_order)):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value: what is signed, and what is hashed."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


# ---- keys -----------------------------------------------------------------------------------


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """`sha256:<hex>` of the raw 32-byte public key: the key's id, and what an auditor pins."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return FINGERPRINT_PREFIX + hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; any other key type or text is refused by name."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise EvidenceInvalid(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceInvalid(f"the public key is {type(key).__name__}, not Ed25519")
    return key


def normalize_fingerprint(text: str) -> str:
    """`sha256:<64 hex>` in lower case; a bare hex digest is accepted and prefixed."""
    value = text.strip().lower()
    if not value.startswith(FINGERPRINT_PREFIX):
        value = FINGERPRINT_PREFIX + value
    digest = value.removeprefix(FINGERPRINT_PREFIX)
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise EvidenceInvalid(f"{text!r} is not a key fingerprint (sha256: and 64 hex digits)")
    return value


# ---- envelopes ------------------------------------------------------------------------------


def sign_payload(payload: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The envelope: the payload as given, and the Ed25519 signature of its canonical bytes."""
    signature = private_key.sign(canonical_json(payload))
    return {
        "payload": payload,
        "signature": {
            "algorithm": ALGORITHM,
            "key_id": fingerprint(private_key.public_key()),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }


@dataclass(frozen=True)
class Verified:
    key_id: str  # the fingerprint of the key the auditor supplied, which signed the payload
    payload: dict[str, Any]


def _signature_block(envelope: Any) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    if not isinstance(envelope, Mapping) or set(envelope) != {"payload", "signature"}:
        raise EvidenceInvalid("not an evidence envelope: expected exactly payload and signature")
    payload, block = envelope["payload"], envelope["signature"]
    if not isinstance(payload, dict) or not isinstance(block, dict):
        raise EvidenceInvalid("payload and signature must be JSON objects")
    if block.get("algorithm") != ALGORITHM:
        raise EvidenceInvalid(f"signature algorithm {block.get('algorithm')!r} is not Ed25519")
    try:
        value = base64.b64decode(str(block.get("value", "")), validate=True)
    except ValueError:
        raise EvidenceInvalid("the signature value is not base64") from None
    if len(value) != SIGNATURE_BYTES:
        raise EvidenceInvalid(f"an Ed25519 signature is 64 bytes; this one is {len(value)}")
    return payload, block, value


def verify_envelope(envelope: Any, trusted_key: Ed25519PublicKey) -> Verified:
    """Check the envelope against the key the auditor holds, never one the file names.

    The file's `key_id` only explains a failure: a pack re-signed with another key says which.
    """
    payload, block, signature = _signature_block(envelope)
    trusted_id = fingerprint(trusted_key)
    try:
        data = canonical_json(payload)
    except ValueError as exc:
        raise EvidenceInvalid(f"the payload is not canonical JSON: {exc}") from None
    try:
        trusted_key.verify(signature, data)
    except InvalidSignature:
        named = block.get("key_id")
        if named and named != trusted_id:
            raise EvidenceInvalid(
                f"the file says it was signed by key {named}, which is not the key you trust "
                f"({trusted_id}); its signature does not verify with yours"
            ) from None
        raise EvidenceInvalid(
            f"the signature does not verify with key {trusted_id}: the payload or the "
            "signature was changed after signing"
        ) from None
    if payload.get("signing_key") not in (None, trusted_id):
        raise EvidenceInvalid(
            f"the payload names signing key {payload.get('signing_key')}, not {trusted_id}"
        )
    return Verified(trusted_id, payload)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        # A reader that keeps the first value would see another document than the one verified.
        raise EvidenceInvalid(f"the file repeats the key(s) {duplicated} in one object")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise EvidenceInvalid(f"{name} is not JSON")


def parse_envelope(text: str | bytes) -> Any:
    """The file's JSON, refusing what two readers could read differently: a key given twice in
    one object, NaN and Infinity."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvidenceInvalid(f"not JSON: {exc}") from None
