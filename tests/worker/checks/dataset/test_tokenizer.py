"""Token starts in UTF-8 bytes, from the real tokenizers a dataset audit uses."""

from __future__ import annotations

from core.config import Settings
from worker.checks.dataset.tokenizer import SMOLLM2_NAME, corpus_tokenizer, token_starts

TEXTS = [
    "Grüße aus Köln — naïve café 東京タワー 🙂 emoji!",
    "  spaces\tand\nnewlines  ",
    "plain ascii, nothing else",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP, then Ελληνικά",
]


def _brute_force(tokenizer, text: str) -> list[int]:
    """Each token's character start, re-encoded prefix by prefix."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [len(text[:start].encode("utf-8")) for start, _ in offsets["offset_mapping"]]


def _check(tokenizer) -> None:
    starts = token_starts(tokenizer, TEXTS)
    for text, found in zip(TEXTS, starts, strict=True):
        assert found.tolist() == _brute_force(tokenizer, text)
        assert (found[1:] >= found[:-1]).all() and found[-1] < len(text.encode())
        encoded = text.encode()
        # Every start is a character boundary: never a UTF-8 continuation byte.
        assert all(encoded[s] & 0xC0 != 0x80 for s in found)


def test_the_bundled_smollm2_tokenizer_is_converted_once(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    name, tokenizer = corpus_tokenizer(settings, None)
    assert name == SMOLLM2_NAME
    cached = list((tmp_path / "tokenizers").glob("*.tokenizer.json"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    _check(tokenizer)
    corpus_tokenizer(settings, None)
    assert cached[0].stat().st_mtime_ns == stamp


def test_the_linked_models_tokenizer_is_used(tmp_path, tiny_lm) -> None:
    settings = Settings(data_dir=tmp_path, model_roots=str(tiny_lm.model_dir.parent))
    uri = f"path:{tiny_lm.model_dir}"
    name, tokenizer = corpus_tokenizer(settings, uri)
    assert name == uri and tokenizer.is_fast
    assert not (tmp_path / "tokenizers").exists()
    _check(tokenizer)
