"""PII and secrets inventory of a corpus record: what is where, masked, with a keyed hash.

A dataset audit must show every detected value masked and still count how often each value
recurs (a secret seen 30 times is the likeliest to be memorized). So `detect` returns, per
finding, its type, its character span, a mask that keeps too little to recover the value, and
an HMAC-SHA256 of the value's canonical form under the audit's key: the same value written two
ways (spaces in a card number, upper-case e-mail) counts together, and without the key the hash
cannot be checked against guesses. The raw value never leaves `detect`.

Where the findings come from (presidio, detect-secrets, offline): `pii_recognizers`.

>>> key = b"audit-key"
>>> found = detect("Mail ada@example.com or pay 4242 4242 4242 4242.", key)
>>> [(d.type, d.start, d.end, d.masked) for d in found]
[('email', 5, 20, 'a***@e***.com'), ('credit_card', 28, 47, '**** **** **** 4242')]
>>> masked_text("Mail ada@example.com now", found[:1])
'Mail a***@e***.com now'
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from worker.engine.corpus.pii_recognizers import find_spans

PII_TYPES = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "ip_address",
    "api_key",
    "private_key",
    "possible_secret",
)

# Tokens (keys, possible secrets) keep this many characters at each end: the provider prefix
# and a tail tell two keys apart; at least 12 characters (over 60 bits) stay hidden.
TOKEN_KEEP = 4
TOKEN_MIN_HIDDEN = 12
TOKEN_MAX_STARS = 12
PHONE_KEEP_DIGITS = 3
CARD_KEEP_DIGITS = 4
IBAN_KEEP_TAIL = 2


class PiiDetectionError(RuntimeError):
    """A detector failed; the message names the failure, never the text or a value."""


@dataclass(frozen=True)
class Detection:
    type: str
    start: int  # character offsets into the text: text[start:end] is the value
    end: int
    masked: str
    hashed: str  # keyed_hash of the value: equal hashes, same value


def detect(text: str, key: bytes) -> list[Detection]:
    """All PII and secrets in `text`, non-overlapping and sorted by start.

    Errors are re-raised without their cause: a library's message may quote the matched text.
    """
    _require_key(key)
    try:
        return [
            Detection(
                span.type,
                span.start,
                span.end,
                mask_value(text[span.start : span.end], span.type),
                keyed_hash(text[span.start : span.end], span.type, key),
            )
            for span in find_spans(text)
        ]
    except Exception as exc:  # the original may carry the value; only its class goes on
        failure = type(exc).__name__
    raise PiiDetectionError(f"PII detection failed with {failure}; the text is withheld")


def masked_text(text: str, detections: Sequence[Detection]) -> str:
    """The text with each detected value replaced by its mask."""
    pieces = []
    cursor = 0
    for detection in sorted(detections, key=lambda d: d.start):
        if detection.start < cursor:
            raise ValueError("detections overlap; pass the list detect() returned")
        pieces += [text[cursor : detection.start], detection.masked]
        cursor = detection.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def keyed_hash(value: str, type: str, key: bytes) -> str:
    """HMAC-SHA256 (hex) of the type and the value's canonical form, so recurrences count together.

    Canonical forms: e-mail lower-cased; card digits; IBAN upper-case letters and digits; phone
    the national significant number (country code or trunk prefix dropped, so "+44 20 7946 0958"
    and "020 7946 0958" agree; the same national number in two countries would merge); IP the
    compressed address; a private key without whitespace; other tokens as written.
    """
    _require_key(key)
    message = f"{_check_type(type)}\x00{_canonical(value, type)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def mask_value(value: str, type: str) -> str:
    """A form that tells values apart by eye and never enough to recover them.

    >>> mask_value("AKIAIOSFODNN7EXAMPLE", "api_key")
    'AKIA************MPLE'
    >>> mask_value("GB82 WEST 1234 5698 7654 32", "iban")
    'GB** **** **** **** **** 32'
    >>> mask_value("192.168.10.42", "ip_address")
    '192.168.*.*'
    """
    _check_type(type)
    if type == "email":
        return _mask_email(value)
    if type == "phone":
        return _mask_phone(value)
    if type == "credit_card":
        return _star_digits_but_last(value, CARD_KEEP_DIGITS)
    if type == "iban":
        return _mask_iban(value)
    if type == "ip_address":
        return _mask_ip(value)
    if type == "private_key":
        return "[PRIVATE KEY]"
    return _mask_token(value)


def _require_key(key: bytes) -> None:
    if not isinstance(key, bytes) or not key:
        raise ValueError("a non-empty bytes key is required for keyed hashes")


def _check_type(type: str) -> str:
    if type not in PII_TYPES:
        raise ValueError(f"unknown PII type {type!r}; known: {', '.join(PII_TYPES)}")
    return type


def _decimal_digits(value: str) -> str:
    return "".join(str(int(c)) for c in value if c.isdecimal())


def _canonical(value: str, type: str) -> str:
    if type == "email":
        return value.strip().lower()
    if type == "credit_card":
        return _decimal_digits(value)
    if type == "iban":
        return "".join(c for c in value.upper() if c.isalnum())
    if type == "phone":
        return _national_number(value)
    if type == "ip_address":
        return _canonical_ip(value)
    if type == "private_key":
        return "".join(value.split())
    return value


def _national_number(value: str) -> str:
    digits = _decimal_digits(value)
    international = value.lstrip().startswith("+") or digits.startswith("00")
    if international:
        import phonenumbers

        try:
            number = phonenumbers.parse("+" + digits.removeprefix("00"), None)
            return str(number.national_number)
        except phonenumbers.NumberParseException:
            return digits
    if digits.startswith("0"):  # trunk prefix of GB, DE, FR, IL, IN, BR
        return digits[1:]
    if len(digits) == 11 and digits.startswith("1"):  # NANP trunk prefix
        return digits[1:]
    return digits


def _parse_ip(value: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    try:
        return ipaddress.ip_interface(value.strip())
    except ValueError:
        return None


def _canonical_ip(value: str) -> str:
    interface = _parse_ip(value)
    if interface is None:
        return value.strip().lower()
    address = interface.ip.compressed
    return f"{address}/{interface.network.prefixlen}" if "/" in value else address


def _mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    labels = domain.split(".")
    if not at or len(labels) < 2:
        return "***"
    return f"{_first_of_longer(local)}***@{_first_of_longer(labels[0])}***.{labels[-1]}"


def _first_of_longer(part: str) -> str:
    """A part's first character, and nothing of a one-character part, which it would reveal."""
    return part[:1] if len(part) > 1 else ""


