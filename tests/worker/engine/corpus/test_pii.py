"""PII and secrets inventory (issue #29 item 3): spans, checksums, hashes, masks, look-alikes."""

from __future__ import annotations

import base64
import doctest
import itertools
import random
import socket
import string
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from tests.word_texts import WORDS
from worker.engine.corpus import pii, pii_recognizers
from worker.engine.corpus.pii import (
    PII_TYPES,
    Detection,
    PiiDetectionError,
    detect,
    keyed_hash,
    mask_value,
    masked_text,
)

KEY = b"test-audit-key"


# Known answers are built here, independently of the code under test.


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d // 10 + d % 10
    return total % 10 == 0


def luhn_complete(body: str) -> str:
    """The body plus the one check digit that makes it Luhn-valid, found by trying all ten."""
    (digit,) = [d for d in "0123456789" if luhn_ok(body + d)]
    return body + digit


def iban_with_check(country: str, bban: str) -> str:
    """ISO 13616: check digits 98 - (BBAN + country + "00" as a number) mod 97."""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def iban_valid(iban: str) -> bool:
    compact = iban.replace(" ", "")
    numeric = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(numeric) % 97 == 1


def grouped(value: str, sep: str = " ", size: int = 4) -> str:
    return sep.join(value[i : i + size] for i in range(0, len(value), size))


def build(pieces: list[tuple[str | None, str]]) -> tuple[str, list[tuple[str, int, int]]]:
    """Text from (type, piece) parts; the expected spans are where typed pieces landed."""
    text = ""
    expected = []
    for pii_type, piece in pieces:
        if pii_type is not None:
            expected.append((pii_type, len(text), len(text) + len(piece)))
        text += piece
    return text, expected


RNG = random.Random(29)
ALNUM = string.ascii_letters + string.digits


def rand(chars: str, n: int) -> str:
    return "".join(RNG.choice(chars) for _ in range(n))


VISA = luhn_complete("4" + rand(string.digits, 14))
MASTERCARD = luhn_complete("5" + RNG.choice("12345") + rand(string.digits, 13))
AMEX = luhn_complete("37" + rand(string.digits, 12))
GB_IBAN = iban_with_check("GB", "WEST" + rand(string.digits, 14))
DE_IBAN = iban_with_check("DE", rand(string.digits, 18))
FR_IBAN = iban_with_check("FR", rand(string.digits, 10) + rand(string.ascii_uppercase, 11) + "42")
PEM_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(base64.b64encode(RNG.randbytes(48)).decode() for _ in range(6))
    + "\n-----END RSA PRIVATE KEY-----"
)
PROVIDER_KEYS = {
    "aws": "AKIA" + rand(string.ascii_uppercase + string.digits, 16),
    "github": "ghp_" + rand(ALNUM, 36),
    "slack": f"xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}",
    "stripe": "sk_live_" + rand(ALNUM, 24),
    "openai": "sk-" + rand(ALNUM, 20) + "T3BlbkFJ" + rand(ALNUM, 20),
    "jwt": ".".join(
        [
            base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("="),
            base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"Ada"}').decode().rstrip("="),
            base64.urlsafe_b64encode(RNG.randbytes(32)).decode().rstrip("="),
        ]
    ),
    "sendgrid": f"SG.{rand(ALNUM, 22)}.{rand(ALNUM, 43)}",
}
POSSIBLE_SECRET = base64.b64encode(RNG.randbytes(30)).decode()

