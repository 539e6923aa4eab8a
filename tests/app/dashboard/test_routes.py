"""Dashboard pages and the report API over seeded audits in every state (SQLite, no model run)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, update

from app.keys import create_key
from bench.report_data import seed_audit
from core.models import SampleResult
from tests.flows import session_cookie, sign_in

PAGES = [
    "/audits",
    "/audits/{id}",
    "/models?family=mlflow:models:/support-bot",
    "/compare?a={id}&b={id}",
]


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def seeded(stack) -> dict[str, str]:
    db = stack.db
    return {
        "v1": seed_audit(db, 300, strength=0.6, created_offset_s=300, seed=1),
        "v2": seed_audit(
            db, 300, model_uri="mlflow:models:/support-bot/2", strength=0.2, created_offset_s=200
        ),
        "failed": seed_audit(
            db,
            10,
            model_uri="path:/models/other",
            status="failed",
            error="line 37: field 'text' is missing",
            created_offset_s=100,
        ),
        "cancelled": seed_audit(db, 10, model_uri="path:/models/other", status="cancelled"),
    }


def _key(stack, scope: str = "read") -> str:
    with stack.db.session() as session:
        return create_key(session, f"dash-{scope}", scope)


def _cookie(stack, scope: str = "read") -> dict[str, str]:
    stack.client.cookies.clear()
    return session_cookie(stack.client, _key(stack, scope))


def _get(stack, path: str, cookies: dict[str, str] | None = None):
    stack.client.cookies.clear()
    for name, value in (cookies or {}).items():
        stack.client.cookies.set(name, value)
    return stack.client.get(path, follow_redirects=False)


def test_without_a_key_only_the_login_page_is_served(stack, seeded) -> None:
    for path in PAGES:
        response = _get(stack, path.format(id=seeded["v1"]))
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    assert _get(stack, "/login").status_code == 200
    wrong = sign_in(stack.client, "ma_wrong")
    assert wrong.status_code == 401 and "not valid" in wrong.text
    api = stack.client.get(f"/v1/audits/{seeded['v1']}/report.html")
    assert api.status_code == 401


def test_login_with_a_read_key_sets_an_http_only_cookie_and_returns(stack, seeded) -> None:
    stack.client.cookies.clear()
    key = _key(stack)
    response = sign_in(stack.client, key, f"/audits/{seeded['v1']}")
    assert response.status_code == 303 and response.headers["location"] == f"/audits/{seeded['v1']}"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert key not in cookie  # the cookie holds a session id, never the key
    for offsite in ["//evil.example", "/\\evil.example", "https://evil.example", "/\t/evil"]:
        assert sign_in(stack.client, key, offsite).headers["location"] == "/audits", offsite


def test_every_page_renders_with_security_headers(stack, seeded) -> None:
    cookies = _cookie(stack)
    for path in PAGES:
        response = _get(stack, path.format(id=seeded["v1"]), cookies)
        assert response.status_code == 200, (path, response.text[:500])
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-eval" not in policy
        assert not re.search(r"""(src|href)=["']https?://""", response.text), path


def test_the_list_filters_and_pages(stack, seeded) -> None:
    cookies = _cookie(stack)
    page = _get(stack, "/audits", cookies).text
    assert all(audit_id in page for audit_id in seeded.values())
    failed = _get(stack, "/audits?status=failed", cookies).text
    assert seeded["failed"] in failed and seeded["v1"] not in failed
    family = _get(stack, "/audits?family=mlflow:models:/support-bot", cookies).text
    assert seeded["v1"] in family and seeded["failed"] not in family
    assert "Greedy extraction" in family and "Best membership AUROC" in family
    seed_audit(stack.db, 2, model_uri="path:/models/labelled", labels={"team": "privacy"})
    labelled = _get(stack, "/audits?label=team:privacy", cookies).text
    assert "path:/models/labelled" in labelled and seeded["v1"] not in labelled
    bad = _get(stack, "/audits?label=nocolon", cookies)
    assert bad.status_code == 200 and "name:value" in bad.text
    for index in range(25):
        seed_audit(stack.db, 1, model_uri=f"path:/models/m{index}")
    first, second = (
        _get(stack, "/audits", cookies).text,
        _get(stack, "/audits?page=2", cookies).text,
    )
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    # 30 audits, 25 a page: the pages split them, each audit on exactly one page.
    on_first = set(re.findall(r'<tr data-audit="([0-9a-f]{32})"', first))
    on_second = set(re.findall(r'<tr data-audit="([0-9a-f]{32})"', second))
    assert len(on_first) == 25 and len(on_second) == 5 and not on_first & on_second


