"""The figure builders: traces, axis types and the numbers they draw, from real summaries."""

from __future__ import annotations

import json
import math

import pytest

from app.dashboard.trend import TrendSeries, trend_figure
from worker.checks import report_kit
from worker.checks.lm import figures
from worker.checks.report_kit import figure_json, histogram_figure, safe_json
from worker.engine.extraction import n_min, summarize_extraction
from worker.engine.loss import summarize_loss
from worker.engine.membership import membership_report

SCHEMES = ["greedy", "topk40_T1"]
P_GRID = [0.5, 0.9]
N_GRID = [1, 10, 100, 1000]


def _extraction_values(log10_pz: float | None, greedy: bool, member: bool, dups: int) -> dict:
    p_z = 0.0 if log10_pz is None else 10**log10_pz
    return {
        "greedy_extracted": greedy,
        "log10_pz": {"greedy": 0.0 if greedy else None, "topk40_T1": log10_pz},
        "n_min": {
            "greedy": {f"{p:g}": 1 if greedy else None for p in P_GRID},
            "topk40_T1": {f"{p:g}": n_min(p_z, p) for p in P_GRID},
        },
        "member": member,
        "duplicates": dups,
    }


@pytest.fixture
def extraction() -> dict:
    values = [
        _extraction_values(0.0, True, True, 10),  # certain: n_min 1
        _extraction_values(-1.0, False, True, 10),  # p_z 0.1: n_min(0.9) = 22
        _extraction_values(-2.5, False, True, 1),
        _extraction_values(None, False, False, 1),  # filtered by top-k
        _extraction_values(-6.0, False, False, 1),
    ]
    return summarize_extraction(values, SCHEMES, P_GRID, N_GRID)


@pytest.fixture
def membership() -> dict:
    members = [-1.0, -1.2, -0.8, -3.0, -0.5, -0.9, -1.1, -0.7]
    others = [-2.0, -2.5, -1.9, -0.95, -3.2, -2.8, -2.2, -2.9, -3.5, -2.6, -4.0, -1.5]
    entry = membership_report(members, others, bootstrap=50, seed=0)
    from worker.engine.distributions import shared_histogram

    entry["histogram"] = shared_histogram({"members": members, "nonmembers": others}, bins=10)
    zlib_entry = dict(entry)
    return {"scores": {"loss": entry, "minkpp_0.2": zlib_entry}, "warnings": []}


def _json(figure) -> dict:
    return json.loads(figure.to_json())


def test_rate_figure_draws_the_summary_curves_on_a_log_axis(extraction) -> None:
    figure = figures.extraction_rate_figure(extraction, "topk40_T1")
    layout = _json(figure)["layout"]
    assert layout["xaxis"]["type"] == "log"
    assert layout["yaxis"]["tickformat"] == ".0%"
    curves = [t for t in figure.data if t.name.startswith("p = ")]
    assert [t.name for t in curves] == ["p = 0.5", "p = 0.9"]
    assert list(curves[1].x) == N_GRID
    # p = 0.9: the certain record at n >= 1, the p_z = 0.1 record from n = 22, so by n = 100.
    assert list(curves[1].y) == [0.2, 0.2, 0.4, 0.6]
    greedy = next(t for t in figure.data if t.name == "greedy")
    assert list(greedy.y) == [0.2, 0.2] and greedy.line.dash == "dot"


def test_members_and_nonmembers_keep_their_colours(extraction) -> None:
    figure = figures.extraction_groups_figure(extraction, "topk40_T1")
    members = next(t for t in figure.data if t.name == "members (n,0.9)")
    others = next(t for t in figure.data if t.name == "non-members (n,0.9)")
    assert members.line.color == report_kit.MEMBER_COLOR
    assert others.line.color == report_kit.NONMEMBER_COLOR
    assert list(others.y) == [0.0, 0.0, 0.0, 0.0]
    assert math.isclose(list(members.y)[-1], 1.0)  # p_z = 10^-2.5 needs n = 727 at p = 0.9
    histogram = figures.pz_histogram_figure(extraction, "topk40_T1")
    colours = {t.name: t.marker.color for t in histogram.data}
    assert colours == {
        "members": report_kit.MEMBER_COLOR,
        "non-members": report_kit.NONMEMBER_COLOR,
    }


