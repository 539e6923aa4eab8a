"""Audits without the service: the same checks and passes, called from Python or the CLI.

>>> from worker.local import audit_texts  # doctest: +SKIP
>>> result = audit_texts("/models/gpt2", [{"text": "...", "member": True}],
...                      [{"kind": "extraction", "params": {"suffix_tokens": 32}}])
>>> result["extraction"]["summary"]["all"]["greedy_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.check_kinds import SubmitContext
from core.config import Settings, get_settings
from core.inspection.datasets import Record, iter_records
from core.inspection.models import ModelSpec, resolve_model
from worker.access import Target
from worker.checks.registry import REGISTRY
from worker.checks.shard_pass import ShardInput, run_passes
from worker.loaders.classifiers import LoadedClassifier, cached_classifier
from worker.loaders.models import LoadedModel, cached_causal_lm

MEMORY = "memory:"  # a model the caller passed in, by the name it is held under


def local_spec(uri: str | Path) -> ModelSpec:
    """A local model directory (no roots apply: the caller owns this process)."""
    resolved = Path(str(uri).removeprefix("path:")).resolve()
    return resolve_model(f"path:{resolved}", [resolved.parent])


def load_local(path: str | Path) -> LoadedModel:
    return cached_causal_lm(local_spec(path))


def load_local_classifier(path: str | Path) -> LoadedClassifier:
    """A local classifier, encoder or (for `diversity`) causal LM directory."""
    return cached_classifier(local_spec(path))


@dataclass
class LocalAccess:
    """What a local audit may read: any path this process can, and the models it was handed;
    corpus artefacts (a dataset audit's indexes) go under the settings' data dir, as in a
    worker."""

    held: dict[str, Any] = field(default_factory=dict)
    settings: Settings = field(default_factory=get_settings)

    def spec(self, uri: str) -> ModelSpec:
        return local_spec(uri)

    def open_dataset(self, uri: str) -> Path:
        return Path(uri.removeprefix("path:"))

    def causal_lm(self, uri: str) -> LoadedModel:
        return self.held[uri] if uri in self.held else load_local(uri)

    def classifier(self, uri: str) -> LoadedClassifier:
        return self.held[uri] if uri in self.held else load_local_classifier(uri)

    def chat(self, spec: ModelSpec) -> Any:
        raise ValueError("local audits do not talk to chat endpoints: submit to the service")


def _target(model: Any, access: LocalAccess) -> Target:
    if model is None:  # a dataset audit
        return Target(None, access)
    if isinstance(model, LoadedModel | LoadedClassifier):
        return Target(model.spec, access, held=model)
    return Target(local_spec(model), access)


def audit_local(
    model: str | Path | LoadedModel | LoadedClassifier | None,
    records: list[Record],
    checks: Iterable[Mapping[str, Any]],
    *,
    dataset: Path | None = None,
    reference_model: str | Path | LoadedModel | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, Any]]:
    """Per check: per-sample values (in input order), the summary and, where the check has
    them, the model facts under "model" and the exemplars' details under "exemplars". A model
    of None runs a dataset audit: only kinds that run without a model accept it."""
    access = LocalAccess()
    reference_uri = None
    if isinstance(reference_model, LoadedModel):
        reference_uri = f"{MEMORY}reference"
        access.held[reference_uri] = reference_model
    elif reference_model is not None:
        reference_uri = f"path:{Path(reference_model).resolve()}"
    parsed = REGISTRY.parse_checks(list(checks))
    for kind, params in parsed:
        completed = kind.validate(
            params, SubmitContext(has_reference_model=reference_uri is not None)
        )
        if completed is not None:
            raise ValueError(f"{kind.name}: params completed from a registry need the service")
    shard = ShardInput(
        access=access,
        target=_target(model, access),
        checks=parsed,
        records=records,
        dataset=dataset,
        n_records=len(records),
        reference_uri=reference_uri,
        batch_size=batch_size,
    )
    # One batch of every record where no pass orders them (the LM's does): the classifier
    # context batches inside, as it always has here.
    batches, info = run_passes(parsed, shard, chunk=max(len(records), 1))
    per_check: list[list[dict[str, Any] | None]] = [[None] * len(records) for _ in parsed]
    for batch, values, _ in batches:
        for n, per_sample in enumerate(values):
            for i, sample_values in zip(batch, per_sample, strict=True):
                per_check[n][i] = sample_values
    result = {}
    for n, (kind, params) in enumerate(parsed):
        samples = per_check[n]
        read = samples
        if kind.summarize_reads_text:
            read = [
                {**sample, "text": record.data.get("text")} if sample is not None else None
                for sample, record in zip(samples, records, strict=True)
            ]
        summary = kind.summarize(read, params)
        facts = info.get("model_facts", {})
        if kind.name in facts:
            summary[kind.facts_key] = facts[kind.name]
        if kind.exemplars is not None:
            wanted = set(kind.exemplars(summary))
            summary["exemplars"] = {
                s["id"]: s["detail"] for s in samples if s.get("detail") and s["id"] in wanted
            }
        result[kind.name] = {"samples": samples, "summary": summary}
    return result


def audit_texts(
    model: str | Path | LoadedModel | None,
    records: Iterable[Mapping[str, Any]],
    checks: Iterable[Mapping[str, Any]],
    *,
    reference_model: str | Path | LoadedModel | None = None,
    batch_size: int = 16,
) -> dict[str, dict[str, Any]]:
    """Texts given as dicts (`text`, and `id`, `member`, `duplicates` where known), checked as
    the service checks a dataset's records: `member` true, false or absent, `duplicates` a
    count, an `id` of None standing for the record's position."""
    rows = [Record(i, i + 1, dict(r)) for i, r in enumerate(records)]
    checks = list(checks)
    if not any(check.get("kind") == "membership" for check in checks):
        return audit_local(
            model, rows, checks, reference_model=reference_model, batch_size=batch_size
        )
    # The texts as the dataset file the held-out scores choose from (ReCaLL, Con-ReCall,
    # DC-PDD read beyond each batch); the file's positions are the rows' indexes.
    with tempfile.TemporaryDirectory(prefix="memaudit-texts-") as folder:
        dataset = Path(folder) / "texts.jsonl"
        with dataset.open("w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row.data, ensure_ascii=False, default=str) + "\n")
        return audit_local(
            model,
            rows,
            checks,
            dataset=dataset,
            reference_model=reference_model,
            batch_size=batch_size,
        )


def audit_records(
    model: str | Path | LoadedClassifier | None,
    dataset: str | Path,
    checks: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """The checks over a JSONL or .npz file, in file order."""
    path = Path(dataset)
    rows = list(iter_records(path))
    return audit_local(model, rows, checks, dataset=path, batch_size=batch_size)
