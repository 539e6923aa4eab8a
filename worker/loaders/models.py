"""Causal LMs loaded once per worker process, and the cache every model loader shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from core.confinement import PathRefused, Pinned, pin_located
from core.inspection.adapters import ADAPTER_CONFIG, check_adapter_tensors
from core.inspection.errors import ModelError, first_line
from core.inspection.models import ModelSpec, pickled_weight_files
from core.inspection.weight_files import check_weight_files, read_json_file
from worker.loaders.placement import Placement, choose_placement

T = TypeVar("T")


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
    # A LoRA adapter left unmerged on its base: peft's wrapper (`model` is the base with the
    # adapter's layers active inside), for passes that run adapter and base rows together.
    peft: Any = None

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
        """The text each token adds, so multi-byte characters split across tokens are shown
        once, whole, rather than as replacement characters. Each token is decoded after the
        last complete piece before it (incremental detokenization as vLLM's
        `detokenize_incrementally` does it, read from vllm-project/vllm), not with the whole
        prefix: linear in len(ids), where cumulative decoding was quadratic."""
        pieces: list[str] = []
        context, start = 0, 0  # the last complete piece's first token; the pending tokens'
        for end in range(1, len(ids) + 1):
            before = self.decode(ids[context:start])
            text = self.decode(ids[context:end])
            if text.endswith("\ufffd") or len(text) <= len(before):
                pieces.append("")  # a character is still incomplete, or nothing was added
                continue
            pieces.append(text[len(before) :])
            context, start = start, end
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


def worker_placement(config: Any, dtype: Any) -> Placement:
    """Where this worker puts a model: its GPUs and their budgets come from the settings."""
    from core.config import get_settings

    settings = get_settings()
    device, _ = pick_device()
    return choose_placement(
        config, dtype, device, settings.worker_gpu_ids, settings.gpu_memory_budgets
    )


def _load_causal_lm(spec: ModelSpec, placement: Placement | None = None) -> LoadedModel:
    """The model on the worker's device, or split by a device map when it does not fit one
    GPU (`placement` given: there, as a test splits it on the CPU)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress bars flood worker logs
    _, dtype = pick_device()
    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if spec.gguf_file:
        common["gguf_file"] = spec.gguf_file  # needs the `gguf` extra; weights dequantized
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_path or spec.path, **common)
    config = AutoConfig.from_pretrained(spec.path, **common)
    placement = placement or worker_placement(config, dtype)
    if spec.pickled:
        # Opted in: tensors read by load_pickled_state, handed over with the config, so
        # transformers never opens (let alone unpickles) a weights file itself.
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
        _load_state(model, load_pickled_state(spec.path))
        if placement.device_map is not None:
            from accelerate import dispatch_model

            model = dispatch_model(
                model, placement.device_map, offload_dir=_offload_dir(placement.device_map)
            )
    else:
        # Safetensors, or the GGUF file named above.
        weights: dict[str, Any] = {} if spec.gguf_file else {"use_safetensors": True}
        if placement.device_map is not None:
            offload = _offload_dir(placement.device_map)
            weights |= {"device_map": placement.device_map, "offload_folder": offload}
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, **common, **weights)
    if placement.device_map is None:
        model.to(placement.device)
    model.eval()
    return LoadedModel(spec, model, tokenizer, placement.device, str(dtype), spec.content_sha256())


