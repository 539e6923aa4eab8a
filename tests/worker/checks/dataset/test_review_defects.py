"""Defects a hostile review found in dataset audits, each kept as a test: a `path:` file
rewritten after submit must not become the index other audits of the original bytes read; the
stored group name must not give a short text back; a damaged artefact is built again; a local
corpus is indexed by position; the PII hash key differs per team."""

from __future__ import annotations

import hashlib
import json
from difflib import SequenceMatcher

from sqlalchemy import select

from app.keys import create_key
from app.teams import create_team
from core.inspection.datasets import Record
from core.models import Audit, Shard
from tests.conftest import write_jsonl
from tests.flows import all_samples, submit, upload
from worker.checks.dataset.display import pii_key
from worker.finalize import finalize_audit
from worker.local import audit_local
from worker.runner import run_shard

CHECKS = [{"kind": "duplication"}, {"kind": "near_duplicates"}]
HONEST = [{"text": "alpha beta gamma"}, {"text": "delta epsilon"}, {"text": "zeta eta"}]


def run_all(stack, audit_id: str) -> list[str]:
    with stack.db.session() as session:
        ids = session.scalars(select(Shard.id).where(Shard.audit_id == audit_id)).all()
    outcomes = [run_shard(stack.db, stack.settings, shard_id).status for shard_id in ids]
    finalize_audit(stack.db, stack.settings, audit_id)
    return outcomes


def submit_dataset(stack, headers, uri: str) -> str:
    return submit(stack.client, headers, None, uri, CHECKS)["id"]


def test_a_path_file_rewritten_after_submit_poisons_no_later_audit(make_stack, tiny_lm) -> None:
    stack = make_stack(shard_size=10)
    folder = tiny_lm.dataset_path.parent / "rewriter"
    folder.mkdir()
    with stack.db.session() as session:
        team = create_team(session, stack.settings, "rewriter", data_folders=[str(folder)])
        other = {"Authorization": f"Bearer {create_key(session, 'b', 'submit', team.id)}"}
    path = write_jsonl(folder / "c.jsonl", HONEST)
    first = submit_dataset(stack, other, f"path:{path}")
    write_jsonl(path, [*HONEST * 3, {"text": "ATTACKER TEXT one two three four five six"}])
    assert set(run_all(stack, first)) == {"failed"}
    with stack.db.session() as session:
        error = session.get(Audit, first).error
    assert "changed since the audit was submitted" in error
    assert not list((stack.settings.data_dir / "indexes").glob("*/*-*/"))  # nothing built

    # Another team audits the original bytes: its counts are its own corpus's.
    dataset = upload(stack.client, stack.headers, write_jsonl(folder.parent / "v.jsonl", HONEST))
    second = submit_dataset(stack, stack.headers, dataset["uri"])
    assert set(run_all(stack, second)) == {"succeeded"}
    rows = all_samples(stack.client, stack.headers, second, "duplication")
    assert [row["values"]["duplicates"] for row in rows] == [1, 1, 1]
    audit = stack.client.get(f"/v1/audits/{second}", headers=stack.headers).json()
    assert "ATTACKER" not in json.dumps(audit)


def test_a_damaged_artefact_is_built_again(make_stack, tiny_lm) -> None:
    stack = make_stack(shard_size=10)
    dataset = upload(
        stack.client, stack.headers, write_jsonl(tiny_lm.dataset_path.parent / "d.jsonl", HONEST)
    )
    first = submit_dataset(stack, stack.headers, dataset["uri"])
    assert set(run_all(stack, first)) == {"succeeded"}
    counts = next((stack.settings.data_dir / "indexes").glob("*/normalised-counts-*/counts.npy"))
    counts.unlink()
    again = submit_dataset(stack, stack.headers, dataset["uri"])
    assert set(run_all(stack, again)) == {"succeeded"}
    assert counts.is_file()
    rows = all_samples(stack.client, stack.headers, again, "duplication")
    assert [row["values"]["duplicates"] for row in rows] == [1, 1, 1]


def test_the_stored_group_does_not_give_a_short_text_back(tmp_path, monkeypatch) -> None:
    from core.config import get_settings

    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        card = "card: 4539 1488 0343 6467"
        texts = [card, card, "something else entirely"]
        records = [Record(i, i + 1, {"text": t}) for i, t in enumerate(texts)]
        found = audit_local(None, records, [{"kind": "duplication"}])["duplication"]
    finally:
        get_settings.cache_clear()
    group = found["samples"][0]["group"]
    normalised = card.casefold().encode()
    unkeyed = {
        hashlib.blake2b(normalised, digest_size=8).digest().hex(),
        int.from_bytes(hashlib.blake2b(normalised, digest_size=8).digest(), "little").__format__(
            "016x"
        ),
        hashlib.sha256(normalised).hexdigest()[:16],
        hashlib.md5(normalised).hexdigest()[:16],
    }
    assert group not in unkeyed and found["samples"][1]["group"] == group


def test_a_local_corpus_is_indexed_by_position(tmp_path, monkeypatch) -> None:
    from core.config import get_settings

    monkeypatch.setenv("MEMAUDIT_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    texts = ["one two three four five six", "alpha beta", "one two three four five six", "x y z"]
    records = [Record(i, i + 1, {"text": t}) for i, t in enumerate(texts)]
    try:
        found = audit_local(None, records[2:4][::-1], CHECKS)  # indexes 3, 2 at positions 0, 1
    finally:
        get_settings.cache_clear()
    assert [s["duplicates"] for s in found["duplication"]["samples"]] == [1, 1]
    first, second = (t.encode() for t in (texts[3], texts[2]))
    shared = SequenceMatcher(None, first, second, autojunk=False).find_longest_match()
    assert [s["span_bytes"] for s in found["duplication"]["samples"]] == [shared.size] * 2
    assert [s["cluster_size"] for s in found["near_duplicates"]["samples"]] == [1, 1]


def test_the_pii_hash_key_is_per_team() -> None:
    assert pii_key("s" * 40, "team-a") != pii_key("s" * 40, "team-b")
    assert pii_key("s" * 40, "team-a") == pii_key("s" * 40, "team-a")


def test_a_contamination_corpus_is_read_only_as_submitted(make_stack, tiny_lm) -> None:
    stack = make_stack(shard_size=10)
    folder = tiny_lm.dataset_path.parent
    words = "the quick brown fox jumps over the lazy dog while the cat sleeps near the door"
    corpus = write_jsonl(folder / "training.jsonl", [{"text": words}, {"text": "other text"}])
    evaluation = upload(
        stack.client, stack.headers, write_jsonl(folder / "eval.jsonl", [{"text": words}])
    )
    response = stack.client.post(
        "/v1/audits",
        headers=stack.headers,
        json={
            "model": None,
            "dataset": {"uri": evaluation["uri"]},
            "checks": [{"kind": "contamination", "params": {"corpus": f"path:{corpus}"}}],
        },
    )
    assert response.status_code == 202, response.text
    audit_id = response.json()["id"]
    with stack.db.session() as session:
        params = session.get(Audit, audit_id).checks[0]["params"]
    assert params["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    write_jsonl(corpus, [{"text": "nothing of the evaluation set"}])
    assert set(run_all(stack, audit_id)) == {"failed"}
    with stack.db.session() as session:
        assert "changed since the audit was submitted" in session.get(Audit, audit_id).error
