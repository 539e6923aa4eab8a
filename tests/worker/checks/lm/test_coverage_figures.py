"""The coverage strips and passages from a real summary: each extractable span drawn where it
lies in its work, every document given its row, the screen named as such."""

from __future__ import annotations

import json
from types import SimpleNamespace

from worker.checks.lm.coverage import CoverageParams, _scan_record, summarize_coverage
from worker.checks.lm.coverage_figures import coverage_headlines, coverage_strip_figure
from worker.checks.lm.report import REPORT
from worker.checks.report_kit import figure_json


def _values(sample_id: str, n: int, spans: list[list[int]], mode: str = "exact") -> dict:
    covered = sum(b - a for a, b in spans)
    share = covered / n
    return {
        "sample_id": sample_id,
        "mode": mode,
        "n_tokens": n,
        "n_windows": n // 10,
        "coverage_share": {"topk40_T1": share, "greedy": 0.0},
        "longest_run": {"topk40_T1": max((b - a for a, b in spans), default=0), "greedy": 0},
        "n_windows_extractable": {"topk40_T1": len(spans), "greedy": 0},
        "spans": {"topk40_T1": spans, "greedy": []},
        "top_passages": {
            "topk40_T1": [
                {"offset": a - 50, "prefix": "p", "text": f"passage {a}", "log10_pz": -0.5}
                for a, _ in spans
            ],
            "greedy": [],
        },
    }


def _summary(mode: str = "exact") -> dict:
    values = [
        _values("book", 1000, [[100, 200], [500, 550]], mode),
        _values("licence", 400, [], mode),
        {"skipped": True, "reason": "too_short", "sample_id": "note"},
    ]
    return summarize_coverage(values, CoverageParams(mode=mode))


def test_each_span_is_drawn_where_it_lies_in_its_work() -> None:
    summary = _summary()
    assert summary["by_scheme"]["topk40_T1"]["share_of_all_tokens"] == 150 / 1400
    assert summary["by_scheme"]["topk40_T1"]["longest_run"] == 100
    figure = json.loads(figure_json(coverage_strip_figure(summary)))
    spans, rows = figure["data"]
    assert spans["base"] == [0.1, 0.5] and spans["x"] == [0.1, 0.05]
    assert spans["y"] == ["book", "book"]
    assert rows["y"] == ["book", "licence"]  # the licence has its row, with nothing on it
    assert "exact" in figure["layout"]["title"]["text"]


def test_the_section_lists_passages_and_names_the_screen() -> None:
    section = REPORT.sections["coverage"](_summary("screen"))
    assert [c.id for c in section.charts] == ["coverage-strips"]
    (table,) = section.tables
    assert [row[0] for row in table.rows] == ["book", "book"]
    assert table.rows[0][1:3] == ["15.0%", "100"]
    assert any("not the exact definition" in note for note in section.notes)
    assert any("1 of 3 records were skipped" in note for note in section.notes)
    (headline,) = coverage_headlines(_summary())
    assert headline.value == 150 / 1400 and headline.percent


def test_no_document_no_strip() -> None:
    summary = summarize_coverage([{"skipped": True, "reason": "too_short"}], CoverageParams())
    assert coverage_strip_figure(summary) is None
    assert summary["not_computed"] == (
        "no record could be scanned (1 of 1 records were skipped: 1 shorter than one window of "
        "prefix and suffix (too_short))"
    )
    assert REPORT.sections["coverage"](summary).charts == []


def test_the_report_finding_states_share_longest_run_and_top_passage() -> None:
    summary = _summary()
    finding = REPORT.findings["coverage"](summary, CoverageParams(), {})
    # 150 of the 1,400 scanned tokens, in 2 documents; the longest run 100 tokens.
    assert finding.kind == "coverage" and finding.risk == "high"
    assert finding.text.startswith("10.71% of the 1,400 tokens in 2 documents")
    assert "top-k 40" in finding.text and "longest extractable run is 100 tokens" in finding.text
    assert "likeliest passage in book at token 50" in finding.text and "passage 100" in finding.text
    none = summarize_coverage([_values("licence", 400, [])], CoverageParams())
    quiet = REPORT.findings["coverage"](none, CoverageParams(), {})
    assert quiet.risk == "low" and quiet.text.startswith("0.00% of the 400 tokens in 1 document ")
    assert "likeliest passage" not in quiet.text


def test_a_window_beyond_the_context_is_named_by_its_code_not_as_too_short() -> None:
    """A window longer than the model's context is `window_exceeds_context` (the code extraction
    and approximate use), counted apart from `too_short` in the summary, the note and finding."""
    params = CoverageParams(prefix_tokens=32, suffix_tokens=32, stride=4)
    model = SimpleNamespace(encode=lambda t: list(range(len(t))), special_prefix=[0], max_tokens=48)
    found = _scan_record(None, model, "x" * 500, params, 4)
    assert found["skipped"] and found["reason"] == "window_exceeds_context"
    assert found["window_tokens"] == 65 and found["context"] == 48
    values = [{**found, "sample_id": "book"}, {"skipped": True, "reason": "too_short"}]
    summary = summarize_coverage(values, params)
    assert summary["skipped_reasons"] == {"window_exceeds_context": 1, "too_short": 1}
    assert "1 a window of prefix and suffix longer than the model's context" in summary["unfit"]
    section = REPORT.sections["coverage"](summary)
    assert not any("too short for one window" in note for note in section.notes)
    assert any("(window_exceeds_context)" in note for note in section.notes)
    finding = REPORT.findings["coverage"](summary, params, {})
    assert finding.risk == "unknown" and "model's context" in finding.text
    assert "long enough" not in finding.text
    alone = summarize_coverage([values[0]], params)
    assert alone["skipped_reasons"] == {"window_exceeds_context": 1}
    only = REPORT.findings["coverage"](alone, params, {})
    assert "no window of prefix and suffix fits the model's context" in only.text
    assert only.next_step.startswith("Shorten prefix_tokens")
    short = summarize_coverage([values[1]], params)
    assert "no document was long enough" in REPORT.findings["coverage"](short, params, {}).text
