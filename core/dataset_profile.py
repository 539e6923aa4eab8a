"""What one cheap, bounded pass over a dataset tells about it: enough for a check kind to say,
before any audit runs, whether it can work on these records at all.

Token counts need a tokenizer, which is only known once a model version matches a policy; the
bound below needs none, so a window no record can hold is refused up front, and the exact count
is left to the audit (`unfit` in its summary).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.inspection.datasets import DatasetError, Record, iter_records, parse_line

Reader = Callable[[Record], object]  # raises DatasetError on a record a worker cannot read

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
    its `member` labels, and the records each kind's reader refuses."""

    n_records: int = 0
    n_parsed: int = 0
    # Records read whose field is absent or null, for each field asked about; the first such
    # record's line.
    missing: dict[str, int] = field(default_factory=dict)
    first_missing_line: dict[str, int] = field(default_factory=dict)
    # Of the parsed records whose `text` is a string.
    text: TextLengths = field(default_factory=TextLengths)
    # Records labelled `member: true`, `false`, or not at all (a value that is none of these
    # is the LM kinds' reader's to refuse).
    members: dict[str, int] = field(default_factory=lambda: {"true": 0, "false": 0, "absent": 0})
    # Per kind: the records its `check_record` refused, and the first refusal ("line 7: ...").
    unreadable: dict[str, int] = field(default_factory=dict)
    first_unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def n_unparsed(self) -> int:
        return self.n_records - self.n_parsed

    @property
    def complete(self) -> bool:
        """Every record was parsed: counts are exact, not only of the first records."""
        return self.n_unparsed == 0

    def _read(self, record: Record, fields: Collection[str], readers: Mapping[str, Reader]) -> None:
        self.n_parsed += 1
        data = record.data
        for name in fields:
            if data.get(name) is None:
                self.missing[name] = self.missing.get(name, 0) + 1
                self.first_missing_line.setdefault(name, record.line_no)
        text = data.get("text")
        if isinstance(text, str):
            self.text.add(len(text.encode("utf-8")))
        member = data.get("member")
        if member is None:
            self.members["absent"] += 1
        elif isinstance(member, bool):
            self.members["true" if member else "false"] += 1
        for kind, read in readers.items():
            try:
                read(record)
            except DatasetError as exc:
                self.unreadable[kind] = self.unreadable.get(kind, 0) + 1
                self.first_unreadable.setdefault(kind, str(exc))


def profile_dataset(
    path: Path,
    n_records: int,
    fields: Collection[str],
    readers: Mapping[str, Reader] | None = None,
    max_parsed: int = MAX_PARSED_RECORDS,
) -> DatasetProfile:
    """Stream the dataset once: the first `max_parsed` records parsed (and read by each kind's
    reader, `readers` by kind name, as a worker would read them), the rest of a JSONL file
    only measured (a JSON string's UTF-8 is never longer than the line that spells it, escapes
    included), the rest of a CSV or `.npz` file (`n_records` in all) counted as unread.
    Memory: 8 bytes a parsed record."""
    profile, readers = DatasetProfile(), readers or {}
    if path.suffix in (".csv", ".npz"):
        for record in iter_records(path, 0, max_parsed):
            profile._read(record, fields, readers)
        profile.n_records = max(n_records, profile.n_parsed)
    else:
        with path.open("rb") as stream:
            for line_no, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                profile.n_records += 1
                if profile.n_parsed < max_parsed:
                    record = Record(profile.n_records - 1, line_no, parse_line(line, line_no))
                    profile._read(record, fields, readers)
                else:
                    profile.text.n_bounded += 1
                    profile.text.bounded_max = max(profile.text.bounded_max, len(line.strip()))
    profile.text.parsed = array("Q", sorted(profile.text.parsed))
    return profile
