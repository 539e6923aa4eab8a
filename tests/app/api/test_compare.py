"""GET /v1/audits/{candidate}/compare/{baseline}: audits written straight to the database with
chosen values (no model run), so every threshold and change is known exactly."""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
import pytest

from app.keys import create_key
from app.teams import create_team
from tests.app.record_changes_data import EXPECTED, nonmembers, seed_pair, write_audit


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def pair(stack) -> tuple[str, str]:
    return seed_pair(stack.db)


def _get(stack, path: str, headers: dict | None = None, **params):
    return stack.client.get(path, headers=headers or stack.headers, params=params)


def _changes(body: dict) -> list[tuple[str, str, int]]:
    return [(row["kind"], row["metric"], row["sample_index"]) for row in body["data"]]


def test_changes_follow_each_audits_own_threshold_at_one_percent_fpr(stack, pair) -> None:
    candidate, baseline = pair
    response = _get(stack, f"/v1/audits/{candidate}/compare/{baseline}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["candidate_id"], body["baseline_id"]) == (candidate, baseline)
    assert sorted(_changes(body)) == sorted(EXPECTED)
    assert body["count"] == 10
    assert body["totals"] == {
        "newly_extractable": 1,
        "no_longer_extractable": 1,
        "newly_above_threshold": 4,
        "no_longer_above_threshold": 4,
    }
    loss = next(g for g in body["groups"] if g["metric"] == "loss")
    # 200 non-members: at most 2 strictly above, so t is the 3rd largest non-member score.
    assert loss["candidate_threshold"] == {"value": 197.0, "n_nonmembers": 200, "reason": None}
    assert loss["baseline_threshold"]["value"] == 394.0
    row = next(r for r in body["data"] if r["sample_index"] == 201 and r["metric"] == "loss")
    assert row == {
        "kind": "newly_above_threshold",
        "check": "membership",
        "metric": "loss",
        "sample_index": 201,
        "sample_id": "rec-0201",
        "member": True,
        "candidate_value": 197.5,
        "baseline_value": 394.0,  # equal to the baseline's threshold: not above it
        "candidate_threshold": 197.0,
        "baseline_threshold": 394.0,
    }
    # The other way round, every change turns over.
    reverse = _get(stack, f"/v1/audits/{baseline}/compare/{candidate}").json()
    flipped = {
        "newly_extractable": "no_longer_extractable",
        "no_longer_extractable": "newly_extractable",
        "newly_above_threshold": "no_longer_above_threshold",
        "no_longer_above_threshold": "newly_above_threshold",
    }
    assert sorted(_changes(reverse)) == sorted((flipped[k], m, i) for k, m, i in EXPECTED)


def test_filters_and_pages(stack, pair) -> None:
    candidate, baseline = pair
    path = f"/v1/audits/{candidate}/compare/{baseline}"
    whole = _changes(_get(stack, path).json())
    assert whole == EXPECTED  # kind, then metric, then sample_index
    pages = [_get(stack, path, limit=4, offset=offset).json() for offset in (0, 4, 8)]
    assert [len(p["data"]) for p in pages] == [4, 4, 2]
    assert all(p["count"] == 10 for p in pages)
    assert [change for p in pages for change in _changes(p)] == whole
    only = _get(stack, path, kind="newly_above_threshold", metric="zlib").json()
    assert (_changes(only), only["count"]) == ([("newly_above_threshold", "zlib", 201)], 1)
    extraction = _get(stack, path, check="extraction").json()
    assert [c[0] for c in _changes(extraction)] == ["newly_extractable", "no_longer_extractable"]
    for bad in ({"kind": "newly_gone"}, {"check": "loss"}, {"metric": "ref"}):
        refused = _get(stack, path, **bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_filter"
    assert _get(stack, path, limit=0).status_code == 422


def test_too_few_nonmembers_says_why_the_threshold_is_not_computed(stack) -> None:
    scores = {i: (float(i), False) for i in range(99)} | {99: (500.0, True)}
    candidate = write_audit(stack.db, extracted={99: True}, scores=scores)
    baseline = write_audit(stack.db, extracted={}, scores=scores)
    body = _get(stack, f"/v1/audits/{candidate}/compare/{baseline}").json()
    assert _changes(body) == [("newly_extractable", "greedy_extracted", 99)]
    membership = [g for g in body["groups"] if g["check"] == "membership"]
    assert membership and not any(g["computed"] for g in membership)
    assert "99 scored non-members" in membership[0]["reason"]
    assert "at least 100" in membership[0]["reason"]
    assert body["totals"]["newly_above_threshold"] == 0


def test_another_teams_audit_is_as_missing_as_none(stack, pair) -> None:
    candidate, baseline = pair
    with stack.db.session() as session:
        team = create_team(session, stack.settings, "other")
        other_key = create_key(session, "other-read", "read", team.id)
        team_id = team.id
    own = write_audit(stack.db, extracted={}, scores=nonmembers(1), team_id=team_id)
    theirs = {"Authorization": f"Bearer {other_key}"}
    for path in (
        f"/v1/audits/{candidate}/compare/{baseline}",
        f"/v1/audits/{own}/compare/{baseline}",  # its own candidate, another team's baseline
        f"/v1/audits/{own}/compare/{baseline}/changes.csv",
        f"/v1/audits/{own}/compare/{baseline}/changes.parquet",
    ):
        response = _get(stack, path, headers=theirs)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == {
            "code": "not_found",
            "message": f"no audit {path.split('/')[3] if own not in path else baseline!r}",
            "detail": None,
        }
    missing = _get(stack, f"/v1/audits/{own}/compare/{'0' * 32}", headers=theirs).json()
    assert missing["error"]["message"] == f"no audit {'0' * 32!r}"
    assert _get(stack, f"/v1/audits/{own}/compare/{own}", headers=theirs).status_code == 200


def test_refuses_other_datasets_and_unfinished_audits(stack, pair) -> None:
    candidate, _baseline = pair
    cases = {
        write_audit(stack.db, extracted={}, scores=nonmembers(1), sha="b" * 64): (
            422,
            "different_datasets",
        ),
        write_audit(stack.db, extracted={}, scores=nonmembers(1), status="running"): (
            409,
            "audit_not_finished",
        ),
        write_audit(stack.db, extracted={}, scores=nonmembers(1), status="cancelled"): (
            409,
            "audit_not_succeeded",
        ),
    }
    for other, (status, code) in cases.items():
        for path in (f"{candidate}/compare/{other}", f"{other}/compare/{candidate}"):
            response = _get(stack, f"/v1/audits/{path}")
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    unauthenticated = stack.client.get(f"/v1/audits/{candidate}/compare/{candidate}")
    assert unauthenticated.status_code == 401


def test_csv_and_parquet_hold_the_pages_rows(stack, pair) -> None:
    candidate, baseline = pair
    path = f"/v1/audits/{candidate}/compare/{baseline}"
    rows = _get(stack, path).json()["data"]
    as_csv = _get(stack, f"{path}/changes.csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"] == (
        f'attachment; filename="changes-{candidate}-vs-{baseline}.csv"'
    )
    read = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["kind"], r["metric"], int(r["sample_index"])) for r in read] == EXPECTED
    assert [float(r["candidate_value"]) for r in read] == [r["candidate_value"] for r in rows]
    as_parquet = _get(stack, f"{path}/changes.parquet")
    assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert as_parquet.headers["content-disposition"].endswith(f'{baseline}.parquet"')
    table = pq.read_table(io.BytesIO(as_parquet.content)).to_pylist()
    assert table == rows
    filtered = _get(stack, f"{path}/changes.parquet", kind="no_longer_extractable")
    assert [r["sample_index"] for r in pq.read_table(io.BytesIO(filtered.content)).to_pylist()] == [
        7
    ]


@pytest.mark.postgres
def test_the_same_changes_on_postgres(make_stack, postgres_url) -> None:
    """PostgreSQL reads the JSON fallback (minkpp_0.2) and booleans its own way."""
    stack = make_stack(database_url=postgres_url)
    candidate, baseline = seed_pair(stack.db)
    path = f"/v1/audits/{candidate}/compare/{baseline}"
    assert _changes(_get(stack, path).json()) == EXPECTED
    pages = [_get(stack, path, limit=3, offset=offset).json() for offset in (0, 3, 6, 9)]
    assert [change for p in pages for change in _changes(p)] == EXPECTED
    table = pq.read_table(io.BytesIO(_get(stack, f"{path}/changes.parquet").content))
    assert [(r["kind"], r["metric"], r["sample_index"]) for r in table.to_pylist()] == EXPECTED
