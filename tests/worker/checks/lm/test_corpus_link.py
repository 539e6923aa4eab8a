"""Model audits linked to a dataset audit of their training corpus (`corpus_audit`), through the
service: a tiny GPT-2 trained on canaries planted 1, 4 and 16 times, the dataset audit of that
corpus, then extraction and membership audits naming it. Every count is checked against a
brute-force scan of the corpus texts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.keys import create_key
from app.teams import create_team
from core.models import Audit, Shard
from tests.conftest import write_jsonl
from tests.flows import all_samples, upload
from worker.checks.lm.findings import corpus_contrast_words
from worker.demo import build_tokenizer, make_corpus, train_steps
from worker.finalize import finalize_audit
from worker.runner import run_shard

pytestmark = pytest.mark.slow
PREFIX, SUFFIX = 10, 12
COPIES = (1, 4, 16)
EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def planted(tiny_lm) -> dict:
    """Canaries planted 1, 4 and 16 times (one of the 16-times group holds an e-mail address
    near its start), and a GPT-2 trained on them for a fixed budget, saved under the model root."""
    corpus = make_corpus(24, 8, seed=5)
    groups = {c: corpus.members[i * 8 : (i + 1) * 8] for i, c in enumerate(COPIES)}
    groups[16][0] = f"Mail {EMAIL} now. " + groups[16][0]
    texts = [text for copies, members in groups.items() for text in members for _ in range(copies)]
    tokenizer = build_tokenizer(texts + corpus.nonmembers)
    model = train_steps(texts, tokenizer, steps=50, batch_size=32, seed=0)
    model_dir = tiny_lm.model_dir.parent / "corpus-linked-gpt2"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return {
        "corpus": texts,
        "members": [t for members in groups.values() for t in members],
        "nonmembers": corpus.nonmembers,
        "tokenizer": tokenizer,
        "model_dir": model_dir,
    }


def overlapping_count(needle: str, texts: list[str]) -> int:
    """Occurrences of `needle` in the texts, overlapping ones included (str.count skips them)."""
    total = 0
    for text in texts:
        start = text.find(needle)
        while start != -1:
            total += 1
            start = text.find(needle, start + 1)
    return total


def brute_bin(count: int) -> str:
    return {0: "0", 1: "1"}.get(count) or (
        "2-9" if count < 10 else "10-99" if count < 100 else "100+"
    )


def run_audit(stack, audit_id: str) -> None:
    with stack.db.session() as session:
        shard_ids = session.scalars(select(Shard.id).where(Shard.audit_id == audit_id)).all()
    assert [run_shard(stack.db, stack.settings, s).status for s in shard_ids] == [
        "succeeded"
    ] * len(shard_ids)
    assert finalize_audit(stack.db, stack.settings, audit_id).status == "succeeded"


def post(stack, body: dict, headers: dict | None = None):
    return stack.client.post("/v1/audits", headers=headers or stack.headers, json=body)


def dataset_audit(stack, tmp_path: Path, texts: list[str]) -> str:
    records = [{"id": f"c{i}", "text": t} for i, t in enumerate(texts)]
    dataset = upload(stack.client, stack.headers, write_jsonl(tmp_path / "corpus.jsonl", records))
    response = post(
        stack,
        {"model": None, "dataset": {"uri": dataset["uri"]}, "checks": [{"kind": "duplication"}]},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_extraction_and_membership_carry_measured_corpus_counts(
    make_stack, planted, tmp_path
) -> None:
    stack = make_stack(shard_size=64)
    corpus_id = dataset_audit(stack, tmp_path, planted["corpus"])
    run_audit(stack, corpus_id)
    (built,) = (stack.settings.data_dir / "indexes").glob("*/exact-index-*")
    built_at = (built / "BUILT.json").read_text()

    records = [{"id": f"m{i}", "text": t, "member": True} for i, t in enumerate(planted["members"])]
    records += [
        {"id": f"n{i}", "text": t, "member": False} for i, t in enumerate(planted["nonmembers"])
    ]
    dataset = upload(stack.client, stack.headers, write_jsonl(tmp_path / "eval.jsonl", records))
    model = {"uri": f"path:{planted['model_dir']}"}
    response = post(
        stack,
        {
            "model": model,
            "dataset": {"uri": dataset["uri"]},
            "checks": [
                {
                    "kind": "extraction",
                    "params": {
                        "prefix_tokens": PREFIX,
                        "suffix_tokens": SUFFIX,
                        "corpus_audit": corpus_id,
                    },
                }
            ],
        },
    )
    assert response.status_code == 202, response.text
    audit_id = response.json()["id"]
    run_audit(stack, audit_id)
    assert (built / "BUILT.json").read_text() == built_at  # opened as built, not rebuilt

    tokenizer, corpus = planted["tokenizer"], planted["corpus"]
    rows = {
        r["sample_id"]: r["values"]
        for r in all_samples(stack.client, stack.headers, audit_id, "extraction")
    }
    by_text = {r["text"]: rows[r["id"]] for r in records}
    expected_bins: dict[str, list[bool]] = {}
    for text, values in by_text.items():
        assert values["best_window_offset"] == 0  # one window per record: no stride
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prefix, suffix = ids[:PREFIX], ids[PREFIX : PREFIX + SUFFIX]
        window = tokenizer.decode(prefix + suffix)
        assert values["corpus_count"] == overlapping_count(window, corpus), text
        assert values["corpus_count_prefix"] == overlapping_count(tokenizer.decode(prefix), corpus)
        assert values["corpus_count_suffix"] == overlapping_count(tokenizer.decode(suffix), corpus)
        assert ("email" in values["pii"]) == (EMAIL in window), (text, values["pii"])
        expected_bins.setdefault(brute_bin(values["corpus_count"]), []).append(
            values["greedy_extracted"]
        )
    assert {brute_bin(by_text[t]["corpus_count"]) for t in planted["nonmembers"]} == {"0"}
    assert (
        any(EMAIL in t for t in by_text) and by_text[next(t for t in by_text if EMAIL in t)]["pii"]
    )

    audit = stack.client.get(f"/v1/audits/{audit_id}", headers=stack.headers).json()
    summary = audit["summary"]["extraction"]
    assert summary["duplicates_source"] == "corpus_count"
    order = ["0", "1", "2-9", "10-99", "100+"]
    assert summary["duplicates_bins"] == [b for b in order if b in expected_bins]
    for label, extracted in expected_bins.items():
        group = summary["by_duplicates"][label]
        assert group["n"] == len(extracted)
        assert group["greedy_rate"] == sum(extracted) / len(extracted)
    repeated = [v["greedy_extracted"] for v in by_text.values() if v["corpus_count"] >= 10]
    once = [v["greedy_extracted"] for v in by_text.values() if v["corpus_count"] == 1]
    contrast = summary["corpus_contrast"]
    assert contrast["repeated"] == {"n": len(repeated), "extracted": sum(repeated)}
    assert contrast["once"] == {"n": len(once), "extracted": sum(once)}
    # Duplication drives extraction: with this budget no once-seen window comes back, so the
    # finding gives the counts rather than a ratio over a zero rate.
    assert sum(repeated) / len(repeated) > sum(once) / len(once)
    assert contrast["ratio"] is None and sum(once) == 0
    words = corpus_contrast_words(contrast)
    assert f"{sum(repeated)} of {len(repeated)} vs 0 of {len(once)}" in words, words
    print(f"\n{words}")
    assert corpus_id in str(audit["provenance"]["checks"])
    assert built.parent.name[:12] + "/" + built.name in audit["provenance"]["artefacts"]

    # Another host: no index here, so the membership audit rebuilds it from the corpus dataset.
    shutil.rmtree(built)
    response = post(
        stack,
        {
            "model": model,
            "dataset": {"uri": dataset["uri"]},
            "checks": [
                {
                    "kind": "membership",
                    "params": {"scores": ["loss"], "bootstrap": 0, "corpus_audit": corpus_id},
                }
            ],
        },
    )
    assert response.status_code == 202, response.text
    member_id = response.json()["id"]
    run_audit(stack, member_id)
    assert (built / "BUILT.json").is_file()
    rows = {
        r["sample_id"]: r["values"]
        for r in all_samples(stack.client, stack.headers, member_id, "membership")
    }
    for record in records:
        values = rows[record["id"]]
        assert values["corpus_count"] == overlapping_count(record["text"], corpus)
        assert ("email" in values["pii"]) == (EMAIL in record["text"])
    by_count = stack.client.get(f"/v1/audits/{member_id}", headers=stack.headers).json()["summary"][
        "membership"
    ]["by_corpus_count"]
    assert {label: entry["n"] for label, entry in by_count.items()} == {
        "0": 8,
        "1": 8,
        "2-9": 8,
        "10-99": 8,
    }
    assert by_count["10-99"]["auroc"]["loss"] is not None and by_count["0"]["auroc"]["loss"] is None


def test_a_corpus_audit_that_cannot_feed_counts_is_refused(make_stack, planted, tmp_path) -> None:
    stack = make_stack(shard_size=64)
    corpus_id = dataset_audit(stack, tmp_path, planted["corpus"][:20])  # still queued
    records = [{"id": "a", "text": planted["members"][0]}]
    dataset = upload(stack.client, stack.headers, write_jsonl(tmp_path / "e.jsonl", records))
    model = {"uri": f"path:{planted['model_dir']}"}

    def refused(corpus_audit: str, headers: dict | None = None, uri: str | None = None) -> dict:
        response = post(
            stack,
            {
                "model": model,
                "dataset": {"uri": uri or dataset["uri"]},
                "checks": [{"kind": "extraction", "params": {"corpus_audit": corpus_audit}}],
            },
            headers,
        )
        assert response.status_code == 422, response.text
        return response.json()["error"]

    assert refused("0" * 32)["code"] == "unknown_audit"
    queued = refused(corpus_id)
    assert queued["code"] == "invalid_params" and "is queued" in queued["message"]
    with stack.db.session() as session:
        session.execute(update(Audit).where(Audit.id == corpus_id).values(status="failed"))
        session.commit()
    assert "is failed" in refused(corpus_id)["message"]
    with stack.db.session() as session:
        session.execute(update(Audit).where(Audit.id == corpus_id).values(status="succeeded"))
        session.commit()
    loss = post(
        stack, {"model": model, "dataset": {"uri": dataset["uri"]}, "checks": [{"kind": "loss"}]}
    ).json()["id"]
    with stack.db.session() as session:
        session.execute(update(Audit).where(Audit.id == loss).values(status="succeeded"))
        session.commit()
    not_dataset = refused(loss)
    assert (
        not_dataset["code"] == "invalid_params"
        and "not a `duplication` check" in not_dataset["message"]
    )

    with stack.db.session() as session:  # another team, granted the same model folder
        team = create_team(
            session, stack.settings, "team-b", model_folders=[str(planted["model_dir"])]
        )
        other = {"Authorization": f"Bearer {create_key(session, 'b', 'submit', team.id)}"}
    theirs = upload(stack.client, other, write_jsonl(tmp_path / "b.jsonl", records))
    assert refused(corpus_id, other, theirs["uri"])["code"] == "unknown_audit"
    accepted = post(
        stack,
        {
            "model": model,
            "dataset": {"uri": dataset["uri"]},
            "checks": [{"kind": "membership", "params": {"corpus_audit": corpus_id}}],
        },
    )
    assert accepted.status_code == 202, accepted.text


def test_the_contrast_is_a_ratio_only_over_rates_above_zero() -> None:
    contrast = {
        "threshold": 10,
        "repeated": {"n": 10, "extracted": 8},
        "once": {"n": 100, "extracted": 2},
    }
    assert "40× more often" in corpus_contrast_words({**contrast, "ratio": (8 / 10) / (2 / 100)})
    assert "8 of 10 vs 2 of 100" in corpus_contrast_words({**contrast, "ratio": 40.0})
    empty = {**contrast, "repeated": {"n": 0, "extracted": 0}, "ratio": None}
    assert "No window is repeated ≥ 10 times" in corpus_contrast_words(empty)
