"""The record changes page over audits written with chosen values (SQLite, no model run)."""

from __future__ import annotations

import re

import pytest

from tests.app.record_changes_data import nonmembers, seed_pair, write_audit
from tests.flows import session_cookie


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def pair(stack) -> tuple[str, str]:
    return seed_pair(stack.db)


def _signed_in(stack) -> None:
    from app.keys import create_key

    with stack.db.session() as session:
        key = create_key(session, "page-read", "read")
    stack.client.cookies.clear()
    session_cookie(stack.client, key)


def test_the_page_lists_changes_with_totals_and_exports(stack, pair) -> None:
    candidate, baseline = pair
    _signed_in(stack)
    page = stack.client.get(f"/audits/{candidate}/compare/{baseline}")
    assert page.status_code == 200, page.text
    rows = re.findall(r'data-change="([a-z_]+)" data-sample-index="(\d+)"', page.text)
    assert rows == [
        ("newly_extractable", "5"),
        ("no_longer_extractable", "7"),
        *[("newly_above_threshold", "201")] * 4,
        *[("no_longer_above_threshold", "200")] * 4,
    ]
    totals = re.findall(
        r'data-total="([a-z_]+)">\s*<div class="metric-label">[^<]*</div>\s*'
        r'<div class="metric-value">(\d+)</div>',
        page.text,
    )
    assert dict(totals) == {
        "newly_extractable": "1",
        "no_longer_extractable": "1",
        "newly_above_threshold": "4",
        "no_longer_above_threshold": "4",
    }
    assert f"/v1/audits/{candidate}/compare/{baseline}/changes.csv" in page.text
    assert f"/v1/audits/{candidate}/compare/{baseline}/changes.parquet" in page.text
    # The exports the page links work with the browser's session alone.
    export = stack.client.get(f"/v1/audits/{candidate}/compare/{baseline}/changes.csv")
    assert export.status_code == 200 and export.text.count("\n") == 11
    filtered = stack.client.get(
        f"/audits/{candidate}/compare/{baseline}", params={"kind": "no_longer_extractable"}
    )
    assert re.findall(r'data-sample-index="(\d+)"', filtered.text) == ["7"]
    assert "changes.csv?kind=no_longer_extractable" in filtered.text


def test_the_report_offers_baselines_of_the_same_dataset(stack, pair) -> None:
    candidate, baseline = pair
    elsewhere = write_audit(stack.db, extracted={}, scores=nonmembers(1), sha="c" * 64)
    _signed_in(stack)
    report = stack.client.get(f"/audits/{candidate}")
    form = report.text.split("data-compare-records", 1)[1].split("</form>", 1)[0]
    assert f'value="{baseline}"' in form and elsewhere not in form
    chosen = stack.client.get(
        f"/audits/{candidate}/compare", params={"other": baseline}, follow_redirects=False
    )
    assert chosen.headers["location"] == f"/audits/{candidate}/compare/{baseline}"


def test_refusals_are_said_on_the_page(stack, pair) -> None:
    candidate, _baseline = pair
    elsewhere = write_audit(stack.db, extracted={}, scores=nonmembers(1), sha="c" * 64)
    stack.client.cookies.clear()
    signed_out = stack.client.get(
        f"/audits/{candidate}/compare/{elsewhere}", follow_redirects=False
    )
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/login")
    _signed_in(stack)
    refused = stack.client.get(f"/audits/{candidate}/compare/{elsewhere}")
    assert refused.status_code == 422 and "different datasets" in refused.text
    missing = stack.client.get(f"/audits/{candidate}/compare/{'0' * 32}")
    assert missing.status_code == 404
