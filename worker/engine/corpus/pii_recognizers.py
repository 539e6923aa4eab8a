"""Where PII and secrets sit in a text: spans found by presidio and detect-secrets, run offline.

presidio-analyzer's pattern recognizers (e-mail, phone, card, IBAN, IP) are called one by one,
never through its AnalyzerEngine, which would load a spaCy model. Importing any part of
`presidio_analyzer` still runs its package `__init__`, which imports spaCy, torch and
transformers unconditionally (no model is loaded): on the 2-core box about 4 s and 420 MB of
RSS in a fresh process, 1.2 s and 64 MB where torch and transformers are already loaded. So
everything is imported in `load_recognizers()`, once per process, and this module itself
imports nothing heavy. detect-secrets' provider plugins give `api_key` and `private_key`; its
entropy plugins' charsets, formula and limits give `possible_secret`. Nothing here touches the
network or the disk.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from typing import Any

# presidio's scores: a checksum or TLD check that passes sets 1.0 (card, IBAN, e-mail) and one
# that fails sets 0.0 (dropped); the IP patterns score 0.6 after `ipaddress` has parsed the
# match; phones 0.4 after libphonenumber has validated the number for a region; the bare "::"
# scores 0.1. 0.4 keeps every validated finding and drops the unvalidated "::".
MIN_PRESIDIO_SCORE = 0.4

# Spans that overlap are settled by this order: the more specific and the more harmful wins
# (a PEM block holds base64 that also looks like a possible secret; a card number holds digits
# that libphonenumber may also accept).
TYPE_PRIORITY = (
    "private_key",
    "api_key",
    "email",
    "iban",
    "credit_card",
    "ip_address",
    "phone",
    "possible_secret",
)

# detect-secrets' provider plugins that need no keyword next to the value. Left out: keyword
# and basic-auth detectors (values found by context words, not by shape), the IBM/Cloudant/
# SoftLayer ones (keyword-anchored), IPPublicDetector (ip_address covers it) and
# ArtifactoryDetector, whose "AP[0-9A-F]" + 8 alphanumerics rule fires on product codes and
# all-caps words and returns the surrounding whitespace with the value.
PROVIDER_PLUGINS = (
    ("aws", "AWSKeyDetector"),
    ("azure_storage_key", "AzureStorageKeyDetector"),
    ("discord", "DiscordBotTokenDetector"),
    ("github_token", "GitHubTokenDetector"),
    ("gitlab_token", "GitLabTokenDetector"),
    ("jwt", "JwtTokenDetector"),
    ("mailchimp", "MailchimpDetector"),
    ("npm", "NpmDetector"),
    ("openai", "OpenAIDetector"),
    ("pypi_token", "PypiTokenDetector"),
    ("sendgrid", "SendGridDetector"),
    ("slack", "SlackDetector"),
    ("square_oauth", "SquareOAuthDetector"),
    ("stripe", "StripeDetector"),
    ("telegram_token", "TelegramBotTokenDetector"),
    ("twilio", "TwilioKeyDetector"),
)

# Secrets shorter than this are rare and short high-entropy runs are mostly words and numbers.
MIN_SECRET_LENGTH = 20

# RFC 5321 limits an address to 254 characters and its local part to 64. presidio's e-mail
# pattern takes time quadratic in a run of local-part characters ("a.a.a...", 64 s for 30k
# characters), so it runs only from the one start finditer would try for each "@", over at
# most an address's length: linear in the text.
MAX_EMAIL_CHARS = 254
MAX_EMAIL_LOCAL_CHARS = 64
_EMAIL_LOCAL_CHARS = r"[!#$%&'*+\-/=?^_`{|}~\w.]"
_EMAIL_AT = re.compile(rf"(?<={_EMAIL_LOCAL_CHARS[:-1]}\"])@(?=\w)")
# RFC 5322 quoted local part ("john doe"@example.com), which presidio's pattern does not take:
# any printable characters but an unescaped quote, at most 62 between the quotes.
_QUOTED_LOCAL = re.compile(r'"(?:[^"\\\r\n]|\\.){1,62}"\Z')
_EMAIL_LOCAL_RUN = re.compile(rf"{_EMAIL_LOCAL_CHARS}+\Z")
_WORD_START = re.compile(r"\b(?=\w)")

# A PEM block ends at its footer; a 4096-bit RSA key is ~3.3 KB, an armoured PGP key a few KB.
MAX_PRIVATE_KEY_CHARS = 65_536
_PEM_FOOTER = re.compile(r"-----END [A-Z0-9 ]*-----")
_PUTTY_MAC_LINE = re.compile(r"Private-MAC: *[0-9a-fA-F]*")

# Provider keys run on past what a plugin captured (a JWT's signature after its lazy match,
# longer token generations); the span takes the whole token so no key material stays visible.
_KEY_TAIL = re.compile(r"[A-Za-z0-9_\-]*")
_JWT_TAIL = re.compile(r"[A-Za-z0-9_\-.+/=]*")

# Only stretches with five or more digits, each at most four separators from the next, can hold
# a number libphonenumber calls valid in presidio's regions (the shortest: a German pager, 4
# digits after the trunk 0). Colons, commas and semicolons are no phone punctuation, so times
# and amounts split there. The matcher runs only on these stretches, with context; an ISO date
# is never grouped as a phone number, so it is not offered either.
_DIGIT_STRETCH = re.compile(r"\d(?:[^\w:,;]{0,4}\d)*")
_ISO_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")
_MIN_PHONE_DIGITS = 5
# E.164 allows 15 digits; with an international ("00", "011") or trunk prefix at most 17 are
# written. A longer stretch holds several numbers or none, and is never offered whole. No
# real layout spreads a number over more than seven groups ("+49 (0) 30 1234 5678" has five).
MAX_PHONE_DIGITS = 17
MAX_PHONE_GROUPS = 7
# A stretch's groups are split where its separators hold whitespace: "(415) 555-0132" is the
# groups "415" and "555-0132".
_PHONE_GROUP = re.compile(r"\d(?:[^\w\s:,;]{0,4}\d)*")
# Shorter candidates cost ~1 ms each (eight regions); a record may try this many, plus one per
# this many characters, so that a megabyte of spaced digits costs about a second.
PHONE_RETRIES_BASE = 32
PHONE_RETRY_CHARS = 1_000
_PHONE_CONTEXT_CHARS = 24

# libphonenumber's STRICT_GROUPING leniency: a number written in groups must be grouped as its
# region writes it, so "ORD-2017-717539" is no longer read as a US number; every real layout
# tried (E.164, national, (202) 555-0143, 01 23 45 67 89, +55 11 91234-5678) still is.
PHONE_LENIENCY = 2
# A bare run of digits is as often an epoch, an id or an order number as a phone, and a
# national number of fewer than nine digits (German landlines: "0281 4890") as often a version
# ("0.30.147") or a piece of a UUID: such weak matches count only after one of presidio's phone
# context words (plus "tel" and "fax") within five words, the window presidio's own context
# enhancer reads. Numbers written with "+" and grouped numbers of nine digits or more need none.
STRONG_PHONE_DIGITS = 9
PHONE_CONTEXT_WORDS_EXTRA = ("tel", "fax")
PHONE_CONTEXT_WORDS_BEFORE = 5
_WORD = re.compile(r"[^\W\d_]+")

_DOT_AS_SPACE = str.maketrans(".", " ")

# Card brands by ISO/IEC 7812 issuer prefix and length: Luhn alone accepts one random number in
# ten, so a number must also carry a real brand's prefix at that brand's length.
_CARD_BRANDS = (
    (re.compile(r"4"), (13, 16, 19)),  # Visa
    (re.compile(r"5[1-5]"), (16,)),  # Mastercard
    (re.compile(r"3[47]"), (15,)),  # American Express
    (re.compile(r"6011|64[4-9]|65"), (16, 17, 18, 19)),  # Discover
    (re.compile(r"35(?:2[89]|[3-8]\d)"), (16, 17, 18, 19)),  # JCB
    (re.compile(r"3(?:0[0-5]|[689])"), (14, 15, 16, 17, 18, 19)),  # Diners Club
    (re.compile(r"62"), (16, 17, 18, 19)),  # UnionPay
    (re.compile(r"50[0-9]{2}|5[6-8]|6[0-9]"), tuple(range(12, 20))),  # Maestro
)


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int


@dataclass(frozen=True)
class Recognizers:
    """Everything a pass needs, built once per process by `load_recognizers`."""

    presidio: tuple[tuple[str, Any], ...]  # (PII type, recognizer) for the regex recognizers
    email: Any
    email_pattern: Any  # presidio's e-mail pattern, compiled as presidio compiles it
    phone: Any
    providers: tuple[Any, ...]
    private_key: Any
    entropy: tuple[Any, ...]  # (Base64HighEntropyString, HexHighEntropyString)
    entropy_tokens: tuple[re.Pattern[str], ...]  # one token pattern per entropy plugin


@functools.cache
def load_recognizers() -> Recognizers:
    """Import and build the recognizers once: the imports cost seconds, the objects nothing."""
    import importlib

    import regex
    import tldextract
    from detect_secrets.plugins.high_entropy_strings import (
        Base64HighEntropyString,
        HexHighEntropyString,
    )
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    # The bundled public-suffix snapshot, no cache directory: the default extractor that
    # EmailRecognizer calls downloads the list on first use and writes it under ~/.cache.
    offline_suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())

    class AnyCaseIbanRecognizer(IbanRecognizer):
        """IBANs written in lower case too: the checksum reads the letters upper-cased."""

        def __init__(self) -> None:
            super().__init__(regex_flags=regex.DOTALL | regex.MULTILINE | regex.IGNORECASE)

        def validate_result(self, pattern_text: str) -> bool | None:
            return super().validate_result(pattern_text.upper())

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text).fqdn != ""

    providers = tuple(
        getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)()
        for module, name in PROVIDER_PLUGINS
    )
    entropy = (Base64HighEntropyString(), HexHighEntropyString())
    entropy_tokens = tuple(
        re.compile(f"[{re.escape(plugin.charset)}]{{{MIN_SECRET_LENGTH},}}") for plugin in entropy
    )
    email = OfflineEmailRecognizer()
    (email_pattern,) = email.patterns
    return Recognizers(
        email=email,
        email_pattern=regex.compile(email_pattern.regex, flags=email.global_regex_flags),
        presidio=(
            ("credit_card", CreditCardRecognizer()),
            ("iban", AnyCaseIbanRecognizer()),
            ("ip_address", IpRecognizer()),
        ),
        phone=PhoneRecognizer(leniency=PHONE_LENIENCY),
        providers=providers,
        private_key=PrivateKeyDetector(),
        entropy=entropy,
        entropy_tokens=entropy_tokens,
    )


def find_spans(text: str) -> list[Span]:
    """Every finding in `text`, non-overlapping and sorted by start."""
    recognizers = load_recognizers()
    stronger_than_phone = [
        *_email_spans(text, recognizers),
        *_presidio_spans(text, recognizers),
        *_provider_key_spans(text, recognizers.providers),
        *_private_key_spans(text, recognizers.private_key),
    ]
    candidates = [
        *stronger_than_phone,
        *_phone_spans(text, recognizers.phone, stronger_than_phone),
        *_possible_secret_spans(text, recognizers),
    ]
    return resolve_overlaps(candidates)


def resolve_overlaps(candidates: list[Span]) -> list[Span]:
    """Keep the highest-priority (then longest) span wherever candidates overlap."""
    rank = {name: i for i, name in enumerate(TYPE_PRIORITY)}
    ordered = sorted(candidates, key=lambda s: (rank[s.type], s.start - s.end, s.start))
    kept: list[Span] = []  # sorted by start, pairwise disjoint
    for span in ordered:
        i = bisect.bisect_left(kept, span.start, key=lambda k: k.start)
        clear_before = i == 0 or kept[i - 1].end <= span.start
        clear_after = i == len(kept) or span.end <= kept[i].start
        if clear_before and clear_after:
            kept.insert(i, span)
    return kept


def _presidio_spans(text: str, recognizers: Recognizers) -> list[Span]:
    spans = []
    for pii_type, recognizer in recognizers.presidio:
        # presidio's card pattern separates groups by "-" or " " only; a dot is read as a space
        # (same length, same offsets), so "4539.1488.0343.6467" is checked too.
        seen = text.translate(_DOT_AS_SPACE) if pii_type == "credit_card" else text
        for result in recognizer.analyze(seen, recognizer.supported_entities):
            if result.score < MIN_PRESIDIO_SCORE:
                continue
            if pii_type == "credit_card" and not _is_card_brand(text[result.start : result.end]):
                continue
            spans.append(Span(pii_type, result.start, result.end))
    return spans


def _email_spans(text: str, recognizers: Recognizers) -> list[Span]:
    """presidio's e-mail matches, found as its finditer would, at a cost linear in the text.

    For each "@" the only start finditer could match from is the first word start of the run of
    local-part characters before it (any later start in the run matches the same "@" and
    domain, or nothing does). Only the last 64 characters of a run are looked at, so a run that
    goes on further yields its tail from a word start, or nothing. presidio then judges the one
    candidate (pattern, suffix check) on its own. A quoted local part is read here and its
    domain judged by presidio.
    """
    spans = []
    searched_to = 0  # finditer goes on after its last match
    for at in _EMAIL_AT.finditer(text):
        position = at.start()
        if position < searched_to:
            continue
        lo = max(searched_to, position - MAX_EMAIL_LOCAL_CHARS)
        if text[position - 1] == '"':
            span = _quoted_email(text, lo, position, recognizers)
        else:
            span = _plain_email(text, lo, position, recognizers)
        if span is not None:
            spans.append(span)
            searched_to = span.end
    return spans


def _plain_email(text: str, lo: int, position: int, recognizers: Recognizers) -> Span | None:
    run = _EMAIL_LOCAL_RUN.search(text, lo, position)
    start = run and _WORD_START.search(text, run.start(), position)
    if start is None:
        return None
    hi = min(len(text), start.start() + MAX_EMAIL_CHARS + 1)
    match = recognizers.email_pattern.match(text, start.start(), hi)
    if match is None or (match.end() == hi and hi < len(text)):
        return None  # no address, or one longer than an address may be
    if not _presidio_accepts_email(text[match.start() : match.end()], recognizers.email):
        return None
    return Span("email", match.start(), match.end())


def _quoted_email(text: str, lo: int, position: int, recognizers: Recognizers) -> Span | None:
    local = _QUOTED_LOCAL.search(text, lo, position)
    if local is None:
        return None
    hi = min(len(text), local.start() + MAX_EMAIL_CHARS + 1)
    # presidio judges the domain behind a one-letter stand-in for the quoted part.
    stand_in = "x" + text[position:hi]
    match = recognizers.email_pattern.match(stand_in)
    if match is None or (match.end() == len(stand_in) and hi < len(text)):
        return None
    if not _presidio_accepts_email(match.group(), recognizers.email):
        return None
    return Span("email", local.start(), position + match.end() - 1)


def _presidio_accepts_email(candidate: str, email: Any) -> bool:
    return any(
        result.score >= MIN_PRESIDIO_SCORE and result.end - result.start == len(candidate)
        for result in email.analyze(candidate, email.supported_entities)
    )


def _is_card_brand(number: str) -> bool:
    """True when the digits carry a card brand's issuer prefix at one of its lengths."""
    digits = "".join(c for c in number if c.isdigit())
    return any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_BRANDS)