def _offload_dir(device_map: dict[str, Any]) -> str | None:
    """Where weights a device map sends to `disk` live, for the process's life."""
    import tempfile

    if "disk" not in device_map.values():
        return None
    return tempfile.mkdtemp(prefix="memaudit-offload-")


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
    checked against their headers first. `on_evict` hears of each model dropped, so what was
    built on it (an adapter on its base) goes with it."""

    def __init__(
        self, load: Callable[[ModelSpec], T], size: int, on_evict: Callable[[T], None] | None = None
    ) -> None:
        self.load, self.size, self.on_evict = load, size, on_evict
        self.models: dict[tuple[str, str], T] = {}

    def get(self, spec: ModelSpec) -> T:
        with opened(spec) as (local, pinned):
            key = (str(spec.path), pinned.fingerprint())
            if key in self.models:
                self.models[key] = self.models.pop(key)  # most recently used goes last
                return self.models[key]
            while len(self.models) >= self.size:
                evicted = self.models.pop(next(iter(self.models)))
                if self.on_evict is not None:
                    self.on_evict(evicted)
            check_weight_files(pinned)
            self.models[key] = self.load(local)
            return self.models[key]

    def discard(self, model: T) -> None:
        """Drops a model that can no longer be trusted (its weights were written to)."""
        for key, held in list(self.models.items()):
            if held is model:
                del self.models[key]
                if self.on_evict is not None:
                    self.on_evict(held)


# A target and its reference model stay resident.
_causal_lms: ModelCache[LoadedModel] = ModelCache(
    load_causal_lm, 2, on_evict=lambda base: drop_adapters_on(base)
)


def cached_causal_lm(spec: ModelSpec) -> LoadedModel:
    return _causal_lms.get(spec)


# ---- LoRA adapters ---------------------------------------------------------------------------

ADAPTER_NAME = "audited"


def load_adapter_lm(spec: ModelSpec, base: LoadedModel) -> LoadedModel:
    """A LoRA adapter on its base, unmerged, with the base's tokenizer.

    The adapter's layers go into a copy of the base's module tree that shares the base's weight
    tensors (never copied), so the base is held in memory once. The cached base is the audit's
    reference model and must stay what it was: the adapter file may hold LoRA factors only
    (checked against its header), and every shared tensor's version counter, which any
    in-place write bumps, is compared after the load."""
    import copy

    from peft import PeftModel

    if pickled_weight_files(spec.path):  # checked at resolve time; the files may have changed
        raise ModelError(f"{spec.path.name} holds pickled adapter weights; refused")
    config = spec.config or {}
    _check_adapter_file(spec.path, config)
    tensors = [*base.model.parameters(), *base.model.buffers()]
    shared = {id(t): t for t in tensors}
    versions = [t._version for t in tensors]
    shell = copy.deepcopy(base.model, shared)
    try:
        wrapper = PeftModel.from_pretrained(
            shell, str(spec.path), adapter_name=ADAPTER_NAME, is_trainable=False
        )
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        declared = config.get("base_model_name_or_path")
        said = f" (the adapter names {declared!r} as its base)" if declared else ""
        raise ModelError(
            f"the adapter in {spec.path.name} does not fit the reference model "
            f"{base.spec.uri}{said}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    if [t._version for t in tensors] != versions:
        _causal_lms.discard(base)
        raise ModelError(
            f"loading the adapter in {spec.path.name} wrote into the reference model's weights; "
            "refused (the reference model is reloaded for the next audit)"
        )
    wrapper.eval()
    return LoadedModel(
        spec,
        wrapper.base_model.model,
        base.tokenizer,
        base.device,
        base.dtype,
        spec.content_sha256(),
        peft=wrapper,
    )


def _check_adapter_file(path: Path, config: dict[str, Any]) -> None:
    """The adapter file as peft will read it holds LoRA factors only (see inspect_adapter)."""
    import os

    from core.inspection.adapters import ADAPTER_WEIGHTS, foreign_tensors, safetensors_names

    try:
        descriptor = os.open(path / ADAPTER_WEIGHTS, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ModelError(f"{ADAPTER_WEIGHTS} cannot be read ({exc.strerror})") from None
    try:
        foreign = foreign_tensors(safetensors_names(descriptor), config)
    finally:
        os.close(descriptor)
    if foreign:
        raise ModelError(
            f"the adapter in {path.name} holds tensors that are not LoRA weights "
            f"(e.g. {foreign[0]!r}); refused"
        )


# One adapter on its base at a time, by the adapter's files and the base's content, device and
# dtype; the base object itself is kept beside it, so a reloaded base gets a fresh adapter.
_adapter_lms: dict[tuple[str, str, str, str, str], tuple[LoadedModel, LoadedModel]] = {}


def drop_adapters_on(base: LoadedModel) -> None:
    """An evicted base takes its adapter with it (the adapter holds the base's tensors)."""
    for key, (on, _) in list(_adapter_lms.items()):
        if on is base:
            del _adapter_lms[key]


def cached_adapter_lm(spec: ModelSpec, base: LoadedModel) -> LoadedModel:
    with opened(spec) as (local, pinned):
        key = (str(spec.path), pinned.fingerprint(), base.content_sha256, base.device, base.dtype)
        held = _adapter_lms.get(key)
        if held is None or held[0] is not base:
            _adapter_lms.clear()
            check_weight_files(pinned)
            config = read_json_file(pinned, ADAPTER_CONFIG)
            check_adapter_tensors(pinned, config if isinstance(config, dict) else {}, spec.uri)
            _adapter_lms[key] = (base, load_adapter_lm(local, base))
        return _adapter_lms[key][1]