def _star_digits_but_last(value: str, keep: int, keep_first: int = 0) -> str:
    """Stars for every digit except the first `keep_first` and the last `keep`; layout kept."""
    total = sum(c.isdecimal() for c in value)
    seen = 0
    out = []
    for c in value:
        if c.isdecimal():
            seen += 1
            hidden = keep_first < seen <= total - keep
            out.append("*" if hidden else c)
        else:
            out.append(c)
    return "".join(out)


def _mask_phone(value: str) -> str:
    """+44 20 7946 0958 -> +44 ** **** *958: the country code and the last three digits."""
    country_digits = 0
    if value.lstrip().startswith("+"):
        import phonenumbers

        try:
            country_digits = len(str(phonenumbers.parse(value, None).country_code))
        except phonenumbers.NumberParseException:
            country_digits = 0
    return _star_digits_but_last(value, PHONE_KEEP_DIGITS, keep_first=country_digits)


def _mask_iban(value: str) -> str:
    alnum_total = sum(c.isalnum() for c in value)
    seen = 0
    out = []
    for c in value:
        if c.isalnum():
            seen += 1
            kept = seen <= 2 or seen > alnum_total - IBAN_KEEP_TAIL
            out.append(c if kept else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask_ip(value: str) -> str:
    interface = _parse_ip(value)
    if interface is None:
        return "[IP]"
    if interface.version == 4:
        first_two = interface.ip.compressed.split(".")[:2]
        return ".".join([*first_two, "*", "*"])
    groups = [group.lstrip("0") or "0" for group in interface.ip.exploded.split(":")[:2]]
    return ":".join([*groups, *["*"] * 6])


def _mask_token(value: str) -> str:
    if len(value) < 2 * TOKEN_KEEP + TOKEN_MIN_HIDDEN:
        return value[:2] + "*" * min(len(value) - 2, TOKEN_MAX_STARS)
    stars = min(len(value) - 2 * TOKEN_KEEP, TOKEN_MAX_STARS)
    return value[:TOKEN_KEEP] + "*" * stars + value[-TOKEN_KEEP:]