def _phone_spans(text: str, phone_recognizer: Any, stronger: list[Span]) -> list[Span]:
    """Phones, looked for only where no stronger finding (card, IBAN, IP, key) already is.

    libphonenumber reads a stretch of digit groups as one candidate number: a phone followed by
    any further number ("+1 415 555 0132 24 hours") fails as a whole and is not retried, so the
    stretches it leaves unexplained are offered again as shorter candidates.
    """
    context_words = (*phone_recognizer.context, *PHONE_CONTEXT_WORDS_EXTRA)
    taken = _merged_intervals(stronger)
    stretches = _phone_stretches(text, context_words, taken)
    whole = [s for s in stretches if _digit_count(text, *s) <= MAX_PHONE_DIGITS]
    spans = []
    for lo, hi in _phone_windows(whole, len(text)):
        spans += _matched_phones(text, lo, hi, phone_recognizer, context_words)
    blocked = _merged_intervals([*stronger, *spans])
    retries_left = PHONE_RETRIES_BASE + len(text) // PHONE_RETRY_CHARS
    for stretch in stretches:
        tried_whole = _digit_count(text, *stretch) <= MAX_PHONE_DIGITS
        for groups in _free_group_runs(text, stretch, blocked):
            found, retries_left = _shorter_phones(
                text,
                groups,
                tried_whole and groups[0][0] == stretch[0] and groups[-1][1] == stretch[1],
                phone_recognizer,
                context_words,
                retries_left,
            )
            spans += found
    return spans


