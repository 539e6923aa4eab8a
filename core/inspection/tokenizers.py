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
                identity = {section: data.get(section) for section in TOKEN_SECTIONS}
                return {"form": "tokenizer.json"} | _normalised(identity)
            found = {}
            for name in VOCABULARY_FILES:
                file = pinned.file(name)
                if file is not None:
                    found[name] = hashlib.sha256(file.read(MAX_TOKENIZER_BYTES)).hexdigest()
            return {"form": "vocabulary files"} | found if found else None
    except (ModelError, PathRefused):
        return None  # the model's own resolution reports what is wrong with it


def check_same_tokenizer(
    model_uri: str, reference_uri: str, roots: Sequence[RootLike], rules: FileRules = DEFAULT_RULES
) -> None:
    """ValueError when both directories' tokenizers are known and differ where ordinary text's
    ids are decided. The model (the fine-tune) may add tokens of its own (a [PAD], a chat
    token) as long as the reference's vocabulary, merges and added tokens keep their ids.
    Tokenizers saved in different forms (tokenizer.json against slow vocabulary files) cannot
    be compared from their files: no check."""
    model = tokenizer_identity(model_uri, roots, rules)
    reference = tokenizer_identity(reference_uri, roots, rules)
    if model is None or reference is None or model.get("form") != reference.get("form"):
        return
    differ = _differences(model, reference)
    if not differ:
        return
    raise ValueError(
        f"the reference_model {reference_uri} tokenizes differently from the model {model_uri} "
        f"(their tokenizers differ in {', '.join(differ)}): a token-by-token comparison needs "
        "the base the model was fine-tuned from, with its tokenizer"
    )


def _normalised(identity: dict[str, Any]) -> dict[str, Any]:
    """tokenizer.json's sections with merges in one form: tokenizers >= 0.20 saves a merge as
    a pair ["a", "b"], earlier versions as the string "a b"; added tokens as content -> id."""
    model = identity.get("model")
    if isinstance(model, dict) and isinstance(model.get("merges"), list):
        merges = [list(m.split(" ", 1)) if isinstance(m, str) else list(m) for m in model["merges"]]
        identity["model"] = model | {"merges": merges}
    added = identity.get("added_tokens")
    if isinstance(added, list):
        identity["added_tokens"] = {
            t.get("content"): t.get("id") for t in added if isinstance(t, dict)
        }
    return identity


def _differences(model: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """The sections where the model does not keep the reference's token ids."""
    differ = []
    for key in sorted(set(model) | set(reference)):
        mine, theirs = model.get(key), reference.get(key)
        if key == "added_tokens" and isinstance(mine, dict) and isinstance(theirs, dict):
            same = all(mine.get(content) == i for content, i in theirs.items())
        elif key == "model" and isinstance(mine, dict) and isinstance(theirs, dict):
            same = _same_model(mine, theirs)
        else:
            same = mine == theirs
        if not same:
            differ.append(key)
    return differ


def _same_model(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Same tokenization model; the fine-tune's vocabulary may extend the base's, every base
    entry keeping its id (or, for a Unigram list, its place)."""
    for key in set(mine) | set(theirs):
        a, b = mine.get(key), theirs.get(key)
        if key == "vocab" and isinstance(a, dict) and isinstance(b, dict):
            if any(a.get(token) != i for token, i in b.items()):
                return False
        elif key == "vocab" and isinstance(a, list) and isinstance(b, list):
            if a[: len(b)] != b:
                return False
        elif a != b:
            return False
    return True
