"""Re-scoring fragile extraction windows in float32 (docs/numerics.md, "Re-check").

A window whose greedy verdict lies within the pass's rounding bound is scored again with the
model computing in float32: from an upcast copy when one fits in memory, else with each module's
weights upcast just while it runs (forward hooks), so only one module's float32 copy exists.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import torch

from worker.engine.batching import cuda_free_bytes

# Headroom over the float32 weights for the activations of a re-check batch.
COPY_HEADROOM = 1.25


def computes_below_float32(model: torch.nn.Module) -> bool:
    """Whether a float32 re-check is more precise than the pass (bf16 or fp16 weights)."""
    return model.get_output_embeddings().weight.dtype in (torch.bfloat16, torch.float16)


def free_bytes(device: str | torch.device) -> int:
    device = torch.device(device)
    if device.type == "cuda":  # the allocator's unused cache counts: the pass just freed it
        return cuda_free_bytes(device)
    return int(psutil.virtual_memory().available)


def float32_bytes(model: torch.nn.Module) -> int:
    return 4 * sum(p.numel() for p in model.parameters())


@contextmanager
def float32_compute(
    model: torch.nn.Module, device: str | torch.device, budget_bytes: int | None = None
) -> Iterator[torch.nn.Module]:
    """The model computing in float32. `budget_bytes` (default: free memory on `device`)
    decides between an upcast copy and per-module upcasting; the model is left as it was."""
    budget = free_bytes(device) if budget_bytes is None else budget_bytes
    if float32_bytes(model) * COPY_HEADROOM <= budget:
        upcast = copy.deepcopy(model).float()
        try:
            yield upcast
        finally:
            del upcast
        return
    handles = []
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_pre_hook(_upcast_module, with_kwargs=True))
            handles.append(module.register_forward_hook(_restore_module))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        # A forward that raised (out of memory, a time limit) skipped its restoring hook; the
        # cached model must not keep float32 weights for the next audit.
        for module in model.modules():
            if hasattr(module, "_memaudit_saved"):
                _restore(module)


def _to_float32(value: object) -> object:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    return value


def _upcast_module(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Swap the module's own weights for float32 copies, and its inputs with them."""
    saved = {}
    for name, param in module.named_parameters(recurse=False):
        saved[name] = param.data
        param.data = param.data.float()
    module._memaudit_saved = saved  # type: ignore[assignment]
    return tuple(_to_float32(a) for a in args), {k: _to_float32(v) for k, v in kwargs.items()}


def _restore_module(module: torch.nn.Module, _args: tuple, output: object) -> object:
    _restore(module)
    return output


def _restore(module: torch.nn.Module) -> None:
    """Put back the module's own weights that `_upcast_module` swapped out."""
    for name, param in module.named_parameters(recurse=False):
        param.data = module._memaudit_saved[name]  # type: ignore[index]
    del module._memaudit_saved
