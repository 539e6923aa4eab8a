"""Model URIs: checked without loading at submit time, loaded once per worker process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from app.security import PathNotAllowed, resolve_under_roots
from worker.loaders import builtin_nets, diffusion_models, hf_models, mlflow_models
from worker.loaders.errors import ModelError, first_line

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

    def fingerprint(self) -> str:
        """Cheap identity of the files on disk (names, sizes, mtimes): the cache key."""
        digest = hashlib.sha256()
        for file in self._files():
            stat = file.stat()
            digest.update(f"{self._name(file)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return digest.hexdigest()

    def _files(self) -> list[Path]:
        """The model's files: a diffusers pipeline's live in component folders."""
        found = self.path.rglob("*") if self.format == "diffusers" else self.path.iterdir()
        return sorted(file for file in found if file.is_file())

    def _name(self, file: Path) -> str:
        return file.relative_to(self.path).as_posix()

    def content_sha256(self) -> str:
        """sha256 over every file's name and bytes: the provenance of what was audited."""
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


def _own_format(
    uri: str, path: Path, rest: str, config: dict[str, Any], allow_torchscript: bool
) -> ModelSpec | None:
    """A built-in architecture over safetensors, or a TorchScript archive (opt-in)."""
    if builtin_nets.CONFIG_KEY in config:
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"no .safetensors weights in {rest} for its built-in architecture")
        return ModelSpec(uri=uri, path=path, kind="classifier", format="builtin", config=config)
    if TORCHSCRIPT_KEY in config:
        if not allow_torchscript:
            # A TorchScript archive is a program: refused unless the operator opts in.
            raise ModelError(
                f"{rest} is a TorchScript model, which runs its own code; refused unless "
                f"{TORCHSCRIPT_SETTING}=true"
            )
        if not (path / TORCHSCRIPT_FILE).is_file():
            raise ModelError(f"no {TORCHSCRIPT_FILE} in {rest}")
        return ModelSpec(uri=uri, path=path, kind="classifier", format="torchscript", config=config)
    return None


def materialize(
    uri: str,
    roots: Sequence[Path],
    *,
    mlflow_tracking_uri: str,
    cache_root: Path,
    hf_cache_dir: str = "",
    allow_pickle: bool = False,
    allow_torchscript: bool = False,
) -> ModelSpec:
    """The model on local disk, ready to load: registry models are downloaded first."""
    if uri.startswith(hf_models.PREFIX):
        local = hf_models.snapshot(uri, download=True, cache_dir=hf_cache_dir)
        return replace(resolve_model(f"path:{local}", [local]), uri=uri)
    if uri.startswith(mlflow_models.PREFIX):
        root = mlflow_models.fetch(uri, mlflow_tracking_uri, cache_root)
        model_dir, tokenizer_dir = mlflow_models.hf_directories(root)
        local = resolve_model(
            f"path:{model_dir}",
            [root],
            allow_pickle=allow_pickle,
            allow_torchscript=allow_torchscript,
        )
        return replace(local, uri=uri, tokenizer_path=tokenizer_dir)
    return resolve_model(uri, roots, allow_pickle=allow_pickle, allow_torchscript=allow_torchscript)


def pickled_weight_files(path: Path) -> list[Path]:
    return sorted({file for pattern in PICKLE_PATTERNS for file in path.glob(pattern)})


def resolve_model(
    uri: str, roots: Sequence[Path], *, allow_pickle: bool = False, allow_torchscript: bool = False
) -> ModelSpec:
    """Check a model URI without loading weights: cheap enough to run in the API."""
    scheme, _, rest = uri.partition(":")
    if scheme != "path" or not rest:
        raise ModelError(f"unsupported model URI {uri!r}: use path:<directory>")
    try:
        path = resolve_under_roots(rest, roots, kind="model")
    except PathNotAllowed as exc:
        raise ModelError(str(exc)) from None
    if not path.is_dir():
        raise ModelError(f"model path {rest} is not a directory")
    if diffusion_models.is_pipeline(path):
        config = diffusion_models.read_index(path)
        return ModelSpec(uri=uri, path=path, kind="diffusion", format="diffusers", config=config)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if ggufs and not (path / "config.json").is_file():
        if len(ggufs) > 1:
            raise ModelError(
                f"{rest} holds several .gguf files ({', '.join(ggufs)}); "
                "put each in its own directory"
            )
        return ModelSpec(uri=uri, path=path, kind="causal_lm", gguf_file=ggufs[0])
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelError(f"no config.json in {rest}: expected a save_pretrained directory")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"config.json in {rest} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"config.json in {rest} is not a JSON object")
    if config.get("auto_map"):
        raise ModelError("model needs custom code (auto_map); remote code is never run")
    own = _own_format(uri, path, rest, config, allow_torchscript)
    if own is not None:
        return own
    kind = _model_kind(config)
    if any(path.glob("*.safetensors")):
        return ModelSpec(uri=uri, path=path, kind=kind, config=config)
    if not pickled_weight_files(path):
        raise ModelError(f"no weights in {rest}: expected .safetensors (or a .gguf file)")
    if not allow_pickle:
        # Unpickling can execute code: refused unless the operator opts in.
        raise ModelError(
            f"no .safetensors weights in {rest} (pickled weights are refused; "
            f"{PICKLE_SETTING}=true reads them with torch.load(weights_only=True))"
        )
    return ModelSpec(uri=uri, path=path, kind=kind, pickled=True, config=config)


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


class ModelCache(Generic[T]):
    """Loaded models per worker process, least recently used dropped first; a changed file on
    disk (new fingerprint) reloads."""

    def __init__(self, load: Callable[[ModelSpec], T], size: int) -> None:
        self.load, self.size = load, size
        self.models: dict[tuple[str, str], T] = {}

    def get(self, spec: ModelSpec) -> T:
        key = (str(spec.path), spec.fingerprint())
        if key in self.models:
            self.models[key] = self.models.pop(key)  # most recently used goes last
            return self.models[key]
        while len(self.models) >= self.size:
            self.models.pop(next(iter(self.models)))
        self.models[key] = self.load(spec)
        return self.models[key]


# A target and its reference model stay resident.
_causal_lms = ModelCache(load_causal_lm, 2)


def cached_causal_lm(spec: ModelSpec) -> LoadedModel:
    return _causal_lms.get(spec)
