"""A dataset audit's report in a real headless Chromium: a generated corpus with planted exact
duplicates, a near-duplicate pair, PII of several types and an evaluation set, audited by the
served service's worker with all four dataset kinds; the charts are drawn, the tables hold the
planted counts, and no raw PII value reaches a page, a table or the JSON behind them."""

from __future__ import annotations

import pytest

from tests.conftest import write_jsonl
from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served, serve
from tests.flows import all_samples, upload, wait_final
from tests.worker.checks.dataset.report_corpus import RAW_VALUES, planted_corpus
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
CORPUS_CHARTS = (
    "duplication-histogram",
    "duplication-spans",
    "near_duplicates-clusters",
    "pii-types",
)


@pytest.fixture(scope="module")
def dataset_served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """The service with no model at all: a dataset audit needs none (no demo model trained)."""
    root = tmp_path_factory.mktemp("dataset-served")
    (root / "models" / "none").mkdir(parents=True)
    no_model = DemoArtifacts(root / "models" / "none", root / "unused.jsonl", 0, 0)
    with serve(root, no_model) as instance:
        yield instance


@pytest.fixture(scope="module")
def audits(dataset_served: Served) -> dict[str, dict]:
    served = dataset_served
    planted = planted_corpus()
    corpus = upload(
        served.client, served.headers, write_jsonl(served.data_root / "c.jsonl", planted.corpus)
    )["uri"]
    evaluation = upload(
        served.client,
        served.headers,
        write_jsonl(served.data_root / "e.jsonl", planted.evaluation),
    )["uri"]
    bodies = {
        "corpus": {
            "model": None,
            "dataset": {"uri": corpus},
            "checks": [{"kind": "duplication"}, {"kind": "near_duplicates"}, {"kind": "pii"}],
        },
        "evaluation": {
            "model": None,
            "dataset": {"uri": evaluation},
            "checks": [{"kind": "contamination", "params": {"corpus": corpus}}],
        },
    }
    ids = {}
    for name, body in bodies.items():
        response = served.client.post("/v1/audits", headers=served.headers, json=body)
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    finished = {name: wait_final(served.client, served.headers, i) for name, i in ids.items()}
    for audit in finished.values():
        assert audit["status"] == "succeeded", audit
    return finished


def assert_no_raw_value(text: str, where: str) -> None:
    for raw in RAW_VALUES:
        assert raw.lower() not in text.lower(), f"{raw!r} in {where}"


def signed_in(served: Served, browser) -> Watched:
    watched = Watched(browser, 1280)
    watched.page.goto(f"{served.base_url}/login")
    watched.page.fill("input[name=key]", served.key)
    watched.page.click("button[type=submit]")
    watched.page.wait_for_url("**/audits")
    return watched


def drawn(page, chart_id: str) -> dict:
    """A chart's drawn traces: x and y of each, read from the Plotly div."""
    return page.eval_on_selector(
        f"#{chart_id}", "e => ({n: e.data.length, x: e.data[0].x, y: e.data[0].y})"
    )


def section_rows(page, kind: str, caption: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"[data-table='{kind}'] table:has(caption:text-is('{caption}')) tbody tr",
        "rows => rows.map(r => [...r.children].map(c => c.textContent.trim()))",
    )


def test_the_dataset_report_in_chromium(dataset_served: Served, audits: dict, browser) -> None:
    served = dataset_served
    watched = signed_in(served, browser)
    page = watched.page
    corpus_id = audits["corpus"]["id"]
    page.goto(f"{served.base_url}/audits/{corpus_id}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(e => e.dataset.rendered)",
        timeout=30000,
    )
    for chart_id in CORPUS_CHARTS:
        assert drawn(page, chart_id)["n"] >= 1, chart_id
    copies = drawn(page, "duplication-histogram")
    assert dict(zip(copies["x"], copies["y"], strict=True)) == {"1": 32, "2": 2, "3": 3}
    clusters = drawn(page, "near_duplicates-clusters")
    assert dict(zip(clusters["x"], clusters["y"], strict=True)) == {"2": 2, "3": 1}
    types = drawn(page, "pii-types")
    assert dict(zip(types["x"], types["y"], strict=True))["email"] == 3

    groups = section_rows(page, "duplication", "Largest duplicate groups")
    assert [row[0] for row in groups] == ["3", "2"] and "j***@e***.org" in groups[0][1]
    recurring = section_rows(page, "pii", "Most recurring values")
    assert recurring[0] == ["email", "j***@e***.org", "3", "3"]
    assert section_rows(page, "pii", "Possible secrets")[0][1:] == ["1", "1", "1"]
    findings = page.locator("[data-findings] li[data-finding]")
    kinds = [findings.nth(i).get_attribute("data-finding") for i in range(findings.count())]
    assert kinds == ["duplication", "near_duplicates", "pii"]

    # The records table: the kinds' columns, most PII first, a record's stored values masked.
    page.wait_for_selector("tbody tr[data-sample]")
    page.click("[role=tab][data-check='pii']")
    page.wait_for_selector("th button[data-sort='pii_count']")
    page.wait_for_function(
        "() => document.querySelector(\"tbody tr[data-sample] td[data-key='pii_count']\")"
    )
    headers = page.eval_on_selector_all("thead th", "ths => ths.map(t => t.textContent.trim())")
    assert {"PII values", "possible secrets", "has PII"} <= {h.rstrip(" ▲▼") for h in headers}
    first = page.locator("tbody tr[data-sample]").first
    first.locator("button.expand").click()
    page.wait_for_selector("table[data-values='pii']")
    assert "***" in page.locator("table[data-values='pii']").inner_text()
    assert_no_raw_value(page.content(), "the corpus audit's page")

    evaluation_id = audits["evaluation"]["id"]
    page.goto(f"{served.base_url}/audits/{evaluation_id}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(e => e.dataset.rendered)",
        timeout=30000,
    )
    overlap = drawn(page, "contamination-overlap")
    counted = dict(zip(overlap["x"], overlap["y"], strict=True))
    assert (counted["0"], counted[">0–10%"], counted["90–100%"]) == (4, 1, 1)
    rows = dict(section_rows(page, "contamination", "Contamination"))
    assert rows["contaminated"] == "2" and rows["evaluation records"] == "6"
    assert "33.3%" in page.locator(".cards").inner_text()
    assert_no_raw_value(page.content(), "the evaluation audit's page")
    watched.shot("dataset-report")
    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()

    for name, audit in audits.items():
        assert_no_raw_value(str(audit), f"/v1/audits/{name}")
        export = served.client.get(f"/v1/audits/{audit['id']}/report.html", headers=served.headers)
        assert export.status_code == 200
        assert_no_raw_value(export.text, f"{name}'s report.html")
        for entry in audit["checks"]:
            rows = all_samples(served.client, served.headers, audit["id"], entry["kind"])
            assert_no_raw_value(str(rows), f"{name}'s {entry['kind']} rows")
