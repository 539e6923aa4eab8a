"""One teacher-forced pass per sequence feeds every LM check of an audit."""

from __future__ import annotations

import pytest

from core.check_kinds import SubmitContext
from worker.local import audit_texts, load_local


@pytest.fixture
def counted(tiny_lm):
    lm = load_local(tiny_lm.model_dir)
    rows: list[int] = []
    handle = lm.model.base_model.register_forward_hook(
        lambda _m, args, kwargs, _out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    yield lm, rows
    handle.remove()


def _records(tiny_lm) -> list[dict]:
    import json

    return [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]


def test_extraction_and_membership_share_one_pass(counted, tiny_lm) -> None:
    lm, rows = counted
    records = _records(tiny_lm)
    audit_texts(
        lm,
        records,
        [
            {"kind": "extraction", "params": {"prefix_tokens": 8, "suffix_tokens": 16}},
            {
                "kind": "membership",
                "params": {"scores": ["loss", "zlib", "mink", "minkpp"], "bootstrap": 0},
            },
            {"kind": "loss"},
        ],
    )
    assert sum(rows) == len(records)


def test_lowercase_and_extra_windows_add_exactly_their_passes(counted, tiny_lm) -> None:
    lm, rows = counted
    records = _records(tiny_lm)
    result = audit_texts(
        lm,
        records,
        [
            {
                "kind": "extraction",
                "params": {"prefix_tokens": 8, "suffix_tokens": 8, "stride": 4, "max_windows": 3},
            },
            {"kind": "membership", "params": {"bootstrap": 0}},
        ],
    )
    windows = sum(v["n_windows"] for v in result["extraction"]["samples"])
    # text + lowercase per record, and every window after the first runs on its own.
    assert sum(rows) == 2 * len(records) + windows - len(records)


def test_a_model_is_its_own_zero_reference(counted, tiny_lm) -> None:
    lm, _ = counted
    result = audit_texts(
        lm,
        _records(tiny_lm)[:6],
        [{"kind": "membership", "params": {"scores": ["ref"], "bootstrap": 0}}],
        reference_model=lm,
    )
    for values in result["membership"]["samples"]:
        assert values["ref"] == pytest.approx(0.0, abs=1e-9)
        assert values["ref_basis"] == "per_token"


def test_too_short_samples_are_skipped_with_a_reason(tiny_lm) -> None:
    result = audit_texts(
        tiny_lm.model_dir,
        [{"text": "tiny"}],
        [{"kind": "extraction", "params": {"prefix_tokens": 50, "suffix_tokens": 50}}],
    )
    (values,) = result["extraction"]["samples"]
    assert values["skipped"] and values["reason"] == "too_short"
    assert result["extraction"]["summary"]["n_skipped"] == 1


def _batch_tokens(lm, texts: list[str], entry: dict, reference=None) -> tuple[int, int]:
    """(tokens the batch reports scored, tokens of its shared passes alone) for one check."""
    from worker.checks.lm.passes import TextRecord, compute_batch, plan_record
    from worker.checks.registry import REGISTRY

    checks = REGISTRY.parse_checks([entry])
    kind, params = checks[0]
    plan = kind.plan(params, SubmitContext(has_reference_model=reference is not None))
    batch = [TextRecord(f"r{i}", t) for i, t in enumerate(texts)]
    _, n_tokens = compute_batch(batch, checks, plan, lm, reference, 256, 8)
    plans = [plan_record(t, plan, lm, reference, 256) for t in texts]
    shared = sum(len(r.input_ids) for p in plans for r in p.requests.values())
    return n_tokens, shared


def test_a_coverage_only_batch_counts_its_scan(tiny_lm) -> None:
    lm = load_local(tiny_lm.model_dir)
    text = " ".join(r["text"] for r in _records(tiny_lm)[:3])
    params = {"prefix_tokens": 8, "suffix_tokens": 16, "stride": 3}
    n_tokens, shared = _batch_tokens(lm, [text, "tiny"], {"kind": "coverage", "params": params})
    n = len(lm.encode(text))
    width = len(lm.special_prefix) + 24
    assert n_tokens - shared == width * len(range(0, n - 24 + 1, 3)) > 0


def test_a_finetune_only_batch_counts_both_models_passes(tiny_lm) -> None:
    lm = load_local(tiny_lm.model_dir)
    texts = [r["text"] for r in _records(tiny_lm)[:2]]
    params = {"prefix_tokens": 6, "suffix_tokens": 6, "stride": 2, "bootstrap": 0}
    n_tokens, shared = _batch_tokens(lm, texts, {"kind": "finetune", "params": params}, lm)
    specials = len(lm.special_prefix)
    rows = 0
    for text in texts:
        n = len(lm.encode(text))
        rows += specials + n + (specials + 12) * len(range(0, n - 12 + 1, 2))
    assert n_tokens - shared == 2 * rows > 0
