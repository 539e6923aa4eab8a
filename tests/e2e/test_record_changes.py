"""Per-record changes between two versions of a tiny LM, audited by the real service and worker.

v1 memorizes canaries A and C, v2 canaries B and C (both trained here until greedy decoding
reproduces each of their canaries). Audited on one dataset (A, B and C labelled members, 100
never-trained non-members), v2 against v1 must list exactly B as newly extractable and A as no
longer so; the exports must hold the API's rows; the compare page must show them in Chromium.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served, serve
from tests.flows import upload, wait_final
from worker.demo import DemoArtifacts, build_tokenizer, make_corpus, train_memorizer

pytestmark = pytest.mark.slow
PLANTED = {"a": 6, "b": 6, "c": 4}  # canaries only v1 memorizes, only v2, and both
N_NONMEMBERS = 100  # the fewest that give a 1% FPR threshold
CHECKS = [
    {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
    {"kind": "membership", "params": {"scores": ["loss", "zlib"], "bootstrap": 20}},
]


@dataclass
class Versions:
    served: Served
    candidate: str  # v2's audit
    baseline: str  # v1's audit
    ids: dict[str, set[str]]  # group -> sample ids


def _train(root: Path) -> tuple[Path, Path, dict[str, set[str]]]:
    """Both versions saved under root/models, and the dataset every audit reads."""
    corpus = make_corpus(sum(PLANTED.values()), N_NONMEMBERS, seed=7)
    texts, start = {}, 0
    for group, n in PLANTED.items():
        texts[group] = corpus.members[start : start + n]
        start += n
    tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
    for version, groups in (("v1", ("a", "c")), ("v2", ("b", "c"))):
        model = train_memorizer([t for g in groups for t in texts[g]], tokenizer, seed=0)
        model.save_pretrained(root / "models" / version)
        tokenizer.save_pretrained(root / "models" / version)
    records = [
        {"id": f"{group}-{i}", "text": text, "member": True}
        for group in PLANTED
        for i, text in enumerate(texts[group])
    ]
    records += [
        {"id": f"n-{i}", "text": text, "member": False} for i, text in enumerate(corpus.nonmembers)
    ]
    dataset = root / "canaries.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    ids = {group: {f"{group}-{i}" for i in range(n)} for group, n in PLANTED.items()}
    ids["n"] = {f"n-{i}" for i in range(N_NONMEMBERS)}
    return root / "models", dataset, ids


@pytest.fixture(scope="module")
def versions(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts
) -> Iterator[Versions]:
    root = tmp_path_factory.mktemp("record_changes")
    models, dataset, ids = _train(root)
    (root / "service").mkdir()
    with serve(root / "service", tiny_lm, model_roots=str(models)) as served:
        uri = upload(served.client, served.headers, dataset)["uri"]
        audited = {}
        for version in ("v1", "v2"):
            body = {
                "model": {"uri": f"path:{models / version}"},
                "dataset": {"uri": uri},
                "checks": CHECKS,
                "labels": {"model_family": "canary-lm", "model_version": version},
            }
            response = served.client.post("/v1/audits", headers=served.headers, json=body)
            assert response.status_code == 202, response.text
            audited[version] = response.json()["id"]
        for audit_id in audited.values():
            audit = wait_final(served.client, served.headers, audit_id)
            assert audit["status"] == "succeeded", audit
        yield Versions(served, audited["v2"], audited["v1"], ids)


def _all_changes(versions: Versions, **filters: str) -> list[dict]:
    """Every change, paged through 5 at a time as a client would."""
    path = f"/v1/audits/{versions.candidate}/compare/{versions.baseline}"
    found, offset = [], 0
    while True:
        response = versions.served.client.get(
            path, headers=versions.served.headers, params={**filters, "limit": 5, "offset": offset}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["data"]
        offset += 5
        if offset >= body["count"]:
            assert len(found) == body["count"]
            return found


def _ids(rows: list[dict], kind: str, metric: str) -> set[str]:
    return {r["sample_id"] for r in rows if r["kind"] == kind and r["metric"] == metric}


def test_the_planted_canaries_that_changed_are_listed_exactly(versions: Versions) -> None:
    rows = _all_changes(versions)
    a, b, c, n = (versions.ids[g] for g in "abcn")
    assert _ids(rows, "newly_extractable", "greedy_extracted") == b
    assert _ids(rows, "no_longer_extractable", "greedy_extracted") == a
    for metric in ("loss", "zlib"):
        newly = _ids(rows, "newly_above_threshold", metric)
        gone = _ids(rows, "no_longer_above_threshold", metric)
        assert newly - n == b and gone - n == a, metric
        # Each audit's threshold lets at most ⌊100/100⌋ = 1 of its non-members above it.
        assert len(newly & n) <= 1 and len(gone & n) <= 1, metric
        assert not (newly | gone) & c
    body = versions.served.client.get(
        f"/v1/audits/{versions.candidate}/compare/{versions.baseline}",
        headers=versions.served.headers,
    ).json()
    assert body["totals"]["newly_extractable"] == len(b)
    assert body["totals"]["no_longer_extractable"] == len(a)
    for group in body["groups"]:
        assert group["computed"], group
        if group["check"] == "membership":
            assert group["candidate_threshold"]["n_nonmembers"] == N_NONMEMBERS


def test_csv_and_parquet_exports_hold_the_same_rows(versions: Versions) -> None:
    rows = _all_changes(versions)
    path = f"/v1/audits/{versions.candidate}/compare/{versions.baseline}/changes"
    client, headers = versions.served.client, versions.served.headers
    as_csv = client.get(f"{path}.csv", headers=headers)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    read = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["kind"], r["metric"], int(r["sample_index"]), r["sample_id"]) for r in read] == [
        (r["kind"], r["metric"], r["sample_index"], r["sample_id"]) for r in rows
    ]
    assert [float(r["candidate_value"]) for r in read] == [r["candidate_value"] for r in rows]
    as_parquet = client.get(f"{path}.parquet", headers=headers)
    assert as_parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(as_parquet.content)).to_pylist() == rows


def test_the_compare_page_in_chromium(versions: Versions, browser) -> None:
    served = versions.served
    watched = Watched(browser, 1280)
    page = watched.page
    try:
        page.goto(f"{served.base_url}/audits/{versions.candidate}")
        page.fill("input[name=key]", served.key)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/audits/{versions.candidate}")
        # The report offers the other audit of the same dataset as a baseline.
        page.select_option("form[data-compare-records] select", versions.baseline)
        page.click("form[data-compare-records] button[type=submit]")
        page.wait_for_url(f"**/audits/{versions.candidate}/compare/{versions.baseline}")
        page.wait_for_function("() => document.querySelector('.chart')?.dataset.rendered")
        totals = page.eval_on_selector_all(
            "[data-total]",
            "els => Object.fromEntries(els.map(e => "
            "[e.dataset.total, e.querySelector('.metric-value').textContent]))",
        )
        assert totals["newly_extractable"] == str(PLANTED["b"])
        assert totals["no_longer_extractable"] == str(PLANTED["a"])
        page.select_option("select[name=kind]", "newly_extractable")
        page.click("form[aria-label='Filter changes'] button[type=submit]")
        page.wait_for_url("**kind=newly_extractable**")
        shown = page.eval_on_selector_all(
            "tr[data-change] [data-sample-id]", "els => els.map(e => e.textContent)"
        )
        assert set(shown) == versions.ids["b"] and len(shown) == PLANTED["b"]
        assert page.get_attribute("[data-export=csv]", "href").endswith(
            "changes.csv?kind=newly_extractable"
        )
        watched.shot("record-changes")
        assert not watched.errors, watched.errors
        assert watched.hosts == {"127.0.0.1"}
    finally:
        watched.close()
