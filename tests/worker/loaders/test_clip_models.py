"""CLIP alignment: a CLIP model directory resolves, loads from safetensors, and its score is the
cosine transformers itself computes (CLIPModel's logits divided by their scale)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from core.inspection.errors import ModelError  # noqa: E402
from core.inspection.models import resolve_model  # noqa: E402
from worker.engine.diffusion.alignment import clip_pixels  # noqa: E402
from worker.loaders.clip_models import cached_clip  # noqa: E402

PROMPTS = ["a photo of a cat", "the mona lisa", "a handwritten seven"]


def tiny_clip(root: Path, image_size: int = 16) -> Path:
    """An untrained CLIP: two one-layer towers, a byte-level tokenizer trained on the spot."""
    from worker.demo import build_tokenizer

    tokenizer = build_tokenizer(PROMPTS, vocab_size=300)
    tokenizer.model_max_length = 16
    tokenizer.save_pretrained(root)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    config = transformers.CLIPConfig(
        text_config={
            **tower,
            "num_attention_heads": 2,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 16,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            **tower,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 4,
        },
        projection_dim=16,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(root)
    return root


def test_the_clip_score_is_the_cosine_clip_itself_computes(tmp_path) -> None:
    root = tiny_clip(tmp_path / "clip")
    spec = resolve_model(f"path:{root}", [tmp_path])
    assert spec.kind == "encoder"
    clip = cached_clip(spec)
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    scores = clip.score(images, PROMPTS)
    expected = []
    with torch.inference_mode():
        for i, prompt in enumerate(PROMPTS):
            tokens = clip.tokenizer([prompt], return_tensors="pt")
            out = clip.model(pixel_values=clip_pixels(images[i : i + 1], 16), **tokens)
            # logits_per_image = exp(logit_scale)·cos(image, text)
            expected.append(float(out.logits_per_image[0, 0] / clip.model.logit_scale.exp()))
    expected = torch.tensor(expected)
    assert torch.allclose(torch.tensor(scores), expected, atol=1e-5)
    assert len(set(round(s, 6) for s in scores)) == 3  # three different pairs, three scores
    # A prompt's score does not depend on the prompts scored beside it.
    alone = clip.score(images[1:2], PROMPTS[1:2])[0]
    assert alone == pytest.approx(scores[1], abs=1e-5)


def test_clip_pixels_match_clip_s_own_processor(tmp_path) -> None:
    """Rescale to [0, 1] and CLIP's normalization, as CLIPImageProcessor does them."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    processor = transformers.CLIPImageProcessor(do_resize=False, do_center_crop=False)
    unit = ((images + 1) / 2).numpy()
    expected = processor(list(unit), do_rescale=False, return_tensors="pt").pixel_values
    assert torch.allclose(clip_pixels(images, 16), expected, atol=1e-5)
    assert clip_pixels(images[:, :1], 32).shape == (2, 3, 32, 32)  # grey repeated, resized


def test_a_model_that_is_not_clip_is_refused(tmp_path) -> None:
    root = tiny_clip(tmp_path / "clip")
    config = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(ModelError, match="not a CLIP model"):
        cached_clip(resolve_model(f"path:{root}", [tmp_path]))
