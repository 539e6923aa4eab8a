"""Which fine-tune/base tokenizer pairs the submit-time check lets through: those that give
ordinary text the same ids, whatever form the files were saved in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.inspection.tokenizers import check_same_tokenizer
from worker.demo import build_tokenizer

TEXTS = ["hello world, the quick brown fox jumps over the lazy dog"] * 4


def _save(tokenizer, directory: Path) -> Path:  # type: ignore[no-untyped-def]
    tokenizer.save_pretrained(directory)
    return directory


def _check(model: Path, reference: Path, root: Path) -> None:
    check_same_tokenizer(f"path:{model}", f"path:{reference}", [root])


def _edit(directory: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_merges_saved_as_strings_or_pairs_are_the_same_tokenizer(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(TEXTS, vocab_size=300)
    pairs = _save(tokenizer, tmp_path / "pairs")
    strings = _save(tokenizer, tmp_path / "strings")
    _edit(strings, lambda d: d["model"].update(merges=[" ".join(m) for m in d["model"]["merges"]]))
    assert isinstance(
        json.loads((pairs / "tokenizer.json").read_text())["model"]["merges"][0], list
    )
    _check(pairs, strings, tmp_path)
    _check(strings, pairs, tmp_path)
    # A real difference in the merges is still refused.
    _edit(strings, lambda d: d["model"]["merges"].reverse())
    with pytest.raises(ValueError, match=r"tokenizes differently.*model"):
        _check(pairs, strings, tmp_path)


def test_a_fast_tokenizer_against_slow_files_is_not_checked(tmp_path: Path) -> None:
    fast = _save(build_tokenizer(TEXTS, vocab_size=300), tmp_path / "fast")
    data = json.loads((fast / "tokenizer.json").read_text())
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "vocab.json").write_text(json.dumps(data["model"]["vocab"]))
    merges = "\n".join(" ".join(m) for m in data["model"]["merges"])
    (slow / "merges.txt").write_text("#version: 0.2\n" + merges + "\n")
    _check(fast, slow, tmp_path)
    _check(slow, fast, tmp_path)


def test_tokens_added_by_the_finetune_keep_it_compatible(tmp_path: Path) -> None:
    base_tokenizer = build_tokenizer(TEXTS, vocab_size=300)
    base = _save(base_tokenizer, tmp_path / "base")
    tuned_tokenizer = build_tokenizer(TEXTS, vocab_size=300)
    tuned_tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    tuned_tokenizer.add_tokens(["<|im_start|>"])
    tuned = _save(tuned_tokenizer, tmp_path / "tuned")
    assert tuned_tokenizer.encode(TEXTS[0]) == base_tokenizer.encode(TEXTS[0])
    _check(tuned, base, tmp_path)
    # The base's own added tokens must keep their ids; and the base may not hold tokens the
    # model lacks (the fine-tune is the side that adds).
    with pytest.raises(ValueError, match="added_tokens"):
        _check(base, tuned, tmp_path)
    _edit(tuned, lambda d: d["added_tokens"][0].update(id=299))
    with pytest.raises(ValueError, match="added_tokens"):
        _check(tuned, base, tmp_path)


def test_a_different_vocabulary_is_refused(tmp_path: Path) -> None:
    base = _save(build_tokenizer(TEXTS, vocab_size=300), tmp_path / "base")
    other = _save(
        build_tokenizer(["0123456789 quite different"] * 4, vocab_size=300), tmp_path / "o"
    )
    with pytest.raises(ValueError, match="tokenizes differently"):
        _check(other, base, tmp_path)
    # A vocabulary entry of the base moved to another id.
    moved = _save(build_tokenizer(TEXTS, vocab_size=300), tmp_path / "moved")

    def swap(data: dict) -> None:
        vocab = data["model"]["vocab"]
        first, second = list(vocab)[100:102]
        vocab[first], vocab[second] = vocab[second], vocab[first]

    _edit(moved, swap)
    with pytest.raises(ValueError, match="model"):
        _check(moved, base, tmp_path)
