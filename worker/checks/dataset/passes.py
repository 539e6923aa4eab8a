"""The dataset family's pass over one shard: no model is opened; each kind reads its slice of
records and, through `Corpus`, the whole corpus (artefacts built once per corpus per host).

Where the whole corpus comes from: the dataset file the runner opened for the shard
(`ShardInput.dataset`, pinned under the audit's grants), read again from its first record
with `iter_records`; a local audit of in-memory texts has no file, and its records are the
whole corpus. Artefacts live under the settings' data dir (`indexes/`), keyed by the dataset's
sha256 (the audit's, or the bytes' own for a local audit)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.check_kinds import NO_MODEL, resolve
from core.inspection.datasets import Record, check_text_length, iter_records
from worker.checks.dataset.artefacts import built
from worker.checks.dataset.display import Display, pii_key
from worker.checks.shard_pass import ShardInput, ShardPass

# Per kind, what builds (or opens) its corpus artefacts before the first batch, named as
# "module:function" taking (corpus, params): the shard's info then names every artefact and the
# tokenizer, and a build that fails fails the shard before any row is written.
PREPARE = {
    "duplication": "worker.checks.dataset.duplication:prepare_duplication",
    "near_duplicates": "worker.checks.dataset.near:prepare_near",
    "pii": "worker.checks.dataset.pii_inventory:prepare_pii",
    "contamination": "worker.checks.dataset.contamination:prepare_contamination",
}


@dataclass
class Corpus:
    """What a dataset kind may read beyond its shard."""

    sha256: str  # what the bytes hashed to when the audit was submitted
    data_dir: Path
    path: Path | None  # the dataset file; None for a local audit's records held in memory
    n_records: int
    model_uri: str | None  # the audited model, whose tokenizer span counts use; None: SmolLM2
    access: Any
    held: list[Record] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the shard records about the pass
    _tokenizer: tuple[str, Any] | None = None

    def records(self) -> Iterator[Record]:
        """Every record of the corpus, in order, each within the service's record size limit
        (a file named by path was only sampled at submit)."""
        if self.path is None:
            yield from self.held or []
            return
        limit = self.access.settings.max_record_chars
        for record in iter_records(self.path):
            check_text_length(record.data, record.line_no, limit)
            yield record

    def artefact(self, name: str, params_key: str, build: Callable[[Path], None]) -> Path:
        """A corpus-wide artefact's directory, built here first if this host has none."""
        path = built(self.data_dir, self.sha256, name, params_key, build)
        self.info.setdefault("artefacts", {})[name] = f"{path.parent.name[:12]}/{path.name}"
        return path

    def build_with(self, write: Callable[[Iterator[Record], Path], None]) -> Callable[[Path], None]:
        """A build function that gives `write` every record of the corpus, read from a copy of
        the file whose bytes hash to the submitted sha256. Artefacts are shared by every audit
        of the same bytes, across teams: a `path:` file rewritten after submit must never
        become the index another audit of the original bytes reads."""

        def build(directory: Path) -> None:
            if self.path is None:
                write(self.records(), directory)
                return
            original = self.path
            copy = directory / f".source{original.suffix}"
            _copy_verified(original, copy, self.sha256)
            self.path = copy
            try:
                write(self.records(), directory)
            finally:
                self.path = original
                copy.unlink(missing_ok=True)

        return build

    def named(self, uri: str, sha256: str | None = None) -> Corpus:
        """Another dataset a kind's params name (contamination's training corpus), opened
        under the audit's grants like the audited one, with the same tokenizer choice; read
        only if its bytes hash to `sha256` (what submit saw), when given."""
        path = self.access.open_dataset(uri)
        return Corpus(
            sha256=sha256 or _file_sha256(path),
            data_dir=self.data_dir,
            path=path,
            n_records=-1,  # unknown until read; nothing reads it for a named corpus
            model_uri=self.model_uri,
            access=self.access,
            info=self.info,
            _tokenizer=self._tokenizer,
        )

    def display(self) -> Display:
        """How this deployment masks and shortens texts it stores (`display.py`)."""
        team = getattr(getattr(self.access, "audit", None), "team_id", None)
        return Display(pii_key(self.access.settings.callback_signing_secret(), team))

    def tokenizer(self) -> tuple[str, Any]:
        """(name, fast tokenizer) for counting spans in tokens, resolved once per shard; its
        name goes into the shard's info and from there the provenance."""
        if self._tokenizer is None:
            from worker.checks.dataset.tokenizer import corpus_tokenizer

            self._tokenizer = corpus_tokenizer(self.access, self.model_uri)
            self.info["tokenizer"] = self._tokenizer[0]
        return self._tokenizer