def test_pz_histogram_counts_every_finite_value_and_notes_zero(extraction) -> None:
    figure = figures.pz_histogram_figure(extraction, "topk40_T1")
    totals = {t.name: sum(t.y) for t in figure.data}
    assert totals == {"members": 3, "non-members": 1}
    note = _json(figure)["layout"]["annotations"][0]["text"]
    assert note.startswith("1 with p_z = 0")


def test_duplicates_figure_has_one_bar_per_count(extraction) -> None:
    figure = figures.duplicates_figure(extraction, "topk40_T1")
    greedy = figure.data[0]
    assert list(greedy.x) == ["1", "10"]
    assert list(greedy.y) == [0.0, 0.5]
    assert _json(figure)["layout"]["xaxis"]["type"] == "category"


def test_roc_is_log_log_with_tpr_marks_at_low_fpr(membership) -> None:
    figure = figures.roc_figure(membership)
    layout = _json(figure)["layout"]
    assert layout["xaxis"]["type"] == "log" and layout["yaxis"]["type"] == "log"
    curve = next(t for t in figure.data if t.name.startswith("loss ·"))
    assert "AUC" in curve.name
    assert curve.line.color == figures.SCORE_COLORS["loss"]
    assert all(x > 0 for x in curve.x)  # zero FPR has no place on a log axis
    entry = membership["scores"]["loss"]
    expected_auc = entry["auroc"]["value"]
    assert f"{expected_auc:.3f}" in curve.name
    # 12 non-members: TPR at 1% FPR is reported as insufficient, so no mark is drawn for it.
    assert entry["tpr_at_0.01_fpr"]["value"] is None
    plus = next(t for t in figure.data if t.name.startswith("minkpp_0.2"))
    assert plus.line.color == figures.SCORE_COLORS["minkpp"]
    assert figure.data[-1].name == "chance"


def test_roc_marks_tpr_where_there_are_enough_nonmembers() -> None:
    members = [float(i) + 0.5 for i in range(985, 1185)]
    others = [float(i) for i in range(0, 1000)]
    entry = membership_report(members, others, bootstrap=0)
    figure = figures.roc_figure({"scores": {"zlib": entry}})
    marks = next(t for t in figure.data if t.mode == "markers")
    assert list(marks.x) == [0.001, 0.01]
    # At 0.1% FPR one non-member (999) may score above the threshold, which can then fall
    # to the next member below it (998.5): 187 of 200 members; at 1%, down to 989.5: 196.
    assert list(marks.y) == [187 / 200, 196 / 200]
    assert list(marks.y) == [entry["tpr_at_0.001_fpr"]["value"], entry["tpr_at_0.01_fpr"]["value"]]


def test_no_labels_means_no_roc() -> None:
    assert figures.roc_figure({"scores": {"loss": {"higher_is_more_memorized": True}}}) is None


def test_score_distribution_and_loss_histogram(membership) -> None:
    figure = figures.score_distribution_figure(membership, "loss")
    assert [sum(t.y) for t in figure.data] == [8, 12]
    assert figure.layout.barmode == "overlay"
    loss = summarize_loss(
        [
            {"loss": 1.0, "n_scored": 3, "sum_logprob": -3.0, "member": True},
            {"loss": 4.0, "n_scored": 3, "sum_logprob": -12.0, "member": False},
        ]
    )
    histogram = figures.loss_histogram_figure(loss)
    assert [t.name for t in histogram.data] == ["members", "non-members"]
    assert [sum(t.y) for t in histogram.data] == [1, 1]


