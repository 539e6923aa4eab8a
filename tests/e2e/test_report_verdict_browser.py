"""The verdict in words, the loss axis and an expanded record, in a real headless Chromium over
an audit a real worker produced (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served
from tests.flows import upload, wait_final
from worker.checks.lm.figures import LOSS_AXIS
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
# A record id that is markup, a script and an entity at once: it must show as these characters.
HOSTILE_ID = '<img src=x onerror="window.__pwned=1">pwned-<b>id</b>&amp;</td><script>1</script>'
RISK_WORDS = {"High risk", "Medium risk", "Low risk", "No risk found", "Risk not graded"}


@pytest.fixture(scope="module")
def audit(served: Served, tiny_lm: DemoArtifacts) -> dict:
    """The demo model over its canaries, one of them under a hostile id."""
    records = [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]
    records[0]["id"] = HOSTILE_ID
    path = served.data_root / "hostile.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    dataset = upload(served.client, served.headers, path)["uri"]
    body = {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": dataset},
        "checks": [
            {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
            {"kind": "membership", "params": {"bootstrap": 50}},
            {"kind": "loss", "params": {}},
        ],
    }
    response = served.client.post("/v1/audits", headers=served.headers, json=body)
    assert response.status_code == 202, response.text
    finished = wait_final(served.client, served.headers, response.json()["id"])
    assert finished["status"] == "succeeded", finished
    return finished


def test_the_verdict_loss_axis_and_an_expanded_record(served: Served, audit: dict, browser) -> None:
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{served.base_url}/login")
    page.fill("input[name=key]", served.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/audits")
    page.goto(f"{served.base_url}/audits/{audit['id']}")

    # The sentences come first: before the figures, the charts and the records.
    order = page.eval_on_selector(
        "main",
        """main => [...main.querySelectorAll('[data-findings], .cards, .report-section')]
            .map(e => e.matches('[data-findings]') ? 'findings' : e.className)""",
    )
    assert order[0] == "findings", order
    items = page.locator("[data-findings] li[data-finding]")
    kinds = [items.nth(i).get_attribute("data-finding") for i in range(items.count())]
    assert kinds == ["extraction", "membership", "loss"]
    by_kind = {finding["kind"]: finding for finding in audit["findings"]}
    for i, kind in enumerate(kinds):
        item = items.nth(i)
        badge = item.locator(".risk-badge").inner_text()
        assert badge in RISK_WORDS  # the risk is said in words, not only in colour
        assert item.get_attribute("data-risk") == by_kind[kind]["risk"]
        assert by_kind[kind]["text"] in item.inner_text()
    extraction = page.locator("li[data-finding='extraction']")
    # Every canary is memorised: the demo model reproduces all of them.
    members = audit["summary"]["extraction"]["members"]["n"]
    assert f"{members:,} of {members:,} training records (100.0%" in extraction.inner_text()
    assert extraction.locator(".risk-badge").inner_text() == "High risk"
    colours = page.eval_on_selector_all(
        "[data-findings] .risk-badge", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert len(set(colours)) >= 2  # the high-risk badge is not drawn like the others

    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(e => e.dataset.rendered)",
        timeout=30000,
    )
    loss_axis = page.eval_on_selector("#loss-hist", "e => e.layout.xaxis.title.text")
    assert loss_axis == LOSS_AXIS
    centres = page.eval_on_selector("#loss-hist", "e => e.data.flatMap(t => t.x)")
    assert min(centres) > 0  # loss in nats/token, not the negated log-likelihood
    score_axis = page.eval_on_selector("#membership-dist-loss", "e => e.layout.xaxis.title.text")
    assert score_axis.startswith("log-likelihood (−loss), nats/token")

    page.wait_for_selector("tbody tr[data-sample]")
    page.fill("input[name=q]", "pwned-")
    page.wait_for_function(
        "() => document.querySelectorAll('tbody tr[data-sample]').length === 1", timeout=10000
    )
    row = page.locator("tbody tr[data-sample]")
    assert row.locator("td.clip").text_content() == HOSTILE_ID
    row.locator("button.expand").click()
    page.wait_for_selector(".record-detail table.kv")
    detail = page.locator(".record-detail")
    assert detail.locator("tr[data-key='sample id'] td").text_content() == HOSTILE_ID
    values = detail.locator("table[data-values='extraction']")
    assert values.locator("tr[data-key='greedy_extracted'] > td").text_content() == "yes"
    assert values.locator("tr[data-key='match_prefix_len'] > td").text_content() == "16"
    ll = detail.locator("table[data-values='membership'] tr[data-key='loss'] > th")
    assert "log-likelihood" in ll.get_attribute("title")  # the `loss` score is ll(x)
    # A nested object is a table inside the cell, not a JSON string.
    nested = values.locator("tr[data-key='log10_pz'] > td > table.kv")
    assert nested.count() == 1 and "{" not in nested.text_content()
    assert detail.locator("table[data-values='membership'] tr[data-key='flags']").count() == 1
    stored = detail.locator("details[data-detail='extraction']")
    stored.locator("summary").click()
    # The table is drawn on the details' toggle event, which fires after the click returns.
    stored.locator("tr[data-key='ranks'] table.kv-list").wait_for(timeout=10000)
    assert stored.locator("tr[data-key='ranks'] table.kv-list td").count() == 16
    assert detail.locator("img, script, b").count() == 0  # nothing of the record ran as markup
    assert page.evaluate("window.__pwned") is None
    watched.shot("report-verdict")
    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()