def _matched_phones(
    text: str, lo: int, hi: int, phone_recognizer: Any, context_words: tuple[str, ...]
) -> list[Span]:
    """What libphonenumber accepts in text[lo:hi], less the weak numbers without a context word."""
    spans = []
    for result in phone_recognizer.analyze(text[lo:hi], phone_recognizer.supported_entities):
        start, end = lo + result.start, lo + result.end
        if result.score < MIN_PRESIDIO_SCORE:
            continue
        if _is_weak_phone(text[start:end]) and not _has_context(text, start, context_words):
            continue
        spans.append(Span("phone", start, end))
    return spans


def _free_group_runs(
    text: str, stretch: tuple[int, int], blocked: list[tuple[int, int]]
) -> list[list[tuple[int, int]]]:
    """The stretch's whitespace-separated digit groups, in runs that no finding covers any of."""
    runs: list[list[tuple[int, int]]] = [[]]
    for group in _PHONE_GROUP.finditer(text, *stretch):
        if _overlaps(blocked, group.start(), group.end()):
            runs.append([])
        else:
            runs[-1].append(group.span())
    return [
        run
        for run in runs
        if run and _digit_count(text, run[0][0], run[-1][1]) >= _MIN_PHONE_DIGITS
    ]


def _shorter_phones(
    text: str,
    groups: list[tuple[int, int]],
    tried_whole: bool,
    phone_recognizer: Any,
    context_words: tuple[str, ...],
    retries_left: int,
) -> tuple[list[Span], int]:
    """Phones among runs of consecutive groups, longest first, left to right.

    A number starts at the first group, after a number just found, or at a group led by
    punctuation ("+", "(", "/", " - "): never inside a plain run of spaced digits, where
    dropping leading groups would read any table of numbers as phones. Each try costs
    libphonenumber ~1 ms, so a record gets a budget of tries proportional to its length.
    """
    spans: list[Span] = []
    i = 0
    may_start = True
    while i < len(groups) and retries_left > 0:
        led = i > 0 and text[groups[i - 1][1] : groups[i][0]].strip() != ""
        found: list[Span] = []
        if may_start or led:
            skip_last = tried_whole and i == 0  # the whole run failed already
            found, retries_left = _longest_phone_at(
                text, groups, i, skip_last, phone_recognizer, context_words, retries_left
            )
        may_start = bool(found)
        if found:  # the matcher may accept fewer groups than offered: go on after them
            spans += found
            reached = max(span.end for span in found)
            while i < len(groups) and groups[i][0] < reached:
                i += 1
        else:
            i += 1
    return spans, retries_left


