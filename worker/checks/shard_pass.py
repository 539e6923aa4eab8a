"""What a family's pass is given over one shard, what it gives back, and how an audit's
passes run together.

The runner (and a local audit) groups an audit's checks by the pass their families name, opens
each pass once per shard, and calls it batch by batch; it knows no family. A pass loads what
its kinds need through `target` (the audited model, in the form the family reads it) and
`access` (other models and datasets, within the audit's grants).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.check_kinds import CheckKind, CheckParams
from core.inspection.datasets import Record
from worker.checks.registry import REGISTRY


def loaded_info(loaded: Any) -> dict[str, Any]:
    """Where a loaded model runs and what its files hash to: the shard's provenance."""
    return {
        "device": loaded.device,
        "dtype": loaded.dtype,
        "model_sha256": loaded.content_sha256,
    }


REMOTE_INFO = {"device": "remote", "dtype": None, "model_sha256": None}

# A pass without a preferred order is fed chunks of this many records between writes.
DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class ShardInput:
    access: Any  # worker.access.Access, or a local audit's stand-in
    target: Any  # worker.access.Target: the audited model
    checks: list[tuple[CheckKind, CheckParams]]  # this pass's checks, in the audit's order
    records: list[Record]
    dataset: Path | None  # the dataset file (classifier kinds read beyond the shard)
    n_records: int  # the whole dataset's, not just this shard's
    reference_uri: str | None
    batch_size: int


# Record positions in, per check of the pass the values of each record, and tokens scored.
Compute = Callable[[Sequence[int]], tuple[list[list[dict[str, Any]]], int]]


@dataclass
class ShardPass:
    compute: Compute
    info: dict[str, Any] = field(default_factory=dict)  # device, dtype, model sha256, facts
    order: list[list[int]] | None = None  # batches the pass prefers (the LM's: by length)
    chunk: int = DEFAULT_CHUNK


Batches = Iterator[tuple[list[int], list[list[dict[str, Any]]], int]]


def open_passes(
    checks: list, shard: ShardInput
) -> tuple[list[tuple[list[int], ShardPass]], dict[str, Any]]:
    """One pass per pass function the audit's families name (families may share one), each
    with the positions of its checks; and what the passes say about the models."""
    groups: dict[str, list[int]] = {}
    for position, (kind, _) in enumerate(checks):
        groups.setdefault(REGISTRY.family_of(kind.name).shard_pass, []).append(position)
    passes: list[tuple[list[int], ShardPass]] = []
    info: dict[str, Any] = {}
    for target, positions in groups.items():
        opened = REGISTRY.shard_pass(target)(replace(shard, checks=[checks[i] for i in positions]))
        passes.append((positions, opened))
        facts = {**info.get("model_facts", {}), **opened.info.get("model_facts", {})}
        had_facts = "model_facts" in info or "model_facts" in opened.info
        artefacts = {**info.get("artefacts", {}), **opened.info.get("artefacts", {})}
        info = {**opened.info, **info}  # the first pass's description of the model stands
        if had_facts:
            info["model_facts"] = facts  # each kind's own, whichever pass computed them
        if artefacts:
            info["artefacts"] = artefacts  # every pass's corpus artefacts
    return passes, info


def batch_order(
    passes: list[tuple[list[int], ShardPass]], n_records: int, chunk: int | None = None
) -> list[list[int]]:
    """The first order a pass asks for (the LM's, by length), else chunks of the smallest size
    the passes ask for, `chunk` standing in for any pass left at the default."""
    for _, opened in passes:
        if opened.order is not None:
            return opened.order
    sizes = [chunk if chunk and o.chunk == DEFAULT_CHUNK else o.chunk for _, o in passes]
    chunk = min(sizes) if sizes else chunk
    return [
        list(range(start, min(start + chunk, n_records))) for start in range(0, n_records, chunk)
    ]


def check_model_kinds(checks: list, model_kind: str) -> None:
    unsupported = [kind.name for kind, _ in checks if model_kind not in kind.model_kinds]
    if unsupported:
        raise ValueError(f"checks {unsupported} do not support {model_kind} models")


def run_passes(
    checks: list, shard: ShardInput, chunk: int | None = None
) -> tuple[Batches, dict[str, Any]]:
    """Per batch of records, every check's values in the audit's order; `chunk` replaces the
    default chunk size of passes that keep it (a pass that sets its own keeps it)."""
    check_model_kinds(checks, shard.target.kind)
    passes, info = open_passes(checks, shard)
    order = batch_order(passes, len(shard.records), chunk)

    def batches() -> Batches:
        for batch in order:
            values: list[list[dict[str, Any]]] = [[] for _ in checks]
            n_tokens = 0
            for positions, opened in passes:
                found, tokens = opened.compute(batch)
                n_tokens += tokens
                for position, per_sample in zip(positions, found, strict=True):
                    values[position] = per_sample
            yield batch, values, n_tokens

    return batches(), info
