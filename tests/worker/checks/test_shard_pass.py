"""How an audit's passes run together: one pass per pass function (families naming one share
it), values back in the audit's order, the first order a pass asks for, the model described by
the first pass with every kind's facts kept, and a model kind no kind supports refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import worker.checks.registry as registry_module
import worker.checks.shard_pass as shard_pass
from core.check_kinds import CheckKind, CheckParams, Family
from core.inspection.datasets import Record
from worker.checks.registry import Registry
from worker.checks.shard_pass import ShardInput, ShardPass, batch_order, run_passes

OPENED: list[list[str]] = []


def _kind(name: str, model_kinds: tuple[str, ...] = ("causal_lm",)) -> CheckKind:
    return CheckKind(
        name=name,
        description=name,
        params_model=CheckParams,
        model_kinds=model_kinds,
        required_fields=(),
        metrics=(),
        compute=lambda _c, records, _p: [{"n": len(records)} for _ in records],
        summarize=lambda values, _p: {"n": len(values)},
        rank_score=lambda _v, _p: None,
        rank_description="",
        table_columns=lambda _p: [],
    )


def ordered_pass(shard: ShardInput) -> ShardPass:
    """Asks for its own order (records 1 and 0 together, then 2) and knows the model."""
    OPENED.append([kind.name for kind, _ in shard.checks])

    def compute(batch):  # type: ignore[no-untyped-def]
        rows = [[{"kind": kind.name, "record": i} for i in batch] for kind, _ in shard.checks]
        return rows, len(batch)

    facts = {kind.name: {"first": True} for kind, _ in shard.checks}
    return ShardPass(compute, {"device": "cpu", "model_facts": facts}, order=[[1, 0], [2]])


def chunked_pass(shard: ShardInput) -> ShardPass:
    OPENED.append([kind.name for kind, _ in shard.checks])

    def compute(batch):  # type: ignore[no-untyped-def]
        return [[{"kind": kind.name, "record": i} for i in batch] for kind, _ in shard.checks], 0

    info = {"device": "elsewhere", "model_facts": {"c": {"second": True}}, "extra": 1}
    return ShardPass(compute, info, chunk=2)


def plain_pass(shard: ShardInput) -> ShardPass:
    """Keeps the default chunk size."""

    def compute(batch):  # type: ignore[no-untyped-def]
        return [[{"record": i} for i in batch] for _ in shard.checks], 0

    return ShardPass(compute, {})


HERE = "tests.worker.checks.test_shard_pass"
FAMILIES = (
    Family("first", (_kind("a"), _kind("b")), f"{HERE}:ordered_pass", position=1),
    Family("second", (_kind("c"),), f"{HERE}:chunked_pass", position=2),
    Family("shares", (_kind("d"),), f"{HERE}:ordered_pass", position=3),  # the first's pass
    Family("plain", (_kind("e"),), f"{HERE}:plain_pass", position=4),
)


@dataclass(frozen=True)
class Target:
    kind: str = "causal_lm"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setattr(registry_module, "_builtin_families", lambda: list(FAMILIES))
    monkeypatch.setattr(registry_module, "_entry_point_families", list)
    fresh = Registry()
    monkeypatch.setattr(shard_pass, "REGISTRY", fresh)
    OPENED.clear()
    return fresh


def _shard(registry: Registry, names: list[str], n_records: int = 3, kind: str = "causal_lm"):  # type: ignore[no-untyped-def]
    checks = registry.parse_checks([{"kind": name} for name in names])
    records = [Record(i, i + 1, {"text": str(i)}) for i in range(n_records)]
    shard = ShardInput(None, Target(kind), checks, records, None, n_records, None, 4)
    return checks, shard


def test_passes_are_shared_and_values_come_back_in_the_audits_order(registry: Registry) -> None:
    checks, shard = _shard(registry, ["c", "a", "d", "b"])
    batches, info = run_passes(checks, shard)
    got = list(batches)
    assert OPENED == [["c"], ["a", "d", "b"]]  # one pass per function, in first-use order
    assert [batch for batch, _, _ in got] == [[1, 0], [2]]  # the order the first pass asked for
    _, values, tokens = got[0]
    assert [[row["kind"] for row in per_check] for per_check in values] == [
        ["c", "c"],
        ["a", "a"],
        ["d", "d"],
        ["b", "b"],
    ]
    assert [row["record"] for row in values[1]] == [1, 0] and tokens == 2
    # The first pass opened describes the model; every kind keeps its own facts.
    assert info["device"] == "elsewhere" and info["extra"] == 1
    assert info["model_facts"] == {
        "c": {"second": True},
        "a": {"first": True},
        "d": {"first": True},
        "b": {"first": True},
    }


def test_without_an_order_records_go_in_the_smallest_chunk_or_the_one_asked_for(
    registry: Registry,
) -> None:
    def batches(names: list[str], chunk: int | None = None) -> list[list[int]]:
        checks, shard = _shard(registry, names, n_records=5)
        return [batch for batch, _, _ in run_passes(checks, shard, chunk)[0]]

    assert batches(["c"]) == [[0, 1], [2, 3], [4]]  # the size the pass asks for
    assert batches(["c"], chunk=5) == [[0, 1], [2, 3], [4]]  # which a caller does not override
    assert batches(["e"]) == [[0, 1, 2, 3, 4]]  # the default: 256
    assert batches(["e"], chunk=2) == [[0, 1], [2, 3], [4]]  # a caller's size replaces it
    assert batches(["e", "c"], chunk=5) == [[0, 1], [2, 3], [4]]  # the smallest stands
    assert batch_order([], 0, chunk=1) == []


def test_a_model_kind_no_check_supports_is_refused_before_any_pass_opens(
    registry: Registry,
) -> None:
    checks, shard = _shard(registry, ["a", "c"], kind="diffusion")
    with pytest.raises(ValueError, match=r"checks \['a', 'c'\] do not support diffusion models"):
        run_passes(checks, shard)
    assert OPENED == []