def _longest_phone_at(
    text: str,
    groups: list[tuple[int, int]],
    first: int,
    skip_last: bool,
    phone_recognizer: Any,
    context_words: tuple[str, ...],
    retries_left: int,
) -> tuple[list[Span], int]:
    """The phones found in the longest candidate from groups[first] on, and the tries left."""
    last_group = min(len(groups), first + MAX_PHONE_GROUPS) - 1
    for last in range(last_group, first - 1, -1):
        digits = _digit_count(text, groups[first][0], groups[last][1])
        if digits < _MIN_PHONE_DIGITS or retries_left == 0:
            break
        if digits > MAX_PHONE_DIGITS or (skip_last and last == len(groups) - 1):
            continue
        retries_left -= 1
        # The window ends where the next group starts, so the matcher sees the separator after
        # the candidate (a letter or "%" there rules a number out) and no digit beyond it.
        after = (
            groups[last + 1][0] if last + 1 < len(groups) else _separator_end(text, groups[last][1])
        )
        found = _matched_phones(
            text, _phone_lead_start(text, groups[first][0]), after, phone_recognizer, context_words
        )
        if found:
            return found, retries_left
    return [], retries_left


def _phone_lead_start(text: str, start: int) -> int:
    """Back over the non-digits before a candidate ("Tel: +", "phone ("), never over a digit."""
    lo = start
    while lo > 0 and start - lo < _PHONE_CONTEXT_CHARS and not text[lo - 1].isdecimal():
        lo -= 1
    return lo


