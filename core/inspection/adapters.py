"""LoRA adapters (PEFT's layout) checked without loading: an adapter is audited on the base the
audit names as its reference model, never on the one its config names."""

from __future__ import annotations

import os
import re
import struct
from typing import Any

from core.confinement import PathRefused, Pinned
from core.inspection.errors import ModelError
from core.inspection.weight_files import PICKLED_SUFFIXES, SAFETENSORS_MAX_HEADER, read_json_file
from core.json_input import JsonRefused, loads

ADAPTER_FORMAT = "peft_lora"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Variants peft's mixed-batch forward (target and base in one pass) does not serve.
UNSUPPORTED_FLAGS = ("use_dora",)
# The only tensors a LoRA adapter may carry: its low-rank factors (peft's saved names). Any other
# name is loaded by peft into the base model's own weights (the cached reference model).
LORA_KEY = re.compile(
    r"^base_model\.model\..+\.(lora_A\.weight|lora_B\.weight|lora_B\.bias"
    r"|lora_embedding_A|lora_embedding_B)$"
)


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
    check_adapter_tensors(pinned, config, rest)
    flagged = [flag for flag in UNSUPPORTED_FLAGS if config.get(flag)]
    if flagged:
        raise ModelError(
            f"{rest} sets {', '.join(flagged)}: such adapters cannot run beside their base in "
            "one batched pass, and are not audited"
        )
    return config


def safetensors_names(descriptor: int) -> list[str]:
    """The tensor names in a safetensors file's header, read without loading any tensor."""
    size = os.fstat(descriptor).st_size
    head = os.pread(descriptor, 8, 0)
    if len(head) < 8:
        raise ModelError(f"{ADAPTER_WEIGHTS} is too short for a safetensors header")
    (length,) = struct.unpack("<Q", head)
    if length > min(size - 8, SAFETENSORS_MAX_HEADER):
        raise ModelError(f"{ADAPTER_WEIGHTS} has a header of {length} bytes; refused")
    try:
        header = loads(os.pread(descriptor, length, 8), max_depth=4)
    except JsonRefused as exc:
        raise ModelError(f"{ADAPTER_WEIGHTS} has no valid header: {exc.reason}") from None
    if not isinstance(header, dict):
        raise ModelError(f"{ADAPTER_WEIGHTS} has no valid header")
    return [name for name in header if name != "__metadata__"]


def foreign_tensors(names: list[str], config: dict[str, Any]) -> list[str]:
    """Names that are neither LoRA factors nor a module the config declares in modules_to_save
    (peft keeps such a module as its own copy, which is what the adapter's tensor fills)."""
    declared = config.get("modules_to_save") or []
    if isinstance(declared, str):
        declared = [declared]
    saved = [m for m in declared if isinstance(m, str) and m]
    foreign = []
    for name in names:
        if LORA_KEY.match(name):
            continue
        module = "." + name.removeprefix("base_model.model.").rpartition(".")[0]
        if name.startswith("base_model.model.") and any(module.endswith("." + m) for m in saved):
            continue
        foreign.append(name)
    return foreign


def check_adapter_tensors(pinned: Pinned, config: dict[str, Any], rest: str) -> None:
    """Refuses an adapter file that carries any tensor but LoRA factors and declared
    modules_to_save: peft would load it into the base model's weights."""
    file = pinned.file(ADAPTER_WEIGHTS)
    if file is None:
        raise ModelError(f"no {ADAPTER_WEIGHTS} in {rest}")
    try:
        descriptor = file.reopen()
    except PathRefused as exc:
        raise ModelError(str(exc)) from None
    try:
        names = safetensors_names(descriptor)
    finally:
        os.close(descriptor)
    foreign = foreign_tensors(names, config)
    if foreign:
        raise ModelError(
            f"{rest}'s {ADAPTER_WEIGHTS} holds {len(foreign)} tensor(s) that are not LoRA "
            f"weights (e.g. {foreign[0]!r}); refused: an adapter may change only its own layers"
        )
