"""Model URIs: checked without loading at submit time, loaded once per worker process."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from app.confinement import (
    DEFAULT_RULES,
    FileRules,
    Located,
    PathRefused,
    Pinned,
    Root,
    RootLike,
    pin,
    pin_located,
)
from worker.loaders import builtin_nets, diffusion_models, hf_models, mlflow_models
from worker.loaders.errors import ModelError, first_line
from worker.loaders.weight_files import check_weight_files, read_json_file

CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# Pickled checkpoints: read only when allowed, and then only by torch.load(weights_only=True).
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth")
PICKLE_SETTING = "MEMAUDIT_ALLOW_PICKLE_WEIGHTS"
T = TypeVar("T")


@dataclass(frozen=True)
class ModelSpec:
    uri: str
    path: Path
    kind: str  # causal_lm | classifier | encoder | diffusion | chat_endpoint
    gguf_file: str | None = None  # a quantized checkpoint, dequantized on load
    pickled: bool = False  # weights in .bin/.pt files, read with torch.load(weights_only=True)
    tokenizer_path: Path | None = None  # when the tokenizer lives apart (MLflow's layout)
    # hf | builtin (safetensors + built-in architecture) | torchscript | diffusers (a pipeline
    # directory) | endpoint (no files: an OpenAI-compatible chat endpoint, `path` unused)
    format: str = "hf"
    config: dict[str, Any] | None = None  # config.json as read at resolve time
    # Where the files were found: the directory pinned at load (the model's own, or the MLflow
    # version's artifacts), beneath the root it may not leave, and how strictly it is read.
    location: Located | None = None
    rules: FileRules = DEFAULT_RULES
    recursive: bool = False  # a pipeline's components live in sub-folders

    def _files(self) -> list[Path]:
        """The model's files: a diffusers pipeline's live in component folders."""
        found = self.path.rglob("*") if self.format == "diffusers" else self.path.iterdir()
        return sorted(file for file in found if file.is_file())

    def _name(self, file: Path) -> str:
        return file.relative_to(self.path).as_posix()

    def content_sha256(self) -> str:
        """sha256 over every file's name and bytes: the provenance of what was audited. Called
        on the spec a loader gets (`opened`), so it reads the pinned files."""
        digest = hashlib.sha256()
        for file in self._files():
            digest.update(self._name(file).encode() + b"\0")
            with file.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForImageClassification")
TORCHSCRIPT_KEY = "memaudit_torchscript"
TORCHSCRIPT_FILE = "model.torchscript"
TORCHSCRIPT_SETTING = "MEMAUDIT_ALLOW_TORCHSCRIPT"


def _model_kind(config: dict[str, Any]) -> str:
    architectures = config.get("architectures") or []
    if any(name.endswith(CAUSAL_LM_SUFFIXES) for name in architectures):
        return "causal_lm"
    if any(name.endswith(CLASSIFIER_SUFFIXES) for name in architectures):
        return "classifier"
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
    if builtin_nets.CONFIG_KEY in config:
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


def materialize(
    uri: str,
    roots: Sequence[RootLike],
    *,
    mlflow_tracking_uri: str,
    cache_root: Path,
    hf_cache_dir: str = "",
    allow_pickle: bool = False,
    allow_torchscript: bool = False,
    rules: FileRules = DEFAULT_RULES,
) -> ModelSpec:
    """The model on local disk, ready to load: registry models are downloaded first. Each is
    confined to its own root: the configured folders, the Hub's cache, or the version's
    downloaded artifacts."""
    # Weight headers are checked when a model is loaded (ModelCache), not on every shard.
    options = {
        "allow_pickle": allow_pickle,
        "allow_torchscript": allow_torchscript,
        "rules": rules,
        "check_weights": False,
    }
    if uri.startswith(hf_models.PREFIX):
        hub_root = hf_models.cache_root(hf_cache_dir)
        local = hf_models.snapshot(uri, download=True, cache_dir=hf_cache_dir, rules=rules)
        return replace(resolve_model(f"path:{local}", [hub_root], **options), uri=uri)
    if uri.startswith(mlflow_models.PREFIX):
        root = mlflow_models.fetch(uri, mlflow_tracking_uri, cache_root)
        try:
            with pin(
                str(root), [root], kind="model", want="dir", rules=rules, recursive=True
            ) as tree:
                model_dir, tokenizer_dir = mlflow_models.hf_directories(root, tree)
        except PathRefused as exc:
            raise ModelError(str(exc)) from None
        local = resolve_model(f"path:{model_dir}", [root], **options)
        # Paths as the artifacts name them: the pinned tree mirrors those names.
        return replace(
            local,
            uri=uri,
            path=model_dir,
            tokenizer_path=tokenizer_dir,
            location=Located(Root(root), ()),
            recursive=True,
        )
    return resolve_model(uri, roots, **options)


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
            if pinned.file(diffusion_models.INDEX) is None:
                spec = _inspect(uri, rest, pinned, allow_pickle, allow_torchscript)
                if check_weights:
                    check_weight_files(pinned)
                return replace(spec, rules=rules)
        # A pipeline: its component folders are pinned too.
        with pin(rest, roots, kind="model", want="dir", rules=rules, recursive=True) as pinned:
            config = diffusion_models.read_index(pinned)
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


def load_pickled_state(path: Path) -> dict[str, Any]:
    """Tensors from .bin/.pt files through torch's restricted unpickler, which refuses any
    object but tensors and plain containers (a crafted pickle fails here, unexecuted)."""
    import pickle

    import torch

    state: dict[str, Any] = {}
    for file in pickled_weight_files(path):
        try:
            part = torch.load(file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise ModelError(
                f"{file.name} is not a plain tensor checkpoint; "
                f"torch.load(weights_only=True) refused it: {first_line(exc)}"
            ) from None
        if not isinstance(part, dict) or not all(
            isinstance(v, torch.Tensor) for v in part.values()
        ):
            raise ModelError(f"{file.name} does not hold a state dict of tensors")
        state.update(part)
    return state


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    device: str
    dtype: str
    content_sha256: str

    @cached_property
    def special_prefix(self) -> list[int]:
        """The special tokens (BOS) the tokenizer puts before a text by default.

        Texts are encoded without specials and these are prepended, so EOS is never appended
        (METRICS.md §1) and windows can be cut from the text tokens alone.
        """
        with_specials = self.tokenizer("x")["input_ids"]
        plain = self.tokenizer("x", add_special_tokens=False)["input_ids"]
        for start in range(len(with_specials) - len(plain) + 1):
            if with_specials[start : start + len(plain)] == plain:
                return list(with_specials[:start])
        return []

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def render_window(
        self, prefix_ids: Sequence[int], suffix_ids: Sequence[int]
    ) -> tuple[str, list[str]]:
        return self.decode(prefix_ids), self.token_pieces(suffix_ids)

    def token_pieces(self, ids: Sequence[int]) -> list[str]:
        """The text each token adds, decoded cumulatively so multi-byte characters split
        across tokens are shown once, whole, rather than as replacement characters."""
        pieces, previous = [], ""
        for end in range(1, len(ids) + 1):
            text = self.decode(ids[:end])
            if text.endswith("\ufffd"):  # a character is still incomplete
                pieces.append("")
                continue
            pieces.append(text[len(previous) :])
            previous = text
        return pieces

    @property
    def max_tokens(self) -> int:
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048


def pick_device() -> tuple[str, Any]:
    """The GPU in bf16 when there is one, else the CPU in float32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def explained_load(spec: ModelSpec, load: Callable[[ModelSpec], T]) -> T:
    """A model that cannot be loaded is a ModelError (retrying the same files cannot mend
    them) that says what the library said."""
    try:
        return load(spec)
    except ModelError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"could not load the model in {spec.path.name}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


