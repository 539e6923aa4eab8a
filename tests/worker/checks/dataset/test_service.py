"""Dataset audits through the service: `"model": null`, the API, the runner's shards over a
whole-corpus count artefact, finalize, and the pages that show them."""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from difflib import SequenceMatcher

from sqlalchemy import select

from core.models import Shard
from tests.conftest import write_jsonl
from tests.flows import all_samples, session_cookie, submit, upload, wait_final
from worker.finalize import finalize_audit
from worker.runner import run_shard

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


def planted_corpus(seed: int = 3) -> list[dict]:
    """Unique sentences, plus planted groups of 2, 3 and 7 copies, each copy spelt a little
    differently (case, spacing, a full-width letter) so only normalisation joins them."""
    rng = random.Random(seed)
    records = [
        {"id": f"u{i}", "text": f"record {i}: " + " ".join(rng.choices(WORDS, k=12))}
        for i in range(40)
    ]
    variants = [
        lambda t: t,
        str.upper,
        lambda t: "  " + t.replace(" ", "\t "),
        lambda t: t.replace("a", "\uff41"),  # FULLWIDTH LATIN SMALL LETTER A: NFKC gives "a"
        lambda t: t.title(),
        lambda t: t + "\n",
        lambda t: t.swapcase(),
    ]
    for group, copies in enumerate((2, 3, 7)):
        text = f"planted group {group}: the same paragraph, copied"
        records += [{"id": f"g{group}-{c}", "text": variants[c](text)} for c in range(copies)]
    rng.shuffle(records)
    return records


def brute_counts(records: list[dict]) -> list[int]:
    """Each record's copies, by comparing canonical forms pairwise (independent of the code)."""
    canon = [" ".join(unicodedata.normalize("NFKC", r["text"]).casefold().split()) for r in records]
    return [sum(1 for other in canon if other == mine) for mine in canon]


def test_a_dataset_audit_without_a_model_counts_planted_duplicates(make_stack, tmp_path) -> None:
    records = planted_corpus()
    expected = brute_counts(records)
    assert sorted(Counter(expected).items()) == [(1, 40), (2, 2), (3, 3), (7, 7)]
    stack = make_stack(shard_size=10)  # six shards: each must see whole-corpus counts
    dataset = upload(stack.client, stack.headers, write_jsonl(tmp_path / "c.jsonl", records))
    accepted = submit(
        stack.client,
        stack.headers,
        None,
        dataset["uri"],
        [{"kind": "duplication", "params": {"top_groups": 2}}],
    )
    audit_id = accepted["id"]
    assert accepted["model_uri"] is None
    with stack.db.session() as session:
        shard_ids = session.scalars(select(Shard.id).where(Shard.audit_id == audit_id)).all()
    assert len(shard_ids) == 6
    outcomes = [run_shard(stack.db, stack.settings, shard_id) for shard_id in shard_ids]
    assert [o.status for o in outcomes] == ["succeeded"] * 6
    assert finalize_audit(stack.db, stack.settings, audit_id).status == "succeeded"

    audit = wait_final(stack.client, stack.headers, audit_id, timeout=10)
    assert audit["status"] == "succeeded" and audit["provenance"]["model_uri"] is None
    rows = all_samples(stack.client, stack.headers, audit_id, "duplication")
    by_id = {row["sample_id"]: row["values"] for row in rows}
    assert [by_id[r["id"]]["duplicates"] for r in records] == expected
    summary = audit["summary"]["duplication"]
    assert summary["n_records"] == 52 and summary["n_distinct_texts"] == 43
    assert summary["n_duplicate_records"] == 12
    assert summary["duplicate_share"] == 12 / 52
    assert summary["n_excess_copies"] == 9
    assert summary["histogram"] == {"copies": [1, 2, 3, 7], "records": [40, 2, 3, 7]}
    largest = summary["largest_groups"]
    assert [g["count"] for g in largest] == [7, 3]
    assert "planted group 2" in largest[0]["example"].lower()
    # One shard built the counts; all six opened the same artefact.
    with stack.db.session() as session:
        infos = session.scalars(select(Shard.info).where(Shard.audit_id == audit_id)).all()
    assert {tuple(info["artefacts"]) for info in infos} == {("normalised-counts", "exact-index")}
    for name in ("normalised-counts", "exact-index"):
        built = list((stack.settings.data_dir / "indexes").glob(f"*/{name}-*"))
        assert len(built) == 1 and not list(built[0].parent.glob(".*building*"))

    # The longest span each record shares with another, against a brute force over bytes.
    encoded = [r["text"].encode() for r in records]
    for n, record in enumerate(records):
        longest = max(
            SequenceMatcher(None, encoded[n], other, autojunk=False)
            .find_longest_match(0, len(encoded[n]), 0, len(other))
            .size
            for m, other in enumerate(encoded)
            if m != n
        )
        assert by_id[record["id"]]["span_bytes"] == longest, record
    corpus = audit["summary"]["duplication"]["corpus"]
    assert corpus["tokenizer"].startswith("SmolLM2") and corpus["n_bytes"] > 0
    assert corpus["top_spans"] and corpus["top_spans"][0]["count"] >= 2

    # Most duplicated first in the records table.
    first = stack.client.get(
        f"/v1/audits/{audit_id}/samples",
        headers=stack.headers,
        params={"check": "duplication", "order_by": "score", "desc": True, "limit": 7},
    ).json()["data"]
    assert {row["sample_id"] for row in first} == {f"g2-{c}" for c in range(7)}

    # The audit page, the list and the export render an audit without a model.
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit_id}")
    assert page.status_code == 200, page.text
    assert "no model" in page.text and "Records by copies of their text" in page.text
    listing = stack.client.get("/audits")
    assert listing.status_code == 200 and audit_id[:8] in listing.text
    assert "data-no-model" in listing.text
    listed = stack.client.get("/v1/audits", headers=stack.headers).json()
    assert [a["model_uri"] for a in listed["data"]] == [None]
    export = stack.client.get(f"/v1/audits/{audit_id}/report.html", headers=stack.headers)
    assert export.status_code == 200 and "no model" in export.text


