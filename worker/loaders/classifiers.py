"""Classifiers and encoders, loaded once per worker process and wrapped so every check sees
one interface: inputs from records, logits, and pooled hidden activations by layer.

Three formats: a Hugging Face directory (sequence or image classification, or a bare encoder),
a safetensors state dict in a built-in architecture (`builtin_nets`), and a TorchScript
archive (only when the operator allows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.inspection.errors import ModelError
from core.inspection.models import TORCHSCRIPT_FILE, TORCHSCRIPT_KEY, ModelSpec
from worker.loaders import builtin_nets
from worker.loaders.models import (
    LoadedModel,
    ModelCache,
    explained_load,
    load_pickled_state,
    pick_device,
)

POOLINGS = ("cls", "mean")
MAX_TEXT_TOKENS = 512


@dataclass
class LoadedClassifier:
    spec: ModelSpec
    module: torch.nn.Module
    input_kind: str  # text | features
    device: str
    dtype: str
    content_sha256: str
    tokenizer: Any = None
    input_shape: tuple[int, ...] | None = None  # one example's feature shape
    n_classes: int | None = None  # None: an encoder without a head
    hf: bool = False  # hidden states come from the model's `output_hidden_states`
    details: dict[str, Any] = field(default_factory=dict)  # architecture facts for `capacity`

    def batch(self, inputs: Sequence[Any]) -> Any:
        """Model inputs for a list of texts or feature arrays, on the model's device."""
        if self.input_kind == "text":
            return self._token_batch(inputs)
        array = np.asarray(inputs, dtype=np.float32)
        if self.input_shape is not None:
            array = array.reshape(len(array), *self.input_shape)
        return torch.from_numpy(array).to(self.device)

    def _token_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Right-padded ids with their attention mask; padded here, so a tokenizer without a
        pad token (GPT-2) is used as it is, never changed."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)
        rows = encoded["input_ids"]
        width = max((len(row) for row in rows), default=1) or 1
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    @property
    def max_tokens(self) -> int:
        limit = self.details.get("max_position_embeddings")
        return (
            min(limit, MAX_TEXT_TOKENS) if isinstance(limit, int) and limit > 0 else MAX_TEXT_TOKENS
        )

    def logits(self, module: torch.nn.Module, inputs: Any) -> torch.Tensor:
        """The `forward` every classifier pass uses; `module` may be a fine-tuned copy."""
        if self.n_classes is None:
            raise ModelError(f"{self.spec.path.name} is an encoder without a classification head")
        if isinstance(inputs, dict):
            return module(**inputs).logits
        if self.hf:
            return module(pixel_values=inputs).logits
        return module(inputs)

    def default_layers(self) -> list[str]:
        if self.hf:
            config = self.module.config
            count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0)
            return [f"hidden_states.{i}" for i in range(int(count) + 1)]
        return builtin_nets.activation_layers(self.module)

    @torch.inference_mode()
    def activations(
        self, inputs: Any, layers: Sequence[str], pooling: str
    ) -> dict[str, np.ndarray]:
        """Each layer's activations, one vector per example (token models pooled by `pooling`)."""
        if self.hf:
            return self._hf_activations(inputs, layers, pooling)
        return self._hooked_activations(inputs, layers)

    def _hf_activations(
        self, inputs: Any, layers: Sequence[str], pooling: str
    ) -> dict[str, np.ndarray]:
        kwargs = inputs if isinstance(inputs, dict) else {"pixel_values": inputs}
        output = self.module(**kwargs, output_hidden_states=True)
        states = output.hidden_states
        mask = kwargs.get("attention_mask")
        found: dict[str, np.ndarray] = {}
        for name in layers:
            index = int(name.split(".", 1)[1])
            if not 0 <= index < len(states):
                raise ModelError(f"layer {name}: the model has hidden_states.0-{len(states) - 1}")
            state = states[index].float()
            if state.dim() == 4:  # convolutional maps (batch, channels, h, w): average the map
                pooled = state.mean(dim=(2, 3))
            elif pooling == "cls" or mask is None:
                pooled = state[:, 0] if pooling == "cls" else state.mean(dim=1)
            else:
                weights = mask.unsqueeze(-1).to(state.dtype)
                pooled = (state * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
            found[name] = pooled.cpu().numpy()
        return found

    def _hooked_activations(self, inputs: Any, layers: Sequence[str]) -> dict[str, np.ndarray]:
        if self.spec.format == "torchscript":
            raise ModelError(
                "TorchScript models cannot be probed layer by layer (no forward hooks)"
            )
        modules = dict(self.module.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise ModelError(f"no layers {missing} in the model; it has {sorted(modules)[:20]}")
        captured: dict[str, torch.Tensor] = {}
        handles = [
            modules[name].register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(name, out)
            )
            for name in layers
        ]
        try:
            self.module(inputs)
        finally:
            for handle in handles:
                handle.remove()
        found = {}
        for name in layers:
            value = captured[name].float()
            if value.dim() == 4:
                value = value.mean(dim=(2, 3))  # a channel's activation: its map's mean
            found[name] = value.flatten(1).cpu().numpy()
        return found


def load_classifier(spec: ModelSpec) -> LoadedClassifier:
    """A classifier or encoder; failures are ModelErrors that say what the library said."""
    return explained_load(spec, _load)


def _load(spec: ModelSpec) -> LoadedClassifier:
    device, dtype = pick_device()
    sha = spec.content_sha256()
    config = spec.config or {}
    if spec.format == "builtin":
        architecture = config[builtin_nets.CONFIG_KEY]
        module = builtin_nets.load_builtin(spec.path, architecture).to(device)
        shape = builtin_nets.input_shape(architecture)
        details = {
            "architecture": architecture["name"],
            "input_dim": int(np.prod(shape)),
            "hidden_widths": builtin_nets.hidden_widths(architecture),
        }
        return LoadedClassifier(
            spec,
            module,
            "features",
            device,
            "torch.float32",
            sha,
            input_shape=shape,
            n_classes=architecture["n_classes"],
            details=details,
        )
    if spec.format == "torchscript":
        facts = config[TORCHSCRIPT_KEY]
        module = torch.jit.load(str(spec.path / TORCHSCRIPT_FILE), map_location=device).eval()
        shape = tuple(facts.get("input_shape") or ()) or None
        return LoadedClassifier(
            spec,
            module,
            "features",
            device,
            "torch.float32",
            sha,
            input_shape=shape,
            n_classes=facts.get("n_classes"),
            details={"architecture": "torchscript"},
        )
    return _load_hf(spec, device, dtype, sha)


def _load_hf(spec: ModelSpec, device: str, dtype: Any, sha: str) -> LoadedClassifier:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    architectures = (spec.config or {}).get("architectures") or []
    image = any(name.endswith("ForImageClassification") for name in architectures)
    if spec.gguf_file:
        raise ModelError("GGUF models are read by the LM checks only")
    if spec.kind == "encoder":
        auto = AutoModel
    elif spec.kind == "causal_lm":  # hidden states for `diversity`
        auto = AutoModelForCausalLM
    else:
        auto = AutoModelForImageClassification if image else AutoModelForSequenceClassification
    # Classifier statistics are cheap; float32 keeps near-ties in the softmax apart.
    if spec.pickled:
        hf_config = AutoConfig.from_pretrained(spec.path, **common)
        module = auto.from_config(hf_config, trust_remote_code=False)
        module.load_state_dict(load_pickled_state(spec.path), strict=True)
    else:
        module = auto.from_pretrained(spec.path, use_safetensors=True, **common)
    module.to(device).eval()
    tokenizer = None
    if not image:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_path or spec.path, **common)
    details = hf_details(module.config, architectures)
    if image:
        details["input_shape"] = [
            int(module.config.num_channels),
            int(module.config.image_size),
            int(module.config.image_size),
        ]
    hf_config = module.config
    n_classes = int(hf_config.num_labels) if spec.kind == "classifier" else None
    return LoadedClassifier(
        spec,
        module,
        "features" if image else "text",
        device,
        "torch.float32",
        sha,
        tokenizer=tokenizer,
        input_shape=tuple(details["input_shape"]) if image else None,
        n_classes=n_classes,
        hf=True,
        details=details,
    )


