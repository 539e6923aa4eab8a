"""The `approximate` kind's report and token view in a real headless Chromium, over an audit the
served worker ran on the demo model: the rate bars and per-metric histograms are drawn, and an
expanded record highlights the suffix tokens the generation reproduces."""

from __future__ import annotations

import pytest

from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served
from tests.flows import upload, wait_final
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
SUFFIX = 16


@pytest.fixture(scope="module")
def approximate_audit(served: Served, tiny_lm: DemoArtifacts) -> dict:
    dataset = upload(served.client, served.headers, tiny_lm.dataset_path)["uri"]
    body = {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": dataset},
        "checks": [
            {
                "kind": "approximate",
                "params": {"prefix_tokens": 10, "suffix_tokens": SUFFIX, "samples": 2},
            }
        ],
    }
    response = served.client.post("/v1/audits", headers=served.headers, json=body)
    assert response.status_code == 202, response.text
    audit = wait_final(served.client, served.headers, response.json()["id"], 300)
    assert audit["status"] == "succeeded", audit
    return audit


def test_approximate_report_in_chromium(served: Served, approximate_audit: dict, browser) -> None:
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{served.base_url}/audits")
    page.fill("input[name=key]", served.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/audits")
    page.goto(f"{served.base_url}/audits/{approximate_audit['id']}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(e => e.dataset.rendered)",
        timeout=30000,
    )
    ids = page.eval_on_selector_all(".chart", "els => els.map(e => e.id)")
    expected = {"approximate-rates", "approximate-hist-bleu", "approximate-hist-rouge_l"}
    assert expected <= set(ids), ids
    # One histogram per metric, with one drawn series per scheme.
    summary = approximate_audit["summary"]["approximate"]
    schemes = summary["schemes"]
    assert len(schemes) == 2
    for metric in summary["histograms"]:
        chart = f"#approximate-hist-{metric}"
        assert page.eval_on_selector(chart, "e => e.data.map(t => t.name)") == schemes
        assert page.locator(f"{chart} .bars").count() == len(schemes)
    assert "Approximate memorization" in page.inner_text("#section-approximate")
    page.wait_for_selector("tbody tr[data-sample]")
    page.locator("tbody tr[data-sample] button.expand").first.click()  # most memorized first
    page.wait_for_selector(".record-detail .approx-view .tokens .tok")
    views = page.locator(".record-detail .approx-view")
    assert views.count() == 2  # greedy and top-k 40
    greedy = page.locator(".record-detail .approx-view[data-scheme='greedy'] .tok")
    assert greedy.count() == SUFFIX
    hits = page.locator(".record-detail .approx-view[data-scheme='greedy'] .tok.hit")
    assert hits.count() == SUFFIX  # a memorized member comes back whole
    watched.shot("approximate-report")
    assert watched.errors == []
    watched.close()