def load_causal_lm(spec: ModelSpec) -> LoadedModel:
    return explained_load(spec, _load_causal_lm)


def _load_causal_lm(spec: ModelSpec) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars flood worker logs
    device, dtype = pick_device()
    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if spec.gguf_file:
        common["gguf_file"] = spec.gguf_file  # needs the `gguf` extra; weights dequantized
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_path or spec.path, **common)
    if spec.pickled:
        # Opted in: tensors read by load_pickled_state, handed over with the config, so
        # transformers never opens (let alone unpickles) a weights file itself.
        config = AutoConfig.from_pretrained(spec.path, **common)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
        _load_state(model, load_pickled_state(spec.path))
    else:
        # Safetensors, or the GGUF file named above.
        weights = {} if spec.gguf_file else {"use_safetensors": True}
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, **common, **weights)
    model.to(device).eval()
    return LoadedModel(spec, model, tokenizer, device, str(dtype), spec.content_sha256())


def _load_state(model: Any, state: dict[str, Any]) -> None:
    """Every parameter must come from the checkpoint, except those tied to another one."""
    result = model.load_state_dict(state, strict=False)
    model.tie_weights()
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    tied |= set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [name for name in result.missing_keys if name not in tied]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"the pickled checkpoint does not match the config: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )


@contextmanager
def opened(spec: ModelSpec) -> Iterator[tuple[ModelSpec, Pinned]]:
    """The spec as a loader reads it: its files walked again beneath their root and pinned;
    its paths lead to the staging copy where submitters can write the roots."""
    if spec.location is None:
        raise ModelError(f"{spec.uri} names no files to load")
    with ExitStack() as stack:
        try:
            pinned = stack.enter_context(
                pin_located(
                    spec.location,
                    kind="model",
                    want="dir",
                    rules=spec.rules,
                    recursive=spec.recursive,
                )
            )
        except PathRefused as exc:
            raise ModelError(str(exc)) from None
        tokenizer = pinned.local(spec.tokenizer_path) if spec.tokenizer_path else None
        yield replace(spec, path=pinned.local(spec.path), tokenizer_path=tokenizer), pinned


class ModelCache(Generic[T]):
    """Loaded models per worker process, least recently used dropped first. Each use walks the
    files again (a changed file, a new fingerprint, reloads); a load reads the pinned files,
    checked against their headers first."""

    def __init__(self, load: Callable[[ModelSpec], T], size: int) -> None:
        self.load, self.size = load, size
        self.models: dict[tuple[str, str], T] = {}

    def get(self, spec: ModelSpec) -> T:
        with opened(spec) as (local, pinned):
            key = (str(spec.path), pinned.fingerprint())
            if key in self.models:
                self.models[key] = self.models.pop(key)  # most recently used goes last
                return self.models[key]
            while len(self.models) >= self.size:
                self.models.pop(next(iter(self.models)))
            check_weight_files(pinned)
            self.models[key] = self.load(local)
            return self.models[key]


# A target and its reference model stay resident.
_causal_lms = ModelCache(load_causal_lm, 2)


def cached_causal_lm(spec: ModelSpec) -> LoadedModel:
    return _causal_lms.get(spec)