def test_failed_and_cancelled_audits_say_so(stack, seeded) -> None:
    cookies = _cookie(stack)
    failed = _get(stack, f"/audits/{seeded['failed']}", cookies).text
    assert "This audit failed" in failed and "line 37: field" in failed
    cancelled = _get(stack, f"/audits/{seeded['cancelled']}", cookies).text
    assert "This audit was cancelled" in cancelled
    missing = _get(stack, "/audits/nope", cookies)
    assert missing.status_code == 404


def test_the_report_has_cards_charts_and_provenance(stack, seeded) -> None:
    page = _get(stack, f"/audits/{seeded['v2']}", _cookie(stack)).text
    for chart in [
        "extraction-rate-topk40_T1",
        "extraction-groups-topk40_T1",
        "extraction-pz-topk40_T1",
        "membership-roc",
        "membership-dist-minkpp_0_2",
    ]:
        assert f'id="{chart}"' in page, chart
    assert 'data-headline="extraction.all.greedy_rate"' in page and "95% CI" in page
    assert "Dataset sha256" in page and "0" * 64 in page
    assert f"/compare?a={seeded['v1']}&b={seeded['v2']}" in page  # the previous version


def test_model_page_trends_and_compare_says_better_or_worse(stack, seeded) -> None:
    cookies = _cookie(stack)
    model = _get(stack, "/models?family=mlflow:models:/support-bot", cookies).text
    assert 'id="trend"' in model and seeded["v1"] in model and seeded["v2"] in model
    compare = _get(stack, f"/compare?a={seeded['v1']}&b={seeded['v2']}", cookies).text
    row = re.search(r'data-delta="extraction.members.greedy_rate".*?</tr>', compare, re.S).group(0)
    assert "memorizes less" in row  # v2 was seeded with a weaker memorization strength
    assert 'id="compare-roc"' in compare and 'id="compare-rate-0"' in compare
    assert _get(stack, "/compare?a=nope&b=nope", cookies).status_code == 404


def test_report_html_is_one_self_contained_file(stack, seeded) -> None:
    response = stack.client.get(f"/v1/audits/{seeded['v1']}/report.html", headers=stack.headers)
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    html = response.text
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    assert not re.search(r"""(src|href)=["']""", markup)  # nothing loaded from anywhere
    assert "Plotly" in html and html.count('class="chart"') >= 5
    assert "Most memorized records" in html and 'class="tok r1"' in html


def test_records_sort_filter_and_expand_through_the_api(stack, seeded) -> None:
    base = f"/v1/audits/{seeded['v1']}/samples"
    page = stack.client.get(
        base,
        headers=stack.headers,
        params={"check": "membership", "order_by": "score", "desc": True, "limit": 50},
    ).json()
    scores = [row["score"] for row in page["data"]]
    assert page["count"] == 300 and scores == sorted(scores, reverse=True)
    assert all(row["score"] == row["values"]["minkpp_0.2"] for row in page["data"])
    members = stack.client.get(
        base, headers=stack.headers, params={"check": "extraction", "member": False}
    ).json()
    assert members["count"] == 150
    assert all(row["values"]["member"] is False for row in members["data"])
    found = stack.client.get(
        base, headers=stack.headers, params={"check": "extraction", "q": "rec-000012"}
    ).json()
    assert found["count"] == 10
    assert sorted(row["sample_id"] for row in found["data"]) == [
        f"rec-{index:07d}" for index in range(120, 130)
    ]
    past_the_end = stack.client.get(
        base, headers=stack.headers, params={"check": "extraction", "q": "rec-", "offset": 500}
    ).json()
    assert past_the_end == {"data": [], "count": 300}
    wildcard = stack.client.get(
        base, headers=stack.headers, params={"check": "extraction", "q": "%"}
    ).json()
    assert wildcard["count"] == 0  # LIKE wildcards are escaped
    record = stack.client.get(f"{base}/4", headers=stack.headers).json()
    extraction = next(c for c in record["checks"] if c["check"] == "extraction")
    assert len(extraction["detail"]["tokens"]) == len(extraction["detail"]["ranks"]) == 20
    assert "detail" not in page["data"][0]
    assert stack.client.get(f"{base}/999999", headers=stack.headers).status_code == 404


