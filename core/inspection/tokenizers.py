"""Whether two model directories tokenize alike, read from their tokenizer files at submit time:
a comparison token by token (a fine-tune against its base) means nothing across tokenizers."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from core.confinement import DEFAULT_RULES, FileRules, PathRefused, RootLike, pin
from core.inspection.errors import ModelError
from core.inspection.weight_files import read_json_file

# The parts of tokenizer.json that decide a text's token ids (not padding or truncation).
TOKEN_SECTIONS = ("normalizer", "pre_tokenizer", "model", "added_tokens")
# A slow tokenizer's files, compared byte for byte.
VOCABULARY_FILES = ("vocab.json", "merges.txt", "tokenizer.model", "vocab.txt")
MAX_TOKENIZER_BYTES = 64 << 20


def tokenizer_identity(
    uri: str, roots: Sequence[RootLike], rules: FileRules = DEFAULT_RULES
) -> dict[str, Any] | None:
    """What decides the directory's token ids; None where its files do not tell (not a local
    directory, a GGUF file, an adapter without a tokenizer of its own)."""
    scheme, _, rest = uri.partition(":")
    if scheme != "path" or not rest:
        return None
    try:
        with pin(rest, roots, kind="model", want="dir", rules=rules) as pinned:
            names = pinned.names()
            if "tokenizer.json" in names:
                data = read_json_file(pinned, "tokenizer.json", MAX_TOKENIZER_BYTES)
                if not isinstance(data, dict):
                    return None
                return {section: data.get(section) for section in TOKEN_SECTIONS}
            found = {}
            for name in VOCABULARY_FILES:
                file = pinned.file(name)
                if file is not None:
                    found[name] = hashlib.sha256(file.read(MAX_TOKENIZER_BYTES)).hexdigest()
            return found or None
    except (ModelError, PathRefused):
        return None  # the model's own resolution reports what is wrong with it


def check_same_tokenizer(
    model_uri: str, reference_uri: str, roots: Sequence[RootLike], rules: FileRules = DEFAULT_RULES
) -> None:
    """ValueError when both directories' tokenizers are known and differ."""
    model = tokenizer_identity(model_uri, roots, rules)
    reference = tokenizer_identity(reference_uri, roots, rules)
    if model is None or reference is None or model == reference:
        return
    keys = set(model) | set(reference)
    differ = sorted(key for key in keys if model.get(key) != reference.get(key))
    raise ValueError(
        f"the reference_model {reference_uri} tokenizes differently from the model {model_uri} "
        f"(their tokenizers differ in {', '.join(differ)}): a token-by-token comparison needs "
        "the base the model was fine-tuned from, with its tokenizer"
    )