def test_a_model_free_kind_also_runs_with_a_model(make_stack, tiny_lm, tmp_path) -> None:
    records = planted_corpus(seed=5)
    stack = make_stack(shard_size=64)
    dataset = upload(stack.client, stack.headers, write_jsonl(tmp_path / "c.jsonl", records))
    audit_id = submit(
        stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"], [{"kind": "duplication"}]
    )["id"]
    with stack.db.session() as session:
        (shard_id,) = session.scalars(select(Shard.id).where(Shard.audit_id == audit_id)).all()
    assert run_shard(stack.db, stack.settings, shard_id).status == "succeeded"
    assert finalize_audit(stack.db, stack.settings, audit_id).status == "succeeded"
    audit = stack.client.get(f"/v1/audits/{audit_id}", headers=stack.headers).json()
    assert audit["summary"]["duplication"]["n_duplicate_records"] == 12
    assert audit["model_uri"] == f"path:{tiny_lm.model_dir}"


def test_requests_a_dataset_audit_cannot_run_are_refused(make_stack, tiny_lm, tmp_path) -> None:
    stack = make_stack()
    with_text = upload(
        stack.client, stack.headers, write_jsonl(tmp_path / "t.jsonl", planted_corpus())
    )
    without_text = upload(
        stack.client,
        stack.headers,
        write_jsonl(tmp_path / "n.jsonl", [{"id": i, "body": "x"} for i in range(3)]),
    )

    def post(body: dict) -> object:
        return stack.client.post("/v1/audits", headers=stack.headers, json=body)

    needs_model = post(
        {"dataset": {"uri": with_text["uri"]}, "checks": [{"kind": "loss", "params": {}}]}
    )
    assert needs_model.status_code == 422, needs_model.text
    error = needs_model.json()["error"]
    assert error["code"] == "model_required" and "'loss' needs a model" in error["message"]
    mixed = post(
        {
            "model": None,
            "dataset": {"uri": with_text["uri"]},
            "checks": [{"kind": "duplication"}, {"kind": "extraction"}],
        }
    )
    assert mixed.status_code == 422 and mixed.json()["error"]["detail"]["kind"] == "extraction"
    no_text = post(
        {
            "model": None,
            "dataset": {"uri": without_text["uri"]},
            "checks": [{"kind": "duplication"}],
        }
    )
    assert no_text.status_code == 422
    assert no_text.json()["error"]["code"] == "missing_dataset_fields"
    bad_params = post(
        {
            "dataset": {"uri": with_text["uri"]},
            "checks": [{"kind": "duplication", "params": {"top_grups": 3}}],
        }
    )
    assert bad_params.status_code == 422 and bad_params.json()["error"]["code"] == "invalid_params"
    reference_only = post(
        {
            "reference_model": {"uri": f"path:{tiny_lm.model_dir}"},
            "dataset": {"uri": with_text["uri"]},
            "checks": [{"kind": "duplication"}],
        }
    )
    assert reference_only.status_code == 422
    assert stack.client.get("/v1/audits", headers=stack.headers).json()["count"] == 0
    described = stack.client.get("/v1/checks", headers=stack.headers).json()["data"]
    kinds = {c["kind"]: c for c in described}
    assert kinds["duplication"]["runs_without_model"] is True
    assert "none" in kinds["duplication"]["model_kinds"]
    assert kinds["loss"]["runs_without_model"] is False