EVERY_TYPE = [
    (None, "Write to "),
    ("email", "Ada.Lovelace@example.co.uk"),
    (None, " or call "),
    ("phone", "+44 20 7946 0958"),
    (None, " (office) or "),
    ("phone", "(202) 555-0143"),
    (None, ", mobile "),
    ("phone", "4155550132"),
    (None, ". Cards: "),
    ("credit_card", grouped(VISA, " ")),
    (None, ", "),
    ("credit_card", grouped(MASTERCARD, "-")),
    (None, " and "),
    ("credit_card", AMEX),
    (None, ". Pay into "),
    ("iban", grouped(GB_IBAN)),
    (None, " or "),
    ("iban", DE_IBAN),
    (None, " or "),
    ("iban", FR_IBAN),
    (None, ".\nServers "),
    ("ip_address", "192.168.10.42"),
    (None, " and "),
    ("ip_address", "2001:db8:85a3::8a2e:370:7334"),
    (None, " answered.\nkey: "),
    ("api_key", PROVIDER_KEYS["aws"]),
    (None, "\ntoken "),
    ("api_key", PROVIDER_KEYS["github"]),
    (None, " then "),
    ("api_key", PROVIDER_KEYS["slack"]),
    (None, " then "),
    ("api_key", PROVIDER_KEYS["stripe"]),
    (None, " then "),
    ("api_key", PROVIDER_KEYS["openai"]),
    (None, " then "),
    ("api_key", PROVIDER_KEYS["jwt"]),
    (None, " then "),
    ("api_key", PROVIDER_KEYS["sendgrid"]),
    (None, "\nHere is the key:\n"),
    ("private_key", PEM_KEY),
    (None, "\nand a blob "),
    ("possible_secret", POSSIBLE_SECRET),
    (None, " at the end."),
]


def test_docstring_examples_run() -> None:
    assert doctest.testmod(pii).failed == 0


def test_known_answers_are_valid() -> None:
    for card in (VISA, MASTERCARD, AMEX):
        assert luhn_ok(card)
    for iban in (GB_IBAN, DE_IBAN, FR_IBAN):
        assert iban_valid(iban)
    assert luhn_ok("4242424242424242") and not luhn_ok("4242424242424241")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83WEST12345698765432")


def test_every_type_found_with_its_span() -> None:
    text, expected = build(EVERY_TYPE)
    found = detect(text, KEY)
    assert [(d.type, d.start, d.end) for d in found] == expected
    assert {d.type for d in found} == set(PII_TYPES)
    assert "\n" in text[found[-2].start : found[-2].end]  # the PEM block spans lines


def test_detect_is_sorted_and_non_overlapping() -> None:
    text, _ = build(EVERY_TYPE)
    found = detect(text + " " + text, KEY)
    assert all(a.end <= b.start for a, b in itertools.pairwise(found))


@pytest.mark.parametrize(
    "text, phone",
    [
        ("Tel. 0281 4890 after six", "0281 4890"),
        ("the version 0.30.147 shipped", None),
        ("id c02a06ae-0281-4890-aa24-b89f4078094c failed", None),
        ("call me on 4155550132 today", "4155550132"),
        ("epoch 1296898226 logged", None),
        ("order ORD-2017-717539 shipped", None),
        ("order ORD-2017-717539 shipped, ring +442079460958", "+442079460958"),
    ],
)
def test_weak_phone_numbers_need_a_context_word(text: str, phone: str | None) -> None:
    found = [text[d.start : d.end] for d in detect(text, KEY) if d.type == "phone"]
    assert found == ([phone] if phone else [])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Call +1 415 555 0132 24 hours a day", [("phone", "+1 415 555 0132")]),
        ("Phone: +44 20 7946 0958 2 lines", [("phone", "+44 20 7946 0958")]),
        ("phone (415) 555-0132 1 2 3", [("phone", "(415) 555-0132")]),
        (
            "call +1 415 555 0132 192.168.10.42",
            [("phone", "+1 415 555 0132"), ("ip_address", "192.168.10.42")],
        ),
        (
            f"tel +1 415 555 0132 {grouped(VISA)}",
            [("phone", "+1 415 555 0132"), ("credit_card", grouped(VISA))],
        ),
        (
            "tel: 020 7946 0958 / 020 7946 0959 / 3",
            [("phone", "020 7946 0958"), ("phone", "020 7946 0959")],
        ),
        (
            "ring +1 415 555 0132 +44 20 7946 0958 7 days",
            [("phone", "+1 415 555 0132"), ("phone", "+44 20 7946 0958")],
        ),
        ("scores 12 34 56 78 90 12 34 56 78", []),
    ],
)
def test_a_phone_followed_by_more_numbers_is_found(
    text: str, expected: list[tuple[str, str]]
) -> None:
    found = detect(text, KEY)
    assert [(d.type, text[d.start : d.end]) for d in found] == expected
    for (_, value), detection in zip(expected, found, strict=True):
        assert detection.start == text.index(value)  # every value occurs once: the exact span


