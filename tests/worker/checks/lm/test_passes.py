"""One teacher-forced pass per sequence feeds every LM check of an audit."""

from __future__ import annotations

import pytest

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
