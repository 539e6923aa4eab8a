"""Diffusers pipeline directories: resolved as `diffusion` models, loaded from safetensors with
allow-listed components only, the null class of a class-conditional UNet found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")

from tests.diffusion.builders import small_unet  # noqa: E402
from worker.loaders.diffusion_models import load_pipeline  # noqa: E402
from worker.loaders.errors import ModelError  # noqa: E402
from worker.loaders.models import resolve_model  # noqa: E402


def _pipeline(root: Path, num_class_embeds: int | None = 11) -> Path:
    unet = small_unet(num_class_embeds, width=8)
    unet.save_pretrained(root / "unet")
    diffusers.DDIMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    index = {
        "_class_name": "MemauditClassPipeline",
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def test_a_class_conditional_pipeline_resolves_and_loads(tmp_path) -> None:
    root = _pipeline(tmp_path / "ddpm")
    spec = resolve_model(f"path:{root}", [tmp_path])
    assert (spec.kind, spec.format) == ("diffusion", "diffusers")
    before = spec.content_sha256()
    (root / "unet" / "config.json").write_text((root / "unet" / "config.json").read_text() + " ")
    assert spec.content_sha256() != before  # component folders are part of the identity
    loaded = load_pipeline(root)
    assert loaded.class_conditional and loaded.null_class == 10
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"
    index = json.loads((root / "model_index.json").read_text())
    (root / "model_index.json").write_text(json.dumps({**index, "memaudit_null_class": 0}))
    assert load_pipeline(root).null_class == 0


def test_unsupported_or_unsafe_pipelines_are_refused(tmp_path) -> None:
    root = _pipeline(tmp_path / "ddpm")
    index = json.loads((root / "model_index.json").read_text())
    (root / "model_index.json").write_text(json.dumps({**index, "unet": ["my_pkg", "MyUNet"]}))
    with pytest.raises(ModelError, match="not supported"):
        resolve_model(f"path:{root}", [tmp_path])
    (root / "model_index.json").write_text(json.dumps(index))
    for weights in (root / "unet").glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelError, match=r"no \.safetensors"):
        resolve_model(f"path:{root}", [tmp_path])
    shutil.rmtree(root)
    unconditional = _pipeline(tmp_path / "plain", num_class_embeds=None)
    with pytest.raises(ModelError, match="nothing to guide"):
        load_pipeline(unconditional)