def test_overlaps_keep_the_stronger_span() -> None:
    rank = {name: i for i, name in enumerate(pii_recognizers.TYPE_PRIORITY)}
    rng = random.Random(7)
    for _ in range(300):
        candidates = []
        for _ in range(rng.randint(0, 40)):
            start = rng.randint(0, 200)
            pii_type = rng.choice(PII_TYPES)
            candidates.append(pii_recognizers.Span(pii_type, start, start + rng.randint(1, 30)))
        kept = pii_recognizers.resolve_overlaps(candidates)
        assert all(a.end <= b.start for a, b in itertools.pairwise(kept))
        for span in set(candidates) - set(kept):
            rivals = [k for k in kept if k.start < span.end and span.start < k.end]
            assert any(
                (rank[k.type], k.start - k.end) <= (rank[span.type], span.start - span.end)
                for k in rivals
            )


def test_failures_withhold_the_text() -> None:
    with pytest.raises(PiiDetectionError) as failure:
        detect(b"mail ada@example.com", KEY)  # type: ignore[arg-type]
    assert "ada" not in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__context__ is None


def test_luhn_invalid_numbers_are_never_cards() -> None:
    valid, invalid = [], []
    for _ in range(200):
        card = luhn_complete("4" + rand(string.digits, 14))
        wrong = [card[:-1] + d for d in "0123456789" if d != card[-1]]
        valid.append(card)
        invalid += wrong
    unbranded = luhn_complete("33" + rand(string.digits, 13))  # Luhn-valid, no issuer uses 33
    invalid.append(unbranded)
    for numbers, should_find in ((valid, True), (invalid, False)):
        for number in numbers:
            for written in (number, *(grouped(number, sep) for sep in " -.")):
                found = [d.type for d in detect(f"Card {written} was used.", KEY)]
                assert ("credit_card" in found) is should_find, found


def test_bad_checksum_ibans_are_never_ibans() -> None:
    for good in (GB_IBAN, DE_IBAN, FR_IBAN):
        wrong_check = [
            good[:2] + f"{c:02d}" + good[4:] for c in range(2, 99) if c != int(good[2:4])
        ]
        wrong_body = [good[:-1] + d for d in "0123456789" if good[:-1] + d != good]
        assert not any(iban_valid(bad) for bad in wrong_check + wrong_body)
        for good_written in (grouped(good), good.lower(), grouped(good.lower())):
            assert [d.type for d in detect(f"IBAN {good_written} ok", KEY)] == ["iban"]
        for bad in wrong_check + wrong_body:
            for written in (bad, grouped(bad), grouped(bad.lower())):
                found = detect(f"IBAN {written} ok", KEY)
                assert "iban" not in [d.type for d in found]


ADVERSARIAL_CHARS = 200_000


