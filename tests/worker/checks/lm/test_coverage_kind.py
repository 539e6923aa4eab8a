"""The `coverage` check end to end on the demo model: a long document is one record, its
windows agree with the extraction check's windows over the same text, the screen is labelled
as such, the series reaches the CSV export, and bad params are refused."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from app.api.audits import _csv_lines
from worker.checks.lm.coverage import EXACT, SCREENED, CoverageParams
from worker.local import audit_texts, load_local

WINDOW = {"prefix_tokens": 8, "suffix_tokens": 16, "stride": 3}


def _work(tiny_lm) -> str:
    """A work of the demo's member canaries (memorized) and held-out ones (not), in turn."""
    rows = [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]
    members = [r["text"] for r in rows if r["member"]][:6]
    others = [r["text"] for r in rows if not r["member"]][:6]
    return " ".join(t for pair in zip(members, others, strict=True) for t in pair)


@pytest.fixture(scope="module")
def audited(tiny_lm):
    lm = load_local(tiny_lm.model_dir)
    text = _work(tiny_lm)
    found = audit_texts(
        lm,
        [{"text": text, "id": "work"}, {"text": "tiny"}],
        [
            {"kind": "coverage", "params": {**WINDOW, "threshold": 0.5, "top_passages": 3}},
            {"kind": "extraction", "params": {**WINDOW, "max_windows": 4096}},
        ],
    )
    return lm, text, found


def test_the_work_is_one_record_scanned_like_the_extraction_windows(audited) -> None:
    lm, text, found = audited
    values, short = found["coverage"]["samples"]
    best = found["extraction"]["samples"][0]
    n = len(lm.encode(text))
    assert values["n_tokens"] == n
    assert values["n_windows"] == best["n_windows"] == len(range(0, n - 24 + 1, 3))
    series = values["series"]
    assert series["conditioning"] == EXACT
    assert series["offsets"] == list(range(0, n - 24 + 1, 3))
    assert len(series["log10_pz"]["topk40_T1"]) == len(series["greedy"]) == values["n_windows"]
    assert values["greedy_extracted"] == best["greedy_extracted"] is True
    assert sum(series["greedy"]) == best["n_windows_extracted"]
    top = max(v for v in series["log10_pz"]["topk40_T1"] if v is not None)
    assert top == pytest.approx(best["log10_pz"]["topk40_T1"], abs=1e-5)
    assert values["max_log10_pz"]["topk40_T1"] == pytest.approx(top)
    # Something of the work is extractable, not all of it (the held-out canaries are not).
    assert 0 < values["coverage_share"]["greedy"] < 0.9
    assert values["longest_run"]["greedy"] >= 16
    passage = values["top_passages"]["topk40_T1"][0]
    assert passage["text"] and passage["text"] in text and passage["log10_pz"] == pytest.approx(top)
    assert short["skipped"] and short["reason"] == "too_short"


def test_the_summary_keeps_a_strip_per_document(audited) -> None:
    _, _, found = audited
    summary = found["coverage"]["summary"]
    assert summary["n_samples"] == 2 and summary["n_skipped"] == 1
    (strip,) = summary["strips"]
    assert strip["sample_id"] == "work" and strip["spans"]["greedy"]
    assert summary["by_scheme"]["greedy"]["documents_with_extractable"] == 1
    assert summary["unfit"] == (
        "1 of 2 records were skipped: 1 shorter than one window of prefix and suffix (too_short)"
    )
    assert summary["skipped_reasons"] == {"too_short": 1}


def test_the_screen_is_labelled_and_rescores_its_candidates_exactly(audited, tiny_lm) -> None:
    lm, text, found = audited
    params = {**WINDOW, "threshold": 0.5, "mode": "screen", "screen_context": 64}
    screened = audit_texts(lm, [{"text": text}], [{"kind": "coverage", "params": params}])
    (values,) = screened["coverage"]["samples"]
    exact = found["coverage"]["samples"][0]
    assert values["screen"]["conditioning"] == SCREENED
    assert values["series"]["conditioning"] == EXACT
    assert values["n_windows_scored_exactly"] == values["screen"]["n_candidates"]
    assert values["n_windows_scored_exactly"] < values["n_windows"]
    assert len(values["screen"]["log10_pz"]["topk40_T1"]) == values["n_windows"]
    # The candidates' exact values are those of the full exact scan, window for window.
    full = dict(
        zip(exact["series"]["offsets"], exact["series"]["log10_pz"]["topk40_T1"], strict=True)
    )
    for offset, value in zip(
        values["series"]["offsets"], values["series"]["log10_pz"]["topk40_T1"], strict=True
    ):
        assert (
            value == pytest.approx(full[offset], abs=1e-5)
            if value is not None
            else full[offset] is None
        )
    # The screen can miss windows (its context is not theirs: the demo model never saw two
    # canaries in a row), never add one: what it reports extractable, the exact map does too.
    assert 0 < values["coverage_share"]["greedy"] <= exact["coverage_share"]["greedy"]
    found_spans = {tuple(s) for s in values["spans"]["greedy"]}
    covered = [t for a, b in exact["spans"]["greedy"] for t in range(a, b)]
    assert all(t in covered for a, b in found_spans for t in range(a, b))


