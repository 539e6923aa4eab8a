"""The `approximate` kind's per-record values, summary and report part, from generations made
up here (no model): what the histograms and rate bars draw are the numbers computed."""

from __future__ import annotations

import json

import pytest

from worker.checks.lm.approximate import ApproximateParams
from worker.checks.lm.approximate_compute import record_values, summarize_approximate
from worker.checks.lm.approximate_figures import (
    approximate_headlines,
    approximate_section,
    metric_histogram_figure,
    rates_figure,
)
from worker.checks.lm.report import REPORT
from worker.checks.report_kit import figure_json

SUFFIX = list(range(100, 120))  # 20 tokens


def _changed(k: int) -> list[int]:
    """The suffix with its first k tokens replaced."""
    return [7] * k + SUFFIX[k:]


@pytest.fixture
def params() -> ApproximateParams:
    return ApproximateParams(
        suffix_tokens=20, schemes=[{"temperature": 0}, {"top_k": 40}], samples=3
    )


def _values(greedy: list[int], sampled: list[list[int]], member: bool) -> dict:
    found = {"suffix_ids": SUFFIX, "generated": {"greedy": [greedy], "topk40_T1": sampled}}
    values = record_values(found, ApproximateParams(suffix_tokens=20, samples=3))
    del values["best_generation"]
    return {**values, "member": member}


@pytest.fixture
def summary(params: ApproximateParams) -> dict:
    values = [
        _values(SUFFIX, [SUFFIX, _changed(3), _changed(20)], True),  # verbatim
        _values(_changed(1), [_changed(20)] * 3, True),  # one token off: approximate only
        _values(_changed(15), [_changed(20), _changed(18), _changed(1)], False),  # sampled only
        _values(_changed(20), [_changed(20)] * 3, False),  # nothing
        {"skipped": True, "reason": "too_short", "n_text_tokens": 3},
    ]
    return summarize_approximate(values, params)


def test_record_values_take_the_best_and_the_mean_of_the_samples() -> None:
    values = _values(_changed(1), [SUFFIX, _changed(20), _changed(10)], True)
    assert values["verbatim"] == {"greedy": False, "topk40_T1": True}
    assert values["approx"] == {"greedy": True, "topk40_T1": True}
    assert values["rouge_l"]["greedy"] == pytest.approx(19 / 20)
    assert values["rouge_l"]["topk40_T1"] == 1.0
    assert values["rouge_l_mean"]["topk40_T1"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert values["lcs_substring"]["greedy"] == 19
    assert values["spans"] == {"greedy": [[1, 20]], "topk40_T1": [[0, 20]]}
    assert values["approx_extracted"] and values["verbatim_extracted"]


def test_summary_puts_approximate_beside_verbatim(summary: dict) -> None:
    assert summary["n_samples"] == 5 and summary["n_skipped"] == 1
    stats = summary["all"]
    assert stats["n"] == 4
    assert stats["approx"]["greedy"]["count"] == 2
    assert stats["verbatim"]["greedy"]["count"] == 1
    assert stats["approx"]["topk40_T1"]["count"] == 2  # the verbatim one and the sampled one
    assert stats["approx_any"]["count"] == 3 and stats["verbatim_any"]["count"] == 1
    assert summary["members"]["approx"]["greedy"]["rate"] == 1.0
    assert summary["nonmembers"]["approx"]["greedy"]["rate"] == 0.0
    lo, hi = stats["approx_any"]["ci95"]
    assert lo < 0.75 < hi
    assert "1 of 5 records had no window (too_short)" in summary["unfit"]
    assert sum(summary["histograms"]["bleu"]["counts"]["greedy"]) == 4


def test_rates_figure_draws_the_summary_rates(summary: dict) -> None:
    figure = json.loads(figure_json(rates_figure(summary)))
    approx, verbatim = figure["data"]
    assert approx["name"] == "approximate" and verbatim["name"] == "verbatim"
    assert list(approx["x"]) == ["greedy", "topk40_T1"]
    assert approx["y"] == [0.5, 0.5] and verbatim["y"] == [0.25, 0.25]
    ci = summary["all"]["approx"]["greedy"]["ci95"]
    assert approx["error_y"]["array"][0] == pytest.approx(ci[1] - 0.5)


def test_histograms_per_metric_per_scheme_with_the_threshold(summary: dict) -> None:
    figure = json.loads(figure_json(metric_histogram_figure(summary, "rouge_l")))
    assert [trace["name"] for trace in figure["data"]] == ["greedy", "topk40_T1"]
    assert sum(figure["data"][0]["y"]) == 4
    assert figure["layout"]["shapes"][0]["x0"] == 0.75
    assert metric_histogram_figure({}, "rouge_l") is None


def test_section_and_headlines_through_the_family_report(summary: dict) -> None:
    section = REPORT.sections["approximate"](summary)
    assert section is not None and section == approximate_section(summary)
    ids = [chart.id for chart in section.charts]
    assert "approximate-rates" in ids and "approximate-hist-bleu" in ids
    assert "approximate-rates-members" in ids
    assert section.tables[0].rows[0][0] == "greedy"
    assert any("BLEU" in note and "0.75" in note for note in section.notes)
    headlines = REPORT.headlines["approximate"](summary)
    assert headlines == approximate_headlines(summary)
    assert [h.value for h in headlines] == [0.75, 0.25]


def test_empty_summary_draws_nothing(params: ApproximateParams) -> None:
    summary = summarize_approximate([{"skipped": True, "reason": "too_short"}], params)
    assert summary["not_computed"]
    assert rates_figure(summary) is None
    assert approximate_headlines(summary) == []
    assert approximate_section(summary).charts == []


def test_finding_counts_what_a_verbatim_filter_would_miss(summary: dict) -> None:
    finding = REPORT.findings["approximate"](summary, None, {})
    assert finding.kind == "approximate"
    assert finding.text.startswith("2 of 2 training records (100.0%")
    assert "1 of them verbatim, so a verbatim filter would miss 1" in finding.text
    assert "Non-members, for comparison: 1 of 2 records" in finding.text
    assert finding.risk == "high"