def _separator_end(text: str, end: int) -> int:
    """Past the punctuation after a candidate, up to the next digit: what the matcher would see."""
    hi = end
    while hi < len(text) and hi - end < _PHONE_CONTEXT_CHARS and not text[hi].isdecimal():
        hi += 1
    return hi


def _digit_count(text: str, start: int, end: int) -> int:
    return sum(c.isdecimal() for c in text[start:end])


def _is_weak_phone(value: str) -> bool:
    if value.startswith("+"):
        return False
    return value.isdecimal() or sum(c.isdecimal() for c in value) < STRONG_PHONE_DIGITS


def _has_context(text: str, start: int, context_words: tuple[str, ...]) -> bool:
    before = text[max(0, start - 80) : start].lower()
    words = _WORD.findall(before)[-PHONE_CONTEXT_WORDS_BEFORE:]
    return any(word.startswith(context_words) for word in words)


def _merged_intervals(spans: list[Span]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], span.end))
        else:
            merged.append((span.start, span.end))
    return merged


def _overlaps(intervals: list[tuple[int, int]], start: int, end: int) -> bool:
    i = bisect.bisect_left(intervals, end, key=lambda interval: interval[0]) - 1
    return i >= 0 and intervals[i][1] > start


def _inside(intervals: list[tuple[int, int]], start: int, end: int) -> bool:
    i = bisect.bisect_right(intervals, start, key=lambda interval: interval[0]) - 1
    return i >= 0 and intervals[i][1] >= end


