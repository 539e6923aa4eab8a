"""Model URIs checked without loading: cheap enough for the API at submit time, and the spec
a worker loads from."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from core.confinement import (
    DEFAULT_RULES,
    FileRules,
    Located,
    PathRefused,
    Pinned,
    RootLike,
    pin,
)
from core.inspection import adapters, diffusion_index
from core.inspection.errors import ModelError
from core.inspection.weight_files import check_weight_files, read_json_file

# A built-in architecture (worker/loaders/builtin_nets.py) names itself under this key.
BUILTIN_CONFIG_KEY = "memaudit_architecture"
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# Pickled checkpoints: read only when allowed, and then only by torch.load(weights_only=True).
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth")
PICKLE_SETTING = "MEMAUDIT_ALLOW_PICKLE_WEIGHTS"


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    path: Path
    kind: str  # causal_lm | classifier | encoder | masked_lm | diffusion | chat_endpoint
    gguf_file: str | None = None  # a quantized checkpoint, dequantized on load
    pickled: bool = False  # weights in .bin/.pt files, read with torch.load(weights_only=True)
    tokenizer_path: Path | None = None  # when the tokenizer lives apart (MLflow's layout)
    # hf | builtin (safetensors + built-in architecture) | torchscript | diffusers (a pipeline
    # directory) | endpoint (no files: an OpenAI-compatible chat endpoint, `path` unused) |
    # peft_lora (a LoRA adapter, loaded onto the audit's reference model: adapters.py)
    format: str = "hf"
    config: dict[str, Any] | None = None  # config.json as read at resolve time
    # Where the files were found: the directory pinned at load (the model's own, or the MLflow
    # version's artifacts), beneath the root it may not leave, and how strictly it is read.
    location: Located | None = None
    rules: FileRules = DEFAULT_RULES
    recursive: bool = False  # a pipeline's components live in sub-folders
    # Bytes its weights take loaded on a GPU (weight_files.loaded_bytes); None unless the
    # weights were checked at resolve time.
    loaded_bytes: int | None = None

    def _files(self) -> list[Path]:
        """The model's files: a diffusers pipeline's live in component folders."""
        found = self.path.rglob("*") if self.format == "diffusers" else self.path.iterdir()
        return sorted(file for file in found if file.is_file())

    def _name(self, file: Path) -> str:
        return file.relative_to(self.path).as_posix()

    def content_sha256(self) -> str:
        """sha256 over every file's name and bytes: the provenance of what was audited. Called
        on the spec a loader gets (`opened`), so it reads the pinned files."""
        # One digest over names and bytes together (`hashlib.file_digest` hashes a file alone):
        # a model's recorded identity stays what earlier audits recorded.
        digest = hashlib.sha256()
        for file in self._files():
            digest.update(self._name(file).encode() + b"\0")
            with file.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForImageClassification")
# A masked LM (BERT-style): the neighbourhood attack's word swaps, never an audited model.
MASKED_LM_SUFFIXES = ("ForMaskedLM",)
TORCHSCRIPT_KEY = "memaudit_torchscript"
TORCHSCRIPT_FILE = "model.torchscript"
TORCHSCRIPT_SETTING = "MEMAUDIT_ALLOW_TORCHSCRIPT"


def _model_kind(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    if any(name.endswith(CAUSAL_LM_SUFFIXES) for name in architectures):
        return "causal_lm"
    if any(name.endswith(CLASSIFIER_SUFFIXES) for name in architectures):
        return "classifier"
    if any(name.endswith(MASKED_LM_SUFFIXES) for name in architectures):
        return "masked_lm"
    # A bare encoder (BertModel, RobertaModel, ...): hidden states only, for `diversity`.
    if architectures and all(name.endswith("Model") for name in architectures):
        return "encoder"
    raise ModelError(f"unsupported model architecture {architectures or '(none given)'}")


def _has(names: Sequence[str], suffix: str) -> bool:
    return any(name.endswith(suffix) for name in names)


def _own_format(
    uri: str, pinned: Pinned, rest: str, config: dict[str, Any], allow_torchscript: bool
) -> ModelSpec | None:
    """A built-in architecture over safetensors, or a TorchScript archive (opt-in)."""
    names = pinned.names()
    if BUILTIN_CONFIG_KEY in config:
        if not _has(names, ".safetensors"):
            raise ModelError(f"no .safetensors weights in {rest} for its built-in architecture")
        return _spec(uri, pinned, kind="classifier", format="builtin", config=config)
    if TORCHSCRIPT_KEY in config:
        if not allow_torchscript:
            # A TorchScript archive is a program: refused unless the operator opts in.
            raise ModelError(
                f"{rest} is a TorchScript model, which runs its own code; refused unless "
                f"{TORCHSCRIPT_SETTING}=true"
            )
        if TORCHSCRIPT_FILE not in names:
            raise ModelError(f"no {TORCHSCRIPT_FILE} in {rest}")
        return _spec(uri, pinned, kind="classifier", format="torchscript", config=config)
    return None


def _spec(uri: str, pinned: Pinned, *, kind: str, **fields: Any) -> ModelSpec:
    """A spec for the pinned directory, remembered by where it lies beneath its root."""
    return ModelSpec(
        uri=uri, path=pinned.located.path, kind=kind, location=pinned.located, **fields
    )


def pickled_weight_files(path: Path) -> list[Path]:
    return sorted({file for pattern in PICKLE_PATTERNS for file in path.glob(pattern)})


def resolve_model(
    uri: str,
    roots: Sequence[RootLike],
    *,
    allow_pickle: bool = False,
    allow_torchscript: bool = False,
    rules: FileRules = DEFAULT_RULES,
    check_weights: bool = True,
) -> ModelSpec:
    """Check a model URI without loading weights: cheap enough to run in the API.

    Every file is reached beneath its root (links included) and checked, weight files against
    their headers (unless a load right after checks them); what a pipeline's components hold
    is read from its sub-folders.
    """
    scheme, _, rest = uri.partition(":")
    if scheme != "path" or not rest:
        raise ModelError(f"unsupported model URI {uri!r}: use path:<directory>")
    try:
        with pin(rest, roots, kind="model", want="dir", rules=rules) as pinned:
            if pinned.file(diffusion_index.INDEX) is None:
                spec = _inspect(uri, rest, pinned, allow_pickle, allow_torchscript)
                size = check_weight_files(pinned) if check_weights else None
                return replace(spec, rules=rules, loaded_bytes=size)
        # A pipeline: its component folders are pinned too.
        with pin(rest, roots, kind="model", want="dir", rules=rules, recursive=True) as pinned:
            config = diffusion_index.read_index(pinned)
            if check_weights:
                check_weight_files(pinned)
            return replace(
                _spec(uri, pinned, kind="diffusion", format="diffusers", config=config),
                rules=rules,
                recursive=True,
            )
    except PathRefused as exc:
        raise ModelError(str(exc)) from None


def _inspect(
    uri: str, rest: str, pinned: Pinned, allow_pickle: bool, allow_torchscript: bool
) -> ModelSpec:
    names = pinned.names()
    ggufs = [name for name in names if name.endswith(".gguf")]
    if ggufs and "config.json" not in names:
        if len(ggufs) > 1:
            raise ModelError(
                f"{rest} holds several .gguf files ({', '.join(ggufs)}); "
                "put each in its own directory"
            )
        return _spec(uri, pinned, kind="causal_lm", gguf_file=ggufs[0])
    if adapters.is_adapter(names):
        config = adapters.inspect_adapter(rest, pinned)
        return _spec(uri, pinned, kind="causal_lm", format=adapters.ADAPTER_FORMAT, config=config)
    if "config.json" not in names:
        raise ModelError(f"no config.json in {rest}: expected a save_pretrained directory")
    config = read_json_file(pinned, "config.json")
    if not isinstance(config, dict):
        raise ModelError(f"config.json in {rest} is not a JSON object")
    if config.get("auto_map"):
        raise ModelError("model needs custom code (auto_map); remote code is never run")
    own = _own_format(uri, pinned, rest, config, allow_torchscript)
    if own is not None:
        return own
    kind = _model_kind(config)
    if _has(names, ".safetensors"):
        return _spec(uri, pinned, kind=kind, config=config)
    if not any(fnmatch(name, pattern) for name in names for pattern in PICKLE_PATTERNS):
        raise ModelError(f"no weights in {rest}: expected .safetensors (or a .gguf file)")
    if not allow_pickle:
        # Unpickling can execute code: refused unless the operator opts in.
        raise ModelError(
            f"no .safetensors weights in {rest} (pickled weights are refused; "
            f"{PICKLE_SETTING}=true reads them with torch.load(weights_only=True))"
        )
    return _spec(uri, pinned, kind=kind, pickled=True, config=config)
