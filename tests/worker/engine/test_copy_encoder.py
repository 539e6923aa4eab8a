"""The bundled copy-detection encoder: it loads from safetensors, ignores brightness and
contrast, and on images no training step saw it finds an edited copy's source far more often
than pixels do, with the shipped threshold separating copies from distinct images."""

from __future__ import annotations

import torch

from scripts.train_copy_encoder import copy_figures, heldout, pixels
from worker.engine.diffusion import copy_encoder as ce


def test_the_bundled_weights_load_and_embed_to_unit_vectors() -> None:
    images = torch.rand(5, 3, 40, 30, generator=torch.Generator().manual_seed(0))
    found = ce.embed(images)
    assert found.shape == (5, ce.DIM)
    assert torch.allclose(found.norm(dim=1), torch.ones(5, dtype=found.dtype), atol=1e-5)
    # Brightness and contrast are not copy evidence: a rescaled image embeds the same.
    assert torch.allclose(ce.embed(0.5 * images + 0.2), found, atol=1e-4)
    grey = images[:, :1]
    assert torch.allclose(ce.embed(grey), ce.embed(grey.expand(-1, 3, -1, -1)), atol=1e-4)
    assert ce.embed(images[:0]).shape == (0, ce.DIM)


def test_other_layouts_are_refused_with_the_way_out() -> None:
    import pytest

    with pytest.raises(ValueError, match="'pixels' embedding"):
        ce.prepare(torch.zeros(2, 4, 8, 8))


def test_held_out_copies_are_found_and_distinct_images_kept_apart() -> None:
    threshold = ce.threshold()
    model, card = ce.bundled()
    sets = heldout()
    found = {}
    for name, images in sets.items():
        generator = torch.Generator().manual_seed(99)  # not the card's seed: fresh edits
        encoder = copy_figures(model, images, generator, threshold)
        baseline = copy_figures(pixels, images, torch.Generator().manual_seed(99))
        found[name] = (encoder, baseline)
        print(
            f"\n{name}: top-1 encoder {encoder['top1']:.3f} vs pixels {baseline['top1']:.3f}; "
            f"detected {encoder['detected']:.3f}, false copies {encoder['false_copies']:.3f} "
            f"at {threshold:.3f}"
        )
        assert encoder["top1"] > baseline["top1"] + 0.25, name
    # Digits and shapes are distinct images; crops of one photo strip overlap, so there only
    # the ranking is asked for.
    for name in ("digits", "shapes"):
        encoder = found[name][0]
        assert encoder["false_copies"] <= 0.03 and encoder["detected"] >= 0.5, name
    assert card["threshold"] == threshold