def _phone_stretches(
    text: str, context_words: tuple[str, ...], taken: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The digit stretches that could hold a phone number no stronger finding already covers.

    libphonenumber does the judging; this only spares it stretches it would reject or whose
    only possible match `_phone_spans` would drop, since it costs ~0.1 ms per candidate and
    region.
    """
    stretches = []
    for match in _DIGIT_STRETCH.finditer(text):
        if _inside(taken, match.start(), match.end()):
            continue  # a phone here would lose to the finding that covers it
        if _could_hold_phone(text, match, context_words):
            stretches.append(match.span())
    return stretches


def _phone_windows(stretches: list[tuple[int, int]], text_length: int) -> list[tuple[int, int]]:
    """Merged windows, with context, around the stretches."""
    windows: list[tuple[int, int]] = []
    for start, end in stretches:
        lo = max(0, start - _PHONE_CONTEXT_CHARS)
        hi = min(text_length, end + _PHONE_CONTEXT_CHARS)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], hi)
        else:
            windows.append((lo, hi))
    return windows


def _could_hold_phone(text: str, stretch: re.Match[str], context_words: tuple[str, ...]) -> bool:
    digits = stretch.group()
    digit_count = sum(c.isdecimal() for c in digits)
    if digit_count < _MIN_PHONE_DIGITS or _ISO_DATE.fullmatch(digits):
        return False
    before = text[stretch.start() - 1] if stretch.start() > 0 else " "
    after = text[stretch.end()] if stretch.end() < len(text) else " "
    if digits.isdecimal() and (_is_ascii_letter(before) or _is_ascii_letter(after)):
        return False  # at VALID leniency and above the matcher rejects digits glued to letters
    if before == "+" or (not digits.isdecimal() and digit_count >= STRONG_PHONE_DIGITS):
        return True
    return _has_context(text, stretch.start(), context_words)  # only a weak match could come


def _is_ascii_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _provider_key_spans(text: str, providers: tuple[Any, ...]) -> list[Span]:
    """Provider keys: each plugin's values, then every place each value occurs in `text`.

    The plugins' patterns never cross a newline, so one call on the whole text finds what a
    call per line would.
    """
    values = {value for plugin in providers for value in plugin.analyze_string(text) if value}
    spans = []
    for value in values:
        tail = _JWT_TAIL if value.startswith("eyJ") else _KEY_TAIL
        for match in re.finditer(re.escape(value), text):
            end = tail.match(text, match.end()).end()
            spans.append(Span("api_key", match.start(), end))
    return spans


def _private_key_spans(text: str, detector: Any) -> list[Span]:
    """Whole key blocks, from the header line to the footer, across lines."""
    spans = []
    for marker in set(detector.analyze_string(text)):
        for match in re.finditer(re.escape(marker), text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            dashes = text.rfind("-----", line_start, match.start())
            start = dashes if dashes >= 0 else line_start
            spans.append(Span("private_key", start, _private_key_end(text, match.end())))
    return spans


def _private_key_end(text: str, after: int) -> int:
    limit = min(len(text), after + MAX_PRIVATE_KEY_CHARS)
    footer = _PEM_FOOTER.search(text, after, limit) or _PUTTY_MAC_LINE.search(text, after, limit)
    if footer:
        return footer.end()
    # No footer (a truncated key): the block runs to the first blank line.
    blank = text.find("\n\n", after, limit)
    return blank if blank >= 0 else limit


def _possible_secret_spans(text: str, recognizers: Recognizers) -> list[Span]:
    """Unquoted runs of each entropy plugin's charset above that plugin's entropy limit.

    The plugins themselves look only inside quotes (source code); corpus text is prose, so the
    runs are found here and judged by the plugin's own entropy and limit.
    """
    spans = []
    for plugin, tokens in zip(recognizers.entropy, recognizers.entropy_tokens, strict=True):
        for match in tokens.finditer(text):
            if plugin.calculate_shannon_entropy(match.group()) > plugin.entropy_limit:
                spans.append(Span("possible_secret", match.start(), match.end()))
    return spans