def _records_sha256(records: Sequence[Record]) -> str:
    """The content key of records held in memory (a local audit of texts)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.data, sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def corpus_of(shard: ShardInput) -> Corpus:
    """The corpus behind a shard: the audit's dataset (service) or the local records."""
    access = shard.access
    audit = getattr(access, "audit", None)
    dataset = shard.dataset
    held = None
    if dataset is not None:
        sha256 = audit.dataset_sha256 if audit is not None else _file_sha256(dataset)
    else:
        held = positional(shard.records)  # a local audit's records are its whole corpus
        sha256 = _records_sha256(held)

    model_uri = audit.model_uri if audit is not None else None
    if audit is None and shard.target.kind != NO_MODEL:
        model_uri = shard.target.spec.uri if shard.target.spec is not None else None
    return Corpus(
        sha256=sha256,
        data_dir=access.settings.data_dir,
        path=dataset,
        n_records=shard.n_records,
        model_uri=model_uri,
        access=access,
        held=held,
    )


def positional(records: Sequence[Record]) -> list[Record]:
    """Records held in memory numbered by position: the corpus they make is indexed that way,
    whatever indexes they carried (a slice of a file, records reordered)."""
    return [replace(record, index=position) for position, record in enumerate(records)]


def _copy_verified(source: Path, target: Path, sha256: str) -> None:
    """Copy a dataset file, hashing the bytes copied; refused when they are not the bytes
    the audit was submitted with."""
    digest = hashlib.sha256()
    with source.open("rb") as reading, target.open("wb") as writing:
        while chunk := reading.read(1 << 20):
            digest.update(chunk)
            writing.write(chunk)
    if digest.hexdigest() != sha256:
        target.unlink(missing_ok=True)
        raise ValueError(
            f"the dataset file changed since the audit was submitted (sha256 "
            f"{digest.hexdigest()[:12]}, submitted {sha256[:12]}): submit it again"
        )


def open_pass(shard: ShardInput) -> ShardPass:
    """Kinds over records and the corpus; the model, if the audit names one, is never loaded
    (its tokenizer is, when a kind counts tokens)."""
    corpus = corpus_of(shard)
    # Each kind's compute gets what its PREPARE returned (its opened artefacts), or the
    # corpus itself for a kind with nothing to prepare.
    prepared = [
        resolve(PREPARE[kind.name])(corpus, params) if kind.name in PREPARE else corpus
        for kind, params in shard.checks
    ]
    records = shard.records if shard.dataset is not None else positional(shard.records)

    def compute(batch: Sequence[int]) -> tuple[list[list[dict[str, Any]]], int]:
        chunk = [records[i] for i in batch]
        found = [
            kind.compute(ready, chunk, params)
            for (kind, params), ready in zip(shard.checks, prepared, strict=True)
        ]
        return found, 0

    info = {"device": "cpu", "dtype": None, "model_sha256": None, **corpus.info}
    info["model_facts"] = {
        kind.name: kind.model_facts(ready, params)
        for (kind, params), ready in zip(shard.checks, prepared, strict=True)
        if kind.model_facts is not None
    }
    return ShardPass(compute, info)
