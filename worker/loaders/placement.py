"""Where a causal LM's weights go: one device, or a device map across a worker's GPUs.

A model whose weights do not fit the first GPU's budget is split by accelerate's
`infer_auto_device_map` over the per-device budgets, whole decoder blocks at a time
(`_no_split_modules`), with the output head (and an input embedding tied to it) pinned to the
first device: the head's statistics read its weight there, next to where the inputs start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch loads where a model does, not where this module is imported
    import torch

Budgets = dict[int | str, int]
DeviceMap = dict[str, int | str]
# A GPU the configuration gives no budget: this share of its memory for weights, the rest for
# the forward's activations and the head's chunks.
DEFAULT_GPU_SHARE = 0.9


@dataclass(frozen=True)
class Placement:
    device: str  # where input ids go: the first device of the map, or the whole model's
    device_map: DeviceMap | None = None  # None: the whole model on `device`


def _empty_model(config: Any, dtype: torch.dtype) -> torch.nn.Module:
    """The model's modules on the meta device: shapes and sizes without any weights."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
    model.tie_weights()
    return model


def _bytes(module: torch.nn.Module) -> int:
    """Parameters (a tied one once) and buffers, at their dtype's width."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def model_bytes(config: Any, dtype: torch.dtype) -> int:
    """The bytes the model's weights take on a device, from its config alone."""
    return _bytes(_empty_model(config, dtype))


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, found in model.named_modules() if found is module)


def _split_out(device_map: DeviceMap, model: torch.nn.Module, name: str) -> None:
    """Replace the entry that holds module `name` by entries for its parts, until `name`
    has an entry of its own (a finer map places the same weights on the same devices)."""
    while name not in device_map:
        holder = next(k for k in device_map if k == "" or name.startswith(k + "."))
        device = device_map.pop(holder)
        parent = model.get_submodule(holder)
        prefix = f"{holder}." if holder else ""
        for child, _ in parent.named_children():
            device_map[prefix + child] = device
        for tensor_name, _ in [
            *parent.named_parameters(recurse=False),
            *parent.named_buffers(recurse=False),
        ]:
            device_map[prefix + tensor_name] = device


def plan_device_map(config: Any, budgets: Budgets, dtype: torch.dtype) -> DeviceMap:
    """Module name -> device for a model split over `budgets` (bytes per device, in the order
    devices fill; the first is where the head is pinned). Nothing is loaded: the plan is made
    on the meta device. Raises ValueError when the budgets cannot hold the model."""
    from accelerate import infer_auto_device_map

    model = _empty_model(config, dtype)
    first = next(iter(budgets))
    head = model.get_output_embeddings()
    embedding = model.get_input_embeddings()
    pinned = [_module_name(model, head)]
    if embedding.weight is head.weight:  # tied: one tensor, which the head reads
        pinned.append(_module_name(model, embedding))
    pinned_bytes = _bytes(head)
    if pinned_bytes > budgets[first]:
        raise ValueError(f"the output head ({pinned_bytes:,} bytes) exceeds {first}'s budget")
    # The pinned modules' room is kept on the first device before the rest is planned.
    planned_budgets = {**budgets, first: budgets[first] - pinned_bytes}
    device_map = dict(
        infer_auto_device_map(
            model,
            max_memory=planned_budgets,
            no_split_module_classes=list(model._no_split_modules or []),
            dtype=dtype,
        )
    )
    for name in pinned:
        _split_out(device_map, model, name)
        device_map[name] = first
    placed = {device: 0 for device in budgets}
    for name, device in device_map.items():
        placed[device] = placed.get(device, 0) + _bytes_of(model, name, pinned)
    over = {d: b for d, b in placed.items() if d in budgets and b > budgets[d]}
    if set(device_map.values()) - set(budgets) or over:
        raise ValueError(f"the model ({_bytes(model):,} bytes) does not fit the budgets {budgets}")
    return device_map


def _bytes_of(model: torch.nn.Module, name: str, pinned: list[str]) -> int:
    """Bytes of a map entry (a module or one tensor); a tied tensor counts at the head only."""
    if name in pinned[1:]:
        return 0
    try:
        return _bytes(model.get_submodule(name))
    except AttributeError:
        pass
    try:
        tensor = model.get_parameter(name)
    except AttributeError:
        tensor = model.get_buffer(name)
    return tensor.numel() * tensor.element_size()


def gpu_budgets(gpus: list[int], configured: Budgets) -> Budgets:
    """The configured budget of each owned GPU (DEFAULT_GPU_SHARE of its memory if none), then
    `cpu` where the configuration gives one."""
    import torch

    budgets: Budgets = {}
    for gpu in gpus:
        total = torch.cuda.get_device_properties(gpu).total_memory
        budgets[gpu] = configured.get(gpu, int(DEFAULT_GPU_SHARE * total))
    if "cpu" in configured:
        budgets["cpu"] = configured["cpu"]
    return budgets


def choose_placement(
    config: Any, dtype: torch.dtype, device: str, gpus: list[int], configured: Budgets
) -> Placement:
    """The whole model on one device when it fits the first GPU's budget or the worker owns
    one device; else a device map over the owned GPUs (and `cpu` if budgeted)."""
    if device != "cuda":
        return Placement(device)
    import torch

    gpus = gpus or [torch.cuda.current_device()]
    first = f"cuda:{gpus[0]}"
    budgets = gpu_budgets(gpus, configured)
    if len(budgets) == 1 or model_bytes(config, dtype) <= budgets[gpus[0]]:
        return Placement(first)
    return Placement(first, plan_device_map(config, budgets, dtype))