def test_the_series_is_exported_in_the_csv(audited) -> None:
    _, _, found = audited
    values = found["coverage"]["samples"][0]
    json.dumps(found["coverage"], allow_nan=False)  # plain JSON, as the results table stores
    row = SimpleNamespace(sample_index=0, sample_id="work", check="coverage", values=values)
    lines = "".join(_csv_lines(iter([[row]])))
    table = list(csv.DictReader(io.StringIO(lines)))
    series = json.loads(table[0]["series"])
    assert series["offsets"] == values["series"]["offsets"]
    assert series["log10_pz"] == values["series"]["log10_pz"]


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValidationError, match="screen_context must exceed"):
        CoverageParams(prefix_tokens=50, suffix_tokens=50, mode="screen", screen_context=100)
    with pytest.raises(ValidationError):
        CoverageParams(threshold=0)
    with pytest.raises(ValidationError):
        CoverageParams(mode="approximate")
    with pytest.raises(ValidationError, match="context-dependent"):
        CoverageParams(schemes=[{"top_k": 40, "repetition_penalty": 1.2}])


def test_a_bf16_model_rechecks_its_fragile_windows_in_float32(audited) -> None:
    """Windows whose greedy verdict lies within bf16 rounding are scored again in float32: every
    verdict then agrees with the float32 model's (the others are certain by their bound). Short
    windows at every offset, as tests/worker/checks/lm/test_recheck.py uses, make some fragile."""
    lm, text, _ = audited
    half = dataclasses.replace(
        lm, model=copy.deepcopy(lm.model).to(torch.bfloat16), dtype="bfloat16"
    )
    check = [{"kind": "coverage", "params": {"prefix_tokens": 4, "suffix_tokens": 4, "stride": 1}}]
    (values,) = audit_texts(half, [{"text": text}], check)["coverage"]["samples"]
    (full,) = audit_texts(lm, [{"text": text}], check)["coverage"]["samples"]
    assert values["n_windows_rechecked"] > 0
    assert full["n_windows_rechecked"] == 0  # a float32 model has nothing more precise to use
    assert values["series"]["greedy"] == full["series"]["greedy"]


def test_a_long_series_is_downsampled_to_bucket_maxima_and_reductions_stay_exact(
    audited,
) -> None:
    """The stored series holds at most `series_points` points per scheme, each the largest
    log10 p_z of its run of windows; every window is still scanned and read by the shares."""
    lm, text, found = audited
    full = found["coverage"]["samples"][0]
    params = {**WINDOW, "threshold": 0.5, "top_passages": 3, "series_points": 16}
    (values,) = audit_texts(lm, [{"text": text}], [{"kind": "coverage", "params": params}])[
        "coverage"
    ]["samples"]
    n = values["n_windows"]
    size = -(-n // 16)
    assert n > 16 and values["series"]["downsampled"]["windows_per_point"] == size
    series = values["series"]
    assert len(series["offsets"]) == len(series["greedy"]) <= 16
    assert series["offsets"] == full["series"]["offsets"][::size]
    for name, stored in series["log10_pz"].items():
        every = full["series"]["log10_pz"][name]
        for i, point in enumerate(stored):
            run = [v for v in every[i * size : (i + 1) * size] if v is not None]
            assert point == (max(run) if run else None)
    for key in ("coverage_share", "longest_run", "spans", "top_passages", "n_windows_extractable"):
        assert values[key] == full[key], key
    assert "downsampled" not in full["series"]
    screen = {**params, "mode": "screen", "screen_context": 64}
    (thin,) = audit_texts(lm, [{"text": text}], [{"kind": "coverage", "params": screen}])[
        "coverage"
    ]["samples"]
    assert len(thin["screen"]["log10_pz"]["topk40_T1"]) <= 16
    assert thin["screen"]["downsampled"]["n_windows"] == n


def test_a_scan_too_large_for_the_dataset_is_refused_at_fit(tmp_path) -> None:
    from core.check_kinds import FitContext
    from core.dataset_profile import profile_dataset
    from tests.conftest import write_jsonl
    from worker.checks.lm.coverage import COVERAGE, MAX_SCAN_TOKENS

    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x" * 1_000_000}])
    context = FitContext(profile_dataset(path, 1, ["text"]))
    wide = {"prefix_tokens": 10_000, "suffix_tokens": 10_000}
    refused = COVERAGE.fit(CoverageParams(stride=1, **wide), context)
    assert len(refused.refusals) == 1 and f"{MAX_SCAN_TOKENS:,}" in refused.refusals[0]
    assert "raise the stride to at least 2" in refused.refusals[0]
    assert not COVERAGE.fit(CoverageParams(stride=2, **wide), context).refusals
