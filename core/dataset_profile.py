"""What one cheap, bounded pass over a dataset tells about it: enough for a check kind to say,
before any audit runs, whether it can work on these records at all.

Token counts need a tokenizer, which is only known once a model version matches a policy; the
bound below needs none, so a window no record can hold is refused up front, and the exact count
is left to the audit (`unfit` in its summary).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from core.inspection.datasets import iter_records, parse_line

# Records parsed in full; past them a JSONL line's length still bounds its text (below), so a
# dataset of millions of records costs one read of its bytes and this many JSON parses.
MAX_PARSED_RECORDS = 100_000
# Tokens a tokenizer may add in front of a text besides special tokens: SentencePiece's
# dummy-prefix piece `▁` (Llama 2 turns "1" into `▁`, `1`).
DUMMY_PREFIX_TOKENS = 1


def max_tokens(n_bytes: int) -> int:
    """The most tokens a text of `n_bytes` UTF-8 bytes can become, special tokens aside.

    Every token of a byte-level BPE (GPT-2, Pythia, Llama 3, Qwen), of WordPiece and of a
    SentencePiece model with byte fallback stands for at least one byte of the text, so a text
    of B bytes has at most B tokens; SentencePiece may add one dummy-prefix piece in front,
    hence B + 1. The one case outside it is a tokenizer whose normalizer rewrites the text
    into a longer one (NFKC spelling a ligature out) before it splits it; none of the causal
    LMs in use does.

    >>> max_tokens(61)
    62
    """
    return n_bytes + DUMMY_PREFIX_TOKENS


@dataclass
class TextLengths:
    """UTF-8 byte lengths of the `text` fields read, and a bound on those not read."""

    parsed: array = field(default_factory=lambda: array("Q"))  # sorted once the pass ends
    # Records not parsed whose text is bounded by their line's length (JSONL), and the
    # longest such line.
    n_bounded: int = 0
    bounded_max: int = 0

    def add(self, n_bytes: int) -> None:
        self.parsed.append(n_bytes)

    @property
    def longest(self) -> int:
        """Bytes of the longest text there may be (an upper bound past the parsed records)."""
        return max(self.parsed[-1] if self.parsed else 0, self.bounded_max)

    def shorter_than(self, n_bytes: int) -> int:
        """How many records surely hold fewer than `n_bytes` bytes of text."""
        surely = bisect_left(self.parsed, n_bytes)
        return surely + (self.n_bounded if self.bounded_max < n_bytes else 0)

    def fewer_tokens_than(self, n_tokens: int) -> int:
        """How many records hold fewer than `n_tokens` tokens under any tokenizer, by
        `max_tokens`: those of fewer than n_tokens - 1 bytes."""
        return self.shorter_than(n_tokens - DUMMY_PREFIX_TOKENS)


@dataclass
class DatasetProfile:
    """One pass over a dataset's records: which fields each holds, how long its texts are,
    and its `member` labels."""

    n_records: int = 0
    n_parsed: int = 0
    # Records read whose field is absent or null, for each field asked about; the first such
    # record's line.
    missing: dict[str, int] = field(default_factory=dict)
    first_missing_line: dict[str, int] = field(default_factory=dict)
    # Of the parsed records whose `text` is a string.
    text: TextLengths = field(default_factory=TextLengths)
    # `member` as the LM kinds read it: true, false, absent (or null), or anything else.
    members: dict[str, int] = field(
        default_factory=lambda: {"true": 0, "false": 0, "absent": 0, "invalid": 0}
    )
    first_invalid_member_line: int | None = None

    @property
    def n_unparsed(self) -> int:
        return self.n_records - self.n_parsed

    @property
    def complete(self) -> bool:
        """Every record was parsed: counts are exact, not only of the first records."""
        return self.n_unparsed == 0

    def _read(self, data: dict, line_no: int, fields: Collection[str]) -> None:
        self.n_parsed += 1
        for name in fields:
            if data.get(name) is None:
                self.missing[name] = self.missing.get(name, 0) + 1
                self.first_missing_line.setdefault(name, line_no)
        text = data.get("text")
        if isinstance(text, str):
            self.text.add(len(text.encode("utf-8")))
        member = data.get("member")
        if member is None:
            label = "absent"
        elif isinstance(member, bool):
            label = "true" if member else "false"
        else:
            label = "invalid"
        self.members[label] += 1
        if label == "invalid" and self.first_invalid_member_line is None:
            self.first_invalid_member_line = line_no


def profile_dataset(
    path: Path, n_records: int, fields: Collection[str], max_parsed: int = MAX_PARSED_RECORDS
) -> DatasetProfile:
    """Stream the dataset once: the first `max_parsed` records parsed, the rest of a JSONL file
    only measured (a JSON string's UTF-8 is never longer than the line that spells it, escapes
    included), the rest of a CSV or `.npz` file (`n_records` in all) counted as unread.
    Memory: 8 bytes a parsed record."""
    profile = DatasetProfile()
    if path.suffix in (".csv", ".npz"):
        for record in iter_records(path, 0, max_parsed):
            profile._read(record.data, record.line_no, fields)
        profile.n_records = max(n_records, profile.n_parsed)
    else:
        with path.open("rb") as stream:
            for line_no, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                profile.n_records += 1
                if profile.n_parsed < max_parsed:
                    profile._read(parse_line(line, line_no), line_no, fields)
                else:
                    profile.text.n_bounded += 1
                    profile.text.bounded_max = max(profile.text.bounded_max, len(line.strip()))
    profile.text.parsed = array("Q", sorted(profile.text.parsed))
    return profile
