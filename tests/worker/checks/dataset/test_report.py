"""The dataset report part over summaries from a real local audit of a planted corpus: every
figure and table against counts taken here from the planted texts, and no raw value anywhere."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

import pytest

from core.config import get_settings
from tests.conftest import write_jsonl
from tests.worker.checks.dataset.report_corpus import EMAIL, RAW_VALUES, planted_corpus
from worker.checks.dataset.report import REPORT
from worker.local import audit_texts

KINDS = ("duplication", "near_duplicates", "pii", "contamination")


@pytest.fixture(scope="module")
def summaries(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMAUDIT_DATA_DIR", str(root / "data"))
        get_settings.cache_clear()
        planted = planted_corpus()
        corpus = audit_texts(
            None,
            planted.corpus,
            [{"kind": "duplication"}, {"kind": "near_duplicates"}, {"kind": "pii"}],
        )
        corpus_file = write_jsonl(root / "corpus.jsonl", planted.corpus)
        evaluation = audit_texts(
            None,
            planted.evaluation,
            [{"kind": "contamination", "params": {"corpus": f"path:{corpus_file}"}}],
        )
    get_settings.cache_clear()
    return {kind: result["summary"] for kind, result in {**corpus, **evaluation}.items()}


def figure(section, chart_id: str) -> dict:
    (chart,) = [c for c in section.charts if c.id == chart_id]
    return json.loads(chart.figure_json)


def table(section, caption: str):
    (found,) = [t for t in section.tables if t.caption == caption]
    return found


def test_duplication_charts_and_tables_match_the_planted_copies(summaries) -> None:
    texts = [r["text"] for r in planted_corpus().corpus]
    copies = Counter(texts)  # the planted copies are byte-identical
    by_copies = Counter(copies[t] for t in texts)
    section = REPORT.sections["duplication"](summaries["duplication"])
    histogram = figure(section, "duplication-histogram")["data"][0]
    assert histogram["x"] == [str(c) for c in sorted(by_copies)]
    assert histogram["y"] == [by_copies[c] for c in sorted(by_copies)]
    spans = figure(section, "duplication-spans")["data"][0]
    assert sum(spans["y"]) == len(texts)
    groups = table(section, "Largest duplicate groups")
    assert [row[0] for row in groups.rows] == ["3", "2"]
    assert "j***@e***.org" in groups.rows[0][1]
    top = table(section, "Most repeated spans")
    assert top.header == ["span (masked)", "occurrences", "tokens", "bytes"]
    assert top.rows[0][1] == "3" and "j***@e***.org" in top.rows[0][0]
    share = summaries["duplication"]["corpus"]["repeated_bytes_share"]
    (repeated,) = [
        h
        for h in REPORT.headlines["duplication"](summaries["duplication"])
        if h.key == "duplication.repeated_bytes_share"
    ]
    assert repeated.value == share and 0 < share < 1


def test_near_duplicate_clusters_show_masked_examples_and_the_lsh_settings(summaries) -> None:
    section = REPORT.sections["near_duplicates"](summaries["near_duplicates"])
    bars = figure(section, "near_duplicates-clusters")["data"][0]
    # The three e-mail copies, the two plain copies, the planted pair.
    assert dict(zip(bars["x"], bars["y"], strict=True)) == {"2": 2, "3": 1}
    clusters = table(section, "Largest near-duplicate clusters")
    assert [row[1] for row in clusters.rows] == ["3"] * 3 + ["2"] * 4
    assert any("+1 *** *** *132" in row[3] for row in clusters.rows)
    assert any("16 bands × 8 rows" in note and "0.8" in note for note in section.notes)
    (headline,) = REPORT.headlines["near_duplicates"](summaries["near_duplicates"])
    assert headline.value == pytest.approx(7 / 37)


def test_pii_by_type_and_the_most_recurring_values(summaries) -> None:
    texts = [r["text"] for r in planted_corpus().corpus]
    section = REPORT.sections["pii"](summaries["pii"])
    bars = figure(section, "pii-types")["data"]
    records = dict(zip(bars[0]["x"], bars[0]["y"], strict=True))
    assert "possible_secret" not in records  # apart, never among the types
    assert records["email"] == sum(EMAIL in t for t in texts) == 3
    assert records["phone"] == 2 and records["credit_card"] == 1 and records["private_key"] == 0
    recurring = table(section, "Most recurring values")
    assert recurring.rows[0] == ["email", "j***@e***.org", "3", "3"]
    secrets = table(section, "Possible secrets")
    assert secrets.rows == [["possible secrets (entropy only)", "1", "1", "1"]]
    assert any("entropy alone" in note for note in section.notes)
    finding = REPORT.findings["pii"](summaries["pii"], None, {})
    assert finding.risk == "high" and "occurs 3 times" in finding.text


def test_contamination_share_interval_and_overlap_histogram(summaries) -> None:
    planted = planted_corpus()
    corpus_grams = set()
    for record in planted.corpus:
        words = record["text"].lower().split()
        corpus_grams |= {tuple(words[i : i + 13]) for i in range(len(words) - 12)}
    fractions = []
    for record in planted.evaluation:
        words = record["text"].lower().split()
        grams = [tuple(words[i : i + 13]) for i in range(len(words) - 12)]
        fractions.append(sum(g in corpus_grams for g in grams) / len(grams))
    summary = summaries["contamination"]
    section = REPORT.sections["contamination"](summary)
    bars = figure(section, "contamination-overlap")["data"][0]
    counted = dict(zip(bars["x"], bars["y"], strict=True))
    assert counted["0"] == sum(f == 0 for f in fractions) == 4
    assert counted[">0–10%"] == sum(0 < f <= 0.1 for f in fractions) == 1
    assert counted["90–100%"] == sum(f > 0.9 for f in fractions) == 1
    rows = dict(table(section, "Contamination").rows)
    assert rows["contaminated"] == "2" and rows["evaluation records"] == "6"
    assert rows["contaminated share"].startswith("33.3% (95% CI")
    (headline,) = REPORT.headlines["contamination"](summary)
    assert headline.value == pytest.approx(2 / 6) and headline.ci95[0] < 2 / 6 < headline.ci95[1]
    assert REPORT.findings["contamination"](summary, None, {}).risk == "high"


def test_every_kind_has_a_finding_a_trend_key_and_no_raw_value(summaries) -> None:
    shown = []
    for kind in KINDS:
        section = REPORT.sections[kind](summaries[kind])
        finding = REPORT.findings[kind](summaries[kind], None, {})
        headlines = REPORT.headlines[kind](summaries[kind])
        assert finding.kind == kind and finding.risk == "high"
        assert all(h.key in REPORT.trend for h in headlines)
        shown.append(json.dumps([asdict(section), finding.to_json()]))
    text = "\n".join(shown)
    for raw in RAW_VALUES:
        assert raw not in text, raw


def test_an_empty_corpus_reads_as_unknown() -> None:
    for kind in KINDS:
        assert REPORT.findings[kind]({"n_records": 0}, None, {}).risk == "unknown"
        REPORT.sections[kind]({"n_records": 0})  # draws without charts, never raises