def adversarial_records() -> dict[str, str]:
    """Long runs without spaces (and spaced digits) that make backtracking patterns quadratic."""
    n = ADVERSARIAL_CHARS
    rng = random.Random(200)  # its own generator: the control corpus below stays as it was
    return {
        "a.a + @": "a.a" * (n // 3) + "@",
        "a-a + @x": "a-a" * (n // 3) + "@x",
        "a@ run": "a@" * (n // 2),
        "A run": "A" * n,
        "digit run": "1" * n,
        "base64 run": base64.b64encode(rng.randbytes(n * 3 // 4)).decode(),
        "hex run": f"{rng.getrandbits(4 * n):x}",
        "spaced digits": "call " + "1 " * (n // 2),
        "spaced +digits": "+1 " * (n // 3),
        "dotted digits": "1." * (n // 2),
        "IBAN-like run": "GB12" * (n // 4),
    }


def test_detection_time_is_linear_on_adversarial_records() -> None:
    """presidio's e-mail pattern alone took 64 s on 30k characters of "a.a"."""
    slowest = 0.0
    for name, text in adversarial_records().items():
        started = time.perf_counter()
        detect(text, KEY)
        seconds = time.perf_counter() - started
        print(f"\n{name:16s} {len(text):7d} chars {seconds:6.2f} s", end="")
        slowest = max(slowest, seconds)
    assert slowest < 5.0


def test_addresses_still_found_beside_adversarial_runs() -> None:
    text = "a.a" * 5_000 + "@ then " + "mail ada@example.com " + "-" * 70 + "b@example.org"
    found = [(d.type, text[d.start : d.end]) for d in detect(text, KEY)]
    assert found == [("email", "ada@example.com"), ("email", "b@example.org")]
    too_long_local = "x" * 65 + "@example.com"
    assert [d.type for d in detect(f"to {too_long_local} now", KEY)] == []


def only_hash(text: str) -> str:
    (detection,) = detect(text, KEY)
    return detection.hashed


@pytest.mark.parametrize(
    "one_way, other_way",
    [
        (f"card {grouped(VISA, ' ')} here", f"card {grouped(VISA, '-')} here"),
        (f"card {VISA} here", f"card {grouped(VISA, ' ')} here"),
        ("mail Ada.Lovelace@Example.com now", "mail ada.lovelace@example.COM now"),
        ("call +44 20 7946 0958 now", "call 020 7946 0958 now"),
        ("call (202) 555-0143 now", "call +1 202-555-0143 now"),
        (f"iban {grouped(GB_IBAN)} ok", f"iban {GB_IBAN} ok"),
        (f"iban {grouped(GB_IBAN)} ok", f"iban {GB_IBAN.lower()} ok"),
        (f"card {grouped(VISA, '.')} here", f"card {VISA} here"),
        ("host 2001:db8::1 up", "host 2001:0db8:0000:0000:0000:0000:0000:0001 up"),
        (f"key\n{PEM_KEY}\nend", f"key\n{PEM_KEY.replace(chr(10), chr(13) + chr(10))}\nend"),
    ],
)
def test_same_value_written_two_ways_hashes_the_same(one_way: str, other_way: str) -> None:
    assert only_hash(one_way) == only_hash(other_way)


def test_hashes_separate_values_types_and_keys() -> None:
    value = grouped(VISA, " ")
    assert keyed_hash(value, "credit_card", KEY) != keyed_hash(value, "credit_card", b"other")
    assert keyed_hash(value, "credit_card", KEY) != keyed_hash(value, "phone", KEY)
    assert keyed_hash(VISA, "credit_card", KEY) != keyed_hash(MASTERCARD, "credit_card", KEY)
    text, _ = build(EVERY_TYPE)
    hashes = [d.hashed for d in detect(text, KEY)]
    assert len(set(hashes)) == len(hashes)
    assert [d.hashed for d in detect(text, b"another key")] != hashes
    with pytest.raises(ValueError):
        keyed_hash(value, "credit_card", b"")


def test_masks_never_contain_the_raw_value() -> None:
    text, expected = build(EVERY_TYPE)
    found = detect(text, KEY)
    shown = masked_text(text, found)
    for pii_type, start, end in expected:
        value = text[start:end]
        assert value not in shown
        digits = "".join(c for c in value if c.isdigit())
        if pii_type in ("credit_card", "phone", "iban"):
            assert digits not in "".join(c for c in shown if c.isdigit() or c == " ")
    for detection in found:
        value = text[detection.start : detection.end]
        assert value not in detection.masked and value not in repr(detection)
    assert shown.startswith(
        "Write to A***@e***.uk or call +44 ** **** *958 (office) or (***) ***-*143"
    )
    assert "**** **** **** " + VISA[-4:] in shown and "[PRIVATE KEY]" in shown


def test_mask_examples() -> None:
    assert mask_value("john@example.com", "email") == "j***@e***.com"
    assert mask_value("a@b.com", "email") == "***@***.com"
    assert mask_value("ab@b.co.uk", "email") == "a***@***.uk"
    assert mask_value("4242 4242 4242 4242", "credit_card") == "**** **** **** 4242"
    assert mask_value("GB82 WEST 1234 5698 7654 32", "iban") == "GB** **** **** **** **** 32"
    assert mask_value("192.168.1.77", "ip_address") == "192.168.*.*"
    assert mask_value("2001:0db8::7334", "ip_address") == "2001:db8:*:*:*:*:*:*"
    assert mask_value("AKIAIOSFODNN7EXAMPLE", "api_key") == "AKIA************MPLE"
    assert mask_value("+44 7700 900789", "phone") == "+44 **** ***789"
    assert mask_value(PEM_KEY, "private_key") == "[PRIVATE KEY]"
    with pytest.raises(ValueError, match="unknown PII type"):
        mask_value("x", "passport")


@pytest.mark.parametrize(
    "address",
    ['"john doe"@example.com', '"a\\"b"@example.org', '"x@y"@mail.example.co.uk'],
)
def test_quoted_local_parts_are_addresses(address: str) -> None:
    text = f"write to {address}, today"
    found = [(d.type, text[d.start : d.end]) for d in detect(text, KEY)]
    assert found == [("email", address)]
    unknown_suffix = address.rpartition("@")[0] + "@host.notarealtld"
    assert [d.type for d in detect(f"write to {unknown_suffix}, today", KEY)] == []


def test_short_email_masks_keep_at_most_one_character_of_a_part() -> None:
    for local, label in itertools.product(
        ["a", "ab", "abc", "Ada.Lovelace"], ["b", "bc", "example"]
    ):
        masked = mask_value(f"{local}@{label}.com", "email")
        shown_local, _, shown_domain = masked.partition("@")
        for part, shown in ((local, shown_local), (label, shown_domain.split(".")[0])):
            visible = shown.replace("*", "")
            assert len(visible) <= 1 and (len(part) > 1 or visible == "")


def test_masked_text_refuses_overlaps() -> None:
    overlapping = [Detection("email", 0, 5, "*", "h"), Detection("email", 3, 8, "*", "h")]
    with pytest.raises(ValueError):
        masked_text("0123456789", overlapping)


def test_email_check_uses_the_bundled_suffix_list_with_sockets_blocked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    pii_recognizers.load_recognizers.cache_clear()  # build the suffix extractor under the block
    try:
        text = "from ada@example.org, bob@host.notarealtld and cy@mail.example.co.uk"
        found = [(d.type, text[d.start : d.end]) for d in detect(text, KEY)]
    finally:
        pii_recognizers.load_recognizers.cache_clear()
    assert found == [("email", "ada@example.org"), ("email", "cy@mail.example.co.uk")]


def test_module_imports_nothing_heavy_until_used() -> None:
    probe = (
        "import sys; import worker.engine.corpus.pii as pii; "
        "print(sorted(m for m in ('spacy', 'presidio_analyzer', 'detect_secrets', 'torch') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


# The look-alike control corpus: no PII, plenty of things shaped like it.


def isbn13() -> str:
    body = "978" + rand(string.digits, 9)
    check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body)) % 10) % 10
    digits = body + str(check)
    if RNG.random() < 0.5:
        return digits
    return f"{digits[:3]}-{digits[3]}-{digits[4:7]}-{digits[7:12]}-{digits[12]}"


def look_alike() -> str:
    """One sentence carrying one look-alike."""
    day = f"{RNG.randint(2000, 2025)}-{RNG.randint(1, 12):02d}-{RNG.randint(1, 28):02d}"
    clock = f"{RNG.randint(0, 23):02d}:{RNG.randint(0, 59):02d}:{RNG.randint(0, 59):02d}"
    epoch = RNG.randint(1_000_000_000, 1_800_000_000)
    choices = [
        f"request id {uuid.UUID(int=RNG.getrandbits(128), version=4)} failed",
        f"commit {RNG.getrandbits(160):040x} fixed it",
        f"short sha {RNG.getrandbits(28):07x} merged",
        f"sha256 {RNG.getrandbits(256):064x} matched",
        f"payload {base64.b64encode(RNG.randbytes(RNG.randint(8, 48))).decode()} arrived",
        f"ISBN {isbn13()} is in stock",
        f"order #{RNG.randint(100_000, 99_999_999)} shipped",
        f"order ORD-{RNG.randint(2015, 2025)}-{RNG.randint(0, 999_999):06d} shipped",
        f"version {RNG.randint(0, 30)}.{RNG.randint(0, 40)}.{RNG.randint(0, 200)} released",
        f"at {day}T{clock}Z the job ran",
        f"epoch {epoch} and millis {epoch * 1000 + RNG.randint(0, 999)} logged",
        f"on {day} at {clock}",
        f"on {RNG.randint(1, 28):02d}/{RNG.randint(1, 12):02d}/{RNG.randint(2000, 2025)}",
        f"price ${RNG.randint(1, 9_999):,}.{RNG.randint(0, 99):02d} or €{RNG.randint(1, 999)},99",
        f"SKU-{RNG.randint(1000, 9999)}-{RNG.choice(['S', 'M', 'L', 'XL'])} restocked",
        f"part {rand(string.ascii_uppercase, 3)}{RNG.randint(100, 99999)}-{rand(ALNUM, 4)} sold",
        f"ASIN B0{rand(string.ascii_uppercase + string.digits, 8)} listed",
        f"invoice INV{RNG.randint(10_000, 999_999)} paid",
    ]
    words = " ".join(RNG.choice(WORDS) for _ in range(RNG.randint(6, 14)))
    return f"{words.capitalize()} {RNG.choice(choices)}."


def control_record(target_chars: int = 1000) -> str:
    sentences = []
    while sum(len(s) + 1 for s in sentences) < target_chars:
        sentences.append(look_alike())
    return " ".join(sentences)


CONTROL_RECORDS = 10_000


def test_look_alike_control_corpus_has_at_most_one_finding_per_10k_records() -> None:
    records = [control_record() for _ in range(CONTROL_RECORDS)]
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    started = time.perf_counter()
    for record in records:
        for detection in detect(record, KEY):
            counts[detection.type] += 1
            window = record[max(0, detection.start - 30) : detection.end + 30]
            examples.setdefault(detection.type, []).append(window)
    seconds = time.perf_counter() - started
    mean_chars = sum(map(len, records)) / len(records)
    print(f"\n{len(records)} control records, {mean_chars:.0f} chars each, {seconds:.1f} s")
    print(f"throughput {len(records) / seconds:.0f} records/s")
    for pii_type in PII_TYPES:
        rate = counts[pii_type] / len(records) * 10_000
        print(f"{pii_type:16s} {counts[pii_type]:6d} findings, {rate:8.1f} per 10,000 records")
    outside = sum(n for t, n in counts.items() if t != "possible_secret")
    assert outside <= len(records) / 10_000, {t: examples[t][:3] for t in examples}
