"""What a diffusers pipeline directory holds (`model_index.json`), checked without loading:
which component classes, and safetensors weights for each."""

from __future__ import annotations

from typing import Any

from core.confinement import Pinned
from core.inspection.errors import ModelError
from core.inspection.weight_files import read_json_file

INDEX = "model_index.json"
UNETS = {"UNet2DModel", "UNet2DConditionModel"}
SCHEDULERS = {"DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler"}
TEXT_ENCODERS = {"CLIPTextModel"}
VAES = {"AutoencoderKL"}
NULL_CLASS_KEY = "memaudit_null_class"


def read_index(pinned: Pinned) -> dict[str, Any]:
    """model_index.json, checked: a UNet and a scheduler of allowed classes, safetensors only."""
    name = pinned.located.path.name
    index = read_json_file(pinned, INDEX)
    if not isinstance(index, dict):
        raise ModelError(f"{INDEX} in {name} is not a JSON object")
    allowed = {"unet": UNETS, "scheduler": SCHEDULERS, "text_encoder": TEXT_ENCODERS, "vae": VAES}
    for component in ("unet", "scheduler"):
        if component not in index:
            raise ModelError(f"{name}: the pipeline has no {component}")
    for component, entry in index.items():
        if (
            component.startswith("_")
            or component == NULL_CLASS_KEY
            or component in ("tokenizer", "safety_checker", "feature_extractor")
        ):
            continue
        if entry is None or (isinstance(entry, list) and len(entry) == 2 and entry[1] is None):
            continue
        if (
            component not in allowed
            or not isinstance(entry, list)
            or len(entry) != 2
            or entry[1] not in allowed[component]
        ):
            raise ModelError(f"{name}: pipeline component {component}={entry} is not supported")
        weights = [n for n in pinned.names(component) if n.endswith(".safetensors")]
        if component != "scheduler" and not weights:
            raise ModelError(f"{name}/{component} has no .safetensors weights")
    return index
