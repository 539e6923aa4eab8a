"""The small built-in classifier architectures a safetensors state dict can be loaded into.

A directory holds `model.safetensors` and a `config.json` whose `memaudit_architecture` names
one of these with its sizes, so a plain PyTorch MLP or CNN can be audited without running any
code that came with it. `save_builtin` writes that layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.inspection.errors import ModelError
from core.inspection.models import BUILTIN_CONFIG_KEY as CONFIG_KEY


def _positive_ints(config: dict[str, Any], key: str) -> list[int]:
    value = config.get(key)
    values = value if isinstance(value, list) else [value]
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ModelError(f"{CONFIG_KEY}.{key} must be a positive integer or a list of them")
    return values


def build_mlp(config: dict[str, Any]) -> nn.Module:
    """Linear → ReLU per hidden width, then a linear head: `net.0`, `net.1`, ... ."""
    (input_dim,) = _positive_ints(config, "input_dim")
    hidden = _positive_ints(config, "hidden")
    (n_classes,) = _positive_ints(config, "n_classes")
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(nn.Flatten(), *layers)


def build_small_cnn(config: dict[str, Any]) -> nn.Module:
    """3×3 convolution → ReLU → 2×2 max-pool per channel count, then a linear head."""
    (in_channels,) = _positive_ints(config, "in_channels")
    (height,) = _positive_ints(config, "height")
    (width,) = _positive_ints(config, "width")
    channels = _positive_ints(config, "channels")
    (n_classes,) = _positive_ints(config, "n_classes")
    layers: list[nn.Module] = []
    previous = in_channels
    for size in channels:
        layers += [nn.Conv2d(previous, size, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        previous = size
        height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ModelError("small_cnn: too many pooling stages for the input size")
    layers += [nn.Flatten(), nn.Linear(previous * height * width, n_classes)]
    return nn.Sequential(*layers)


BUILDERS = {"mlp": build_mlp, "small_cnn": build_small_cnn}


def input_shape(config: dict[str, Any]) -> tuple[int, ...]:
    if config["name"] == "mlp":
        return (config["input_dim"],)
    return (config["in_channels"], config["height"], config["width"])


def hidden_widths(config: dict[str, Any]) -> list[int]:
    return list(config["hidden"]) if config["name"] == "mlp" else []


def build(config: Any) -> nn.Module:
    if not isinstance(config, dict) or config.get("name") not in BUILDERS:
        raise ModelError(f"{CONFIG_KEY}.name must be one of {sorted(BUILDERS)}")
    return BUILDERS[config["name"]](config)


def activation_layers(module: nn.Module) -> list[str]:
    """The modules whose outputs `diversity` reads by default: each hidden ReLU."""
    return [name for name, child in module.named_modules() if isinstance(child, nn.ReLU)]


def save_builtin(directory: Path, architecture: dict[str, Any], module: nn.Module) -> Path:
    """Write `module` as a built-in classifier directory memaudit can load."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    build(architecture)  # the architecture must be one memaudit can rebuild
    state = {
        name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()
    }
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({CONFIG_KEY: architecture}, indent=2))
    return directory


def load_builtin(directory: Path, architecture: dict[str, Any]) -> nn.Module:
    from safetensors.torch import load_file

    module = build(architecture)
    files = sorted(directory.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"the weights in {directory.name} do not fit {architecture['name']}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return module.eval()
