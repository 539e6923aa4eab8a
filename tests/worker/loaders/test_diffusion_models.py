"""Diffusers pipeline directories: resolved as `diffusion` models, loaded from safetensors with
allow-listed components only, the null class of a class-conditional UNet found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from core.inspection.errors import ModelError  # noqa: E402
from core.inspection.models import resolve_model  # noqa: E402
from tests.worker.checks.diffusion.builders import small_unet  # noqa: E402
from worker.loaders.diffusion_models import load_pipeline  # noqa: E402


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
    loaded = load_pipeline(resolve_model(f"path:{root}", [tmp_path]))
    assert loaded.class_conditional and loaded.null_class == 10
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"
    index = json.loads((root / "model_index.json").read_text())
    (root / "model_index.json").write_text(json.dumps({**index, "memaudit_null_class": 0}))
    assert load_pipeline(resolve_model(f"path:{root}", [tmp_path])).null_class == 0


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
        load_pipeline(resolve_model(f"path:{unconditional}", [tmp_path]))


def _text_pipeline(root: Path) -> Path:
    """An untrained text-conditional pipeline: a tiny CLIP text encoder and a cross-attention
    UNet; enough to run every diffusion check through the prompt path."""
    import transformers

    from worker.demo import build_tokenizer

    tokenizer = build_tokenizer(["a photo of a cat", "the mona lisa"], vocab_size=300)
    tokenizer.model_max_length = 16
    tokenizer.save_pretrained(root / "tokenizer")
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    transformers.CLIPTextModel(config).save_pretrained(root / "text_encoder")
    diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=32,
        attention_head_dim=4,
    ).save_pretrained(root / "unet")
    diffusers.DDIMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
    }
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def test_a_text_conditional_pipeline_runs_every_diffusion_check(tmp_path) -> None:
    import numpy as np

    from core.inspection.datasets import DatasetError, Record
    from worker.checks.diffusion.passes import DiffusionContext
    from worker.checks.registry import REGISTRY

    root = _text_pipeline(tmp_path / "text")
    assert resolve_model(f"path:{root}", [tmp_path]).kind == "diffusion"
    pipeline = load_pipeline(resolve_model(f"path:{root}", [tmp_path]))
    assert not pipeline.class_conditional and pipeline.text_encoder is not None
    training = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype("float32")
    context = DiffusionContext(pipeline, 4, lambda _uri: (training, None))
    records = [
        Record(i, i + 1, {"id": f"p{i}", "prompt": text})
        for i, text in enumerate(["a photo of a cat", "the mona lisa"])
    ]
    common = {"training_images": "path:/unused.npz", "num_steps": 6}
    for kind, extra in [
        ("cfg_basin", {}),
        ("cfg_mitigation", {"methods": ["cfg", "dtp"]}),
        ("lid", {"t0": 50, "lpca_neighbors": 5, "t0_grid": [50]}),
    ]:
        check = REGISTRY.get_check(kind)
        params = check.parse_params({**common, **extra})
        rows = check.compute(context, records, params)
        assert len(rows) == 2
        check.summarize(rows, params)
    basin = REGISTRY.get_check("cfg_basin").compute(
        context, records, REGISTRY.get_check("cfg_basin").parse_params(common)
    )
    assert basin[0]["detail"]["runs"][0]["clip"] is None  # no CLIP model given
    assert len(basin[0]["detail"]["runs"][0]["deltas"]) == 6
    assert basin[0]["nearest_label"] is None  # no labels: similarity only
    with pytest.raises(DatasetError, match="prompt"):
        REGISTRY.get_check("cfg_basin").compute(
            context,
            [Record(0, 1, {"class_label": 3})],
            REGISTRY.get_check("cfg_basin").parse_params(common),
        )


def test_text_generations_are_scored_against_their_prompts_by_clip(tmp_path) -> None:
    """With a CLIP model, a mitigation's alignment is the mean CLIP score of its generations
    with their prompts, and its cost is plain CFG's score minus its own."""
    import numpy as np

    from core.inspection.datasets import Record
    from tests.worker.loaders.test_clip_models import tiny_clip
    from worker.checks.diffusion.passes import DiffusionContext
    from worker.checks.registry import REGISTRY
    from worker.loaders.clip_models import cached_clip

    pipeline = load_pipeline(resolve_model(f"path:{_text_pipeline(tmp_path / 'text')}", [tmp_path]))
    clip_dir = tiny_clip(tmp_path / "clip")
    training = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype("float32")
    context = DiffusionContext(
        pipeline,
        4,
        lambda _uri: (training, None),
        load_clip=lambda uri: cached_clip(resolve_model(uri, [tmp_path])),
    )
    records = [
        Record(i, i + 1, {"id": f"p{i}", "prompt": text})
        for i, text in enumerate(["a photo of a cat", "the mona lisa"])
    ]
    check = REGISTRY.get_check("cfg_mitigation")
    params = check.parse_params(
        {
            "training_images": "path:/unused.npz",
            "num_steps": 6,
            "seeds": [1, 2],
            "methods": ["cfg", "stp"],
            "clip_model": f"path:{clip_dir}",
        }
    )
    rows = check.compute(context, records, params)
    clip = cached_clip(resolve_model(f"path:{clip_dir}", [tmp_path]))
    for record, row in zip(records, rows, strict=True):
        for method, runs in row["detail"]["runs"].items():
            scores = [r["clip"] for r in runs]
            assert all(isinstance(s, float) and -1 <= s <= 1 for s in scores)
            assert row["aligned"][method] == pytest.approx(np.mean(scores))
        # The score is of the generation itself: recomputed from its (unshrunk 8×8) pixels.
        image = torch.tensor(row["detail"]["runs"]["cfg"][0]["image"])[None]
        again = clip.score(image, [record.data["prompt"]])[0]
        assert again == pytest.approx(row["detail"]["runs"]["cfg"][0]["clip"], abs=1e-3)
    summary = check.summarize(rows, params)
    assert summary["alignment_measure"] == "clip"
    methods = summary["methods"]
    assert methods["cfg"]["alignment_cost"] == 0
    expected = methods["cfg"]["alignment"] - methods["stp"]["alignment"]
    assert methods["stp"]["alignment_cost"] == pytest.approx(expected)


def test_params_stored_before_the_copy_encoder_still_read_as_they_ran() -> None:
    from worker.checks.registry import REGISTRY

    check = REGISTRY.get_check("cfg_mitigation")
    stored = {
        "training_images": "path:/x.npz",
        "embedding_model": None,
        "similarity_threshold": 0.9,
    }
    params = check.parse_params(stored)
    assert (params.embedding, params.threshold()) == ("pixels", 0.9)
    own = check.parse_params({**stored, "embedding_model": "path:/m"})
    assert own.embedding == "path:/m"
    fresh = check.parse_params({"training_images": "path:/x.npz"})
    assert fresh.embedding == "copy_encoder" and fresh.similarity_threshold is None