def test_trend_has_one_panel_per_metric_with_intervals() -> None:
    series = [
        TrendSeries("Greedy", True, ["v1", "v2"], [0.5, 0.25], [0.4, 0.1], [0.6, 0.4]),
        TrendSeries("AUROC", False, ["v1", "v2"], [0.9, None], [None, None], [None, None]),
    ]
    figure = trend_figure(series)
    assert len(figure.data) == 2
    assert list(figure.data[0].error_y.array) == pytest.approx([0.1, 0.15])
    assert list(figure.data[0].error_y.arrayminus) == pytest.approx([0.1, 0.15])
    assert _json(figure)["layout"]["xaxis"]["type"] == "category"
    assert trend_figure([]) is None


def test_compare_overlays_two_audits(extraction, membership) -> None:
    rates = figures.compare_rates_figure([extraction, extraction], ["a", "b"], "topk40_T1")
    dashes = [t.line.dash for t in rates.data]
    assert dashes == ["solid", "solid", "dash", "dash"]
    roc = figures.compare_roc_figure([membership, membership], ["a", "b"])
    names = [t.name for t in roc.data if t.mode == "lines" and t.name != "chance"]
    assert [n.split(" · AUC")[0] for n in names] == [
        "loss · a",
        "minkpp_0.2 · a",
        "loss · b",
        "minkpp_0.2 · b",
    ]
    loss_lines = [t for t in roc.data if t.name and t.name.startswith("loss · ")]
    assert {t.line.color for t in loss_lines} == {figures.SCORE_COLORS["loss"]}


def test_labels_cannot_break_out_of_the_script_element() -> None:
    figure = histogram_figure(
        {"edges": [0, 1], "counts": {"all": [1]}}, "</script><script>alert(1)</script>", "x"
    )
    assert "</script>" not in figure_json(figure)
    assert "<" not in safe_json({"label": "</script>"})
    assert json.loads(safe_json({"label": "</script>"})) == {"label": "</script>"}


# ---- finetune --------------------------------------------------------------------------------


def test_finetune_section_draws_delta_histograms_and_extraction_counts() -> None:
    from worker.checks.lm.finetune import FinetuneParams, summarize_finetune
    from worker.checks.lm.finetune_figures import (
        delta_histogram_figure,
        extraction_counts_figure,
        finetune_section,
    )

    def row(member: bool, delta: float, only: bool) -> dict:
        window = {"delta": 6 * delta, "mean_delta": delta, "target_extracted": only}
        window |= {"base_extracted": False, "target_match_len": 6, "base_match_len": 1}
        return {
            "member": member,
            "mean_delta": delta,
            "mink_delta_0.2": delta - 1,
            "n_windows": 1,
            "target_extracted": only,
            "base_extracted": False,
            "target_not_base": only,
            "best_window_offset": 0,
            "best_window": window,
            "pass": "two passes (full fine-tune, then base)",
        }

    values = [row(True, 2.0 + i / 10, i < 3) for i in range(5)]
    values += [row(False, -0.1 * i, False) for i in range(5)]
    summary = summarize_finetune(values, FinetuneParams(bootstrap=50))
    assert summary["extraction"]["members"]["target_not_base"] == 3
    assert summary["extraction"]["nonmembers"]["target_not_base"] == 0
    section = finetune_section(summary)
    ids = [chart.id for chart in section.charts]
    assert ids == [
        "finetune-extraction",
        "finetune-dist-mean_delta",
        "finetune-dist-mink_delta_0_2",
    ]
    bars = extraction_counts_figure(summary).data
    only = next(b for b in bars if b.name == "fine-tune, not base")
    assert list(only.y) == [3, 0]  # members, non-members
    histogram = delta_histogram_figure(summary, "mean_delta").data
    assert {trace.name for trace in histogram} == {"members", "non-members"}
    assert sum(sum(trace.y) for trace in histogram) == 10
    assert "3 of 10 records are extractable" in section.notes[0]
    assert len(section.tables[0].rows) == 3