def test_a_search_takes_percent_underscore_and_backslash_literally(stack) -> None:
    audit_id = seed_audit(stack.db, 12)
    renamed = {3: "promo-50%_off", 4: "promo-50xyoff", 5: "dir\\file_1", 6: "dir\\fileX1"}
    with stack.db.session() as session:
        for index, sample_id in renamed.items():
            session.execute(
                update(SampleResult)
                .where(SampleResult.audit_id == audit_id, SampleResult.sample_index == index)
                .values(sample_id=sample_id)
            )

    def found(term: str) -> list[str]:
        page = stack.client.get(
            f"/v1/audits/{audit_id}/samples",
            headers=stack.headers,
            params={"check": "extraction", "q": term},
        ).json()
        return sorted(row["sample_id"] for row in page["data"])

    assert found("50%_off") == ["promo-50%_off"]  # not promo-50xyoff: % and _ are no wildcards
    assert found("\\file_") == ["dir\\file_1"]
    assert found("%") == ["promo-50%_off"]
    assert len(found("_")) == 2


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({"check": "extraction", "order_by": "score", "desc": True}, "ix_sample_results_score"),
        (
            {"check": "membership", "order_by": "score", "desc": True, "member": True},
            "ix_sample_results_member_score",
        ),
        # membership's table columns are loss, zlib, mink_0.2, lowercase: zlib is slot 2
        ({"check": "membership", "order_by": "zlib", "offset": 100}, "ix_sample_results_sort_2"),
        (
            {"check": "extraction", "order_by": "log10_pz.topk40_T1", "desc": True},
            "ix_sample_results_sort_3",
        ),
        # a search gathers its matches from the narrow id index, and sorts only those
        ({"check": "extraction", "order_by": "score", "q": "rec-"}, "ix_sample_results_search"),
    ],
)
def test_table_pages_are_found_from_an_index_without_sorting(stack, params, index) -> None:
    """SQLite's plan for the page's keys: a scan of the named index and no sort step."""
    audit_id = seed_audit(stack.db, 200)
    statements: list[tuple[str, object]] = []
    engine = stack.client.app.state.db.engine

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = stack.client.get(
            f"/v1/audits/{audit_id}/samples", headers=stack.headers, params={"limit": 10, **params}
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 10
    statement, parameters = next((st, pa) for st, pa in statements if "AS sort_key" in st)
    with engine.connect() as connection:
        plan = " | ".join(
            row[-1]
            for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        )
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan or "q" in params, plan


def test_pages_take_a_bearer_key_too(stack, seeded) -> None:
    """Scripts and benches read pages with a key; a header is no ambient authority."""
    stack.client.cookies.clear()
    page = stack.client.get(f"/audits/{seeded['v1']}", headers=stack.headers)
    assert page.status_code == 200 and seeded["v1"] in page.text
    wrong = stack.client.get("/audits", headers={"Authorization": "Bearer ma_wrong"})
    assert "/login" in str(wrong.url)


def test_the_verdict_in_words_opens_the_report_and_the_audit_json(stack, seeded) -> None:
    page = _get(stack, f"/audits/{seeded['v1']}", _cookie(stack)).text
    top = page.index("data-findings")
    assert top < page.index('class="cards"') and top < page.index('id="section-extraction"')
    assert 'data-finding="extraction"' in page and 'data-finding="membership"' in page
    assert "can be extracted verbatim" in page and "High risk" in page
    audit = stack.client.get(f"/v1/audits/{seeded['v1']}", headers=stack.headers).json()
    findings = {found["kind"]: found for found in audit["findings"]}
    assert set(findings) == {"extraction", "membership"}
    assert findings["extraction"]["risk"] == "high"
    assert findings["extraction"]["text"] in page.replace("&#39;", "'")
    assert {"kind", "text", "risk", "control", "next_step"} == set(findings["membership"])
    failed = stack.client.get(f"/v1/audits/{seeded['failed']}", headers=stack.headers).json()
    assert failed["findings"] == []  # no summary, nothing to say
    export = stack.client.get(f"/v1/audits/{seeded['v1']}/report.html", headers=stack.headers)
    assert 'data-finding="membership"' in export.text
