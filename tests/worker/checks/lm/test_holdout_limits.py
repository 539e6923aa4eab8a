"""The held-out scores (ReCaLL, Con-ReCall, DC-PDD) at their edges, on the canary model trained
here (context 128 tokens): a prefix budget past the context, ids that repeat, two reference
corpora in one process, a reference corpus over many batches, texts with no dataset file, and
the default (which holds nothing out), failures cached like selections."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import write_jsonl
from worker.checks.lm import prefix_work
from worker.checks.lm.holdout import HeldOut, HoldoutError, select_holdout, select_reference
from worker.demo import canary_text
from worker.local import LocalAccess, audit_records, audit_texts, load_local


def _rows(tiny_lm) -> list[dict]:
    return [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]


def test_the_prefix_is_cut_to_fit_the_model_context(tiny_lm, tmp_path) -> None:
    """Three shots of four canaries each pass the default 256-token budget and the model's
    128 positions: the prefix is cut to half the context, the text keeps the rest."""
    lm = load_local(tiny_lm.model_dir)
    rng = random.Random(9)
    long = [
        {"id": f"r{i}", "text": " ".join(canary_text(rng) for _ in range(4)), "member": i % 2 == 0}
        for i in range(16)
    ]
    path = write_jsonl(tmp_path / "long.jsonl", long)
    checks = [{"kind": "membership", "params": {"scores": ["loss", "recall"], "bootstrap": 0}}]
    result = audit_records(lm, path, checks)["membership"]
    holdout = result["summary"]["holdout"]
    assert "not_computed" not in holdout
    used = holdout["prefix_tokens_used"]
    assert 0 < used <= lm.max_tokens // 2 - len(lm.special_prefix) < holdout["prefix_tokens"]
    scored = [s for s in result["samples"] if not s.get("held_out")]
    assert all(isinstance(s["recall"], float) for s in scored)
    assert prefix_work.prefix_budget(lm, 16) == 16  # a budget within the context is kept


def test_a_context_with_no_room_for_a_prefix_is_said(tiny_lm, tmp_path) -> None:
    """A model of 2 positions: no prefix fits beside the text, so none runs past the context."""
    from transformers import AutoTokenizer

    from worker.demo import tiny_gpt2

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm.model_dir)
    model, _ = tiny_gpt2(tokenizer, seed=0, n_positions=2)
    model.save_pretrained(tmp_path / "short")
    tokenizer.save_pretrained(tmp_path / "short")
    lm = load_local(tmp_path / "short")
    assert prefix_work.prefix_budget(lm, 256) == 0
    checks = [{"kind": "membership", "params": {"scores": ["loss", "recall"], "bootstrap": 0}}]
    summary = audit_records(lm, tiny_lm.dataset_path, checks)["membership"]["summary"]
    assert "leaves no room for a prefix" in summary["scores"]["recall"]["not_computed"]
    assert summary["scores"]["loss"]["n_members"] == tiny_lm.n_members  # nothing held out


def test_repeated_ids_keep_members_out_of_the_nonmember_prefix(tiny_lm, tmp_path) -> None:
    """Members and non-members numbered 0, 1, ... each: held out by position, not by id."""
    lm = load_local(tiny_lm.model_dir)
    rows = _rows(tiny_lm)
    members = [r for r in rows if r["member"]]
    others = [r for r in rows if not r["member"]]
    renumbered = [{**r, "id": str(i)} for i, r in enumerate(others)] + [
        {**r, "id": str(i)} for i, r in enumerate(members)
    ]
    path = write_jsonl(tmp_path / "dup.jsonl", renumbered)
    held = select_holdout(path, 0.0, 3, 0)
    member_texts = {r["text"] for r in members}
    assert not member_texts & set(held.prefix_texts(False))
    assert set(held.prefix_texts(True)) <= member_texts
    checks = [{"kind": "membership", "params": {"scores": ["loss", "recall"], "bootstrap": 0}}]
    result = audit_records(lm, path, checks)["membership"]
    holdout = result["summary"]["holdout"]
    assert holdout["n_held_out"] == 6 and holdout["n_scored"] == len(rows) - 6
    names = holdout["prefix"]["members"] + holdout["prefix"]["nonmembers"]
    assert len(set(names)) == 6
    for name in holdout["prefix"]["members"]:
        index, sample_id = name.split(":")
        assert renumbered[int(index)]["member"] and renumbered[int(index)]["id"] == sample_id


def test_two_reference_corpora_never_share_frequencies(tiny_lm, tmp_path) -> None:
    lm = load_local(tiny_lm.model_dir)
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"alpha alpha alpha {i}"} for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"zulu quebec xray {i}"} for i in range(5)])
    held_a, held_b = select_reference(a, 3, 0, False), select_reference(b, 3, 0, False)
    assert (held_a.members, held_a.nonmembers) == (held_b.members, held_b.nonmembers)
    from_a = prefix_work._frequencies(lm, held_a)
    from_b = prefix_work._frequencies(lm, held_b)
    assert not (from_a == from_b).all()
    assert (from_b == prefix_work._count_frequencies(lm, held_b)).all()
    assert prefix_work._frequencies(lm, held_a) is from_a  # counted once per set and model


def test_the_reference_corpus_is_read_once_per_shard(tiny_lm, tmp_path, monkeypatch) -> None:
    lm = load_local(tiny_lm.model_dir)
    corpus = write_jsonl(
        tmp_path / "ref.jsonl", [{"text": canary_text(random.Random(i))} for i in range(6)]
    )
    opened: list[str] = []
    real_open = LocalAccess.open_dataset

    def counted(self, uri: str):  # type: ignore[no-untyped-def]
        opened.append(uri)
        return real_open(self, uri)

    monkeypatch.setattr(LocalAccess, "open_dataset", counted)
    params = {"bootstrap": 0, "reference_corpus": f"path:{corpus}", "scores": ["recall"]}
    checks = [{"kind": "membership", "params": params}]
    result = audit_records(lm, tiny_lm.dataset_path, checks, batch_size=8)["membership"]
    assert all(isinstance(s["recall"], float) for s in result["samples"])  # six batches
    assert opened == [f"path:{corpus}"]


def test_texts_hold_records_out_of_themselves(tiny_lm) -> None:
    lm = load_local(tiny_lm.model_dir)
    params = {"scores": ["recall", "con_recall", "dc_pdd"], "bootstrap": 0}
    result = audit_texts(lm, _rows(tiny_lm), [{"kind": "membership", "params": params}])
    summary = result["membership"]["summary"]
    assert summary["holdout"]["n_held_out"] == 6
    assert {"recall", "con_recall", "dc_pdd"} <= set(summary["scores"])


def test_the_default_holds_no_record_out(tiny_lm) -> None:
    """The held-out scores are opt-in: a default audit scores every record with every default
    score, as audits before them did, so its AUROCs compare with theirs."""
    lm = load_local(tiny_lm.model_dir)
    result = audit_records(lm, tiny_lm.dataset_path, [{"kind": "membership", "params": {}}])
    membership = result["membership"]
    assert "holdout" not in membership["summary"]
    assert not {"recall", "con_recall", "dc_pdd"} & set(membership["summary"]["scores"])
    assert not any(s.get("held_out") or "holdout_error" in s for s in membership["samples"])
    assert membership["summary"]["scores"]["loss"]["n_members"] == tiny_lm.n_members


def test_a_failed_selection_reads_the_file_once(tiny_lm, tmp_path, monkeypatch) -> None:
    """Too few labels: the failure is cached like a success, so later batches do not re-read
    the whole dataset file (or reference corpus) to fail again."""
    from worker.checks.lm import holdout

    rows = _rows(tiny_lm)
    few = write_jsonl(tmp_path / "few.jsonl", rows[:3] + rows[-6:])  # 3 members: none left
    tiny = write_jsonl(tmp_path / "tiny_ref.jsonl", [{"text": "one record"}])
    reads: list[object] = []
    real = holdout.iter_records

    def counted(path):  # type: ignore[no-untyped-def]
        reads.append(path)
        return real(path)

    monkeypatch.setattr(holdout, "iter_records", counted)
    for _ in range(3):
        with pytest.raises(HoldoutError, match="leaves none to score"):
            select_holdout(few, 0.0, 3, 0)
        with pytest.raises(HoldoutError, match="fewer than shots=3"):
            select_reference(tiny, 3, 0, False)
    assert reads == [few, tiny]


def test_roles_by_position() -> None:
    held = HeldOut(("4", "9", "2"), ("1", "7"), {}, shots=2)
    roles = {i: held.role(i) for i in range(10)}
    assert roles[4] == roles[9] == roles[1] == roles[7] == "prefix"
    assert roles[2] == "frequency" and roles[0] is None and held.role(None) is None
    assert HeldOut(("4",), ("1",), {}, shots=1, external=True).role(4) is None


def test_a_one_record_reference_corpus_is_the_reason_given(tiny_lm, tmp_path) -> None:
    """The summary says the actual first error (the corpus is too small), not a label shortfall
    of the audited dataset nor a vague fallback."""
    lm = load_local(tiny_lm.model_dir)
    corpus = write_jsonl(tmp_path / "one.jsonl", [{"text": "a single reference text"}])
    params = {"bootstrap": 0, "reference_corpus": f"path:{corpus}", "scores": ["loss", "recall"]}
    checks = [{"kind": "membership", "params": params}]
    summary = audit_records(lm, tiny_lm.dataset_path, checks)["membership"]["summary"]
    reason = summary["holdout"]["not_computed"]
    assert reason.startswith("the reference corpus has 1 non-member")
    assert "leaves none" not in reason
    assert summary["scores"]["recall"] == {"not_computed": reason}
    assert summary["scores"]["loss"]["n_members"] == tiny_lm.n_members


def test_a_prefix_goes_with_its_model(tiny_lm) -> None:
    """The prefix cache holds no model alive: once the model is dropped, so is its KV cache."""
    import gc
    from types import SimpleNamespace

    import torch
    from transformers import AutoTokenizer

    from worker.demo import tiny_gpt2

    model, _ = tiny_gpt2(AutoTokenizer.from_pretrained(tiny_lm.model_dir), seed=0)
    target = SimpleNamespace(model=model.eval(), device=torch.device("cpu"))
    before = len(prefix_work._PREFIXES)  # earlier tests' models may still be alive
    state = prefix_work._encoded(target, [1, 2, 3])
    assert prefix_work._encoded(target, [1, 2, 3]) is state  # run once per model
    assert model in prefix_work._PREFIXES
    assert len(prefix_work._PREFIXES) == before + 1
    del model, target, state
    gc.collect()
    assert len(prefix_work._PREFIXES) == before
