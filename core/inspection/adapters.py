"""LoRA adapters (PEFT's layout) checked without loading: an adapter is audited on the base the
audit names as its reference model, never on the one its config names."""

from __future__ import annotations

from typing import Any

from core.confinement import Pinned
from core.inspection.errors import ModelError
from core.inspection.weight_files import PICKLED_SUFFIXES, read_json_file

ADAPTER_FORMAT = "peft_lora"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Variants peft's mixed-batch forward (target and base in one pass) does not serve.
UNSUPPORTED_FLAGS = ("use_dora",)


def is_adapter(names: list[str]) -> bool:
    """An adapter directory: PEFT's config and no model config of its own."""
    return ADAPTER_CONFIG in names and "config.json" not in names


def inspect_adapter(rest: str, pinned: Pinned) -> dict[str, Any]:
    """The adapter's config, once its weights are known to be safetensors and its type LoRA."""
    names = pinned.names()
    pickled = [name for name in names if name.endswith(PICKLED_SUFFIXES)]
    if pickled:
        # An adapter's .bin is a pickle: refused whatever the pickle setting, never unpickled.
        raise ModelError(
            f"{rest} holds pickled adapter weights ({', '.join(pickled)}); only "
            f"{ADAPTER_WEIGHTS} is read: save the adapter with safe_serialization=True"
        )
    if ADAPTER_WEIGHTS not in names:
        raise ModelError(f"no {ADAPTER_WEIGHTS} in {rest}")
    config = read_json_file(pinned, ADAPTER_CONFIG)
    if not isinstance(config, dict):
        raise ModelError(f"{ADAPTER_CONFIG} in {rest} is not a JSON object")
    if config.get("peft_type") != "LORA":
        raise ModelError(
            f"{rest} is a {config.get('peft_type')!r} adapter: only LoRA adapters are audited"
        )
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise ModelError(f"{rest} adapts a {config['task_type']} model, not a causal LM")
    flagged = [flag for flag in UNSUPPORTED_FLAGS if config.get(flag)]
    if flagged:
        raise ModelError(
            f"{rest} sets {', '.join(flagged)}: such adapters cannot run beside their base in "
            "one batched pass, and are not audited"
        )
    return config