def hf_details(config: Any, architectures: Sequence[str]) -> dict[str, Any]:
    """What `capacity` reads from a transformers config."""
    positions = None
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            positions = value
            break
    return {
        "architecture": architectures[0] if architectures else config.model_type,
        "vocab_size": getattr(config, "vocab_size", None),
        "hidden_size": getattr(config, "hidden_size", None) or getattr(config, "n_embd", None),
        "num_attention_heads": getattr(config, "num_attention_heads", None)
        or getattr(config, "n_head", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None)
        or getattr(config, "n_layer", None),
        "max_position_embeddings": positions,
    }


def as_classifier(loaded: LoadedModel) -> LoadedClassifier:
    """A causal LM seen through the classifier interface: hidden states and config facts for
    `diversity` and `capacity`, sharing the loaded weights (nothing is loaded twice)."""
    config = loaded.model.config
    return LoadedClassifier(
        loaded.spec,
        loaded.model,
        "text",
        loaded.device,
        loaded.dtype,
        loaded.content_sha256,
        tokenizer=loaded.tokenizer,
        n_classes=None,
        hf=True,
        details=hf_details(config, getattr(config, "architectures", None) or []),
    )


# An unlearned model with its original and retrained versions.
_classifiers = ModelCache(load_classifier, 3)


def cached_classifier(spec: ModelSpec) -> LoadedClassifier:
    return _classifiers.get(spec)
