"""Windows longer than the model's context (the tiny GPT-2 holds 128 positions): `finetune` and
`extraction` skip them with reason `window_exceeds_context` and count them; the batch never
crashes, and the records that fit are still scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.demo import build_tokenizer, make_corpus, tiny_gpt2
from worker.loaders.models import LoadedModel
from worker.local import audit_texts, load_local

LONG = " ".join(f"word{i}" for i in range(400))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("tiny") / "base"
    corpus = make_corpus(8, 8, seed=1)
    tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
    model, _ = tiny_gpt2(tokenizer, seed=0)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return load_local(Path(root))


def _records(tiny: LoadedModel) -> list[dict]:
    assert len(tiny.encode(LONG)) > tiny.max_tokens == 128
    return [
        {"id": "long", "text": LONG, "member": True},
        {"id": "short", "text": LONG[:60], "member": False},
    ]


def test_finetune_skips_windows_longer_than_the_context(tiny: LoadedModel) -> None:
    check = {"kind": "finetune", "params": {"prefix_tokens": 100, "suffix_tokens": 100}}
    found = audit_texts(tiny, _records(tiny), [check], reference_model=tiny)["finetune"]
    samples = {s["id"]: s for s in found["samples"]}
    for sample in samples.values():  # Δℓ still scored; windows skipped, not crashed on
        assert sample["window_skipped"] == "window_exceeds_context"
        assert sample["n_windows"] == 0
        assert sample["mean_delta"] == pytest.approx(0.0, abs=1e-6)
    assert found["summary"]["n_window_exceeds_context"] == 2
    assert any("window_exceeds_context" in w for w in found["summary"]["warnings"])
    # Windows that fit are extracted as before.
    fits = {"kind": "finetune", "params": {"prefix_tokens": 16, "suffix_tokens": 16}}
    found = audit_texts(tiny, _records(tiny), [fits], reference_model=tiny)["finetune"]
    long = next(s for s in found["samples"] if s["id"] == "long")
    assert long["n_windows"] == 1 and "window_skipped" not in long


def test_extraction_skips_windows_longer_than_the_context(tiny: LoadedModel) -> None:
    check = {"kind": "extraction", "params": {"prefix_tokens": 100, "suffix_tokens": 60}}
    found = audit_texts(tiny, _records(tiny), [check])["extraction"]
    samples = dict(zip(["long", "short"], found["samples"], strict=True))  # in record order
    assert samples["long"]["skipped"] and samples["long"]["reason"] == "window_exceeds_context"
    assert samples["short"]["reason"] == "too_short"
    summary = found["summary"]
    assert summary["n_window_exceeds_context"] == 1
    assert "window_exceeds_context" in summary["unfit"] and "shorter than" in summary["unfit"]
    assert "not_computed" in summary  # no record had a window to score
    # A window that fits is scored as before, beside one that does not fit in another audit.
    fits = {"kind": "extraction", "params": {"prefix_tokens": 32, "suffix_tokens": 32}}
    found = audit_texts(tiny, _records(tiny), [fits])["extraction"]
    long = found["samples"][0]
    assert not long.get("skipped") and long["best_window_offset"] == 0
