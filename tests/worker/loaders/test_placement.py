"""Models larger than one GPU: device maps planned on the meta device under stated budgets, and
a model split by one that scores exactly as the whole model does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, GPT2Config, LlamaConfig

from core.inspection.models import resolve_model
from worker.engine.schemes import GREEDY, Scheme
from worker.engine.scoring import ScoringRequest, score_sequences
from worker.loaders.models import _load_causal_lm
from worker.loaders.placement import Placement, _empty_model, model_bytes, plan_device_map

GPT2 = GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=4, n_head=2)  # tied head
LLAMA = LlamaConfig(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    tie_word_embeddings=False,
)


def placed_bytes(config, device_map, dtype) -> dict:
    """Bytes per device, each tensor counted once, under the device map's longest prefix."""
    model = _empty_model(config, dtype)
    seen, placed = set(), {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        holders = [k for k in device_map if k == "" or name == k or name.startswith(k + ".")]
        assert holders, f"{name} has no device"
        device = device_map[max(holders, key=len)]
        placed[device] = placed.get(device, 0) + tensor.numel() * tensor.element_size()
    return placed


@pytest.mark.parametrize("config", [GPT2, LLAMA], ids=["gpt2-tied", "llama"])
def test_a_split_pins_the_head_to_the_first_gpu_within_the_budgets(config) -> None:
    dtype = torch.bfloat16
    total = model_bytes(config, dtype)
    budgets = {0: total // 2, 1: total, "cpu": total}  # GPU 0 cannot hold it all
    device_map = plan_device_map(config, budgets, dtype)
    assert device_map["lm_head"] == 0
    if config.tie_word_embeddings:  # the head's weight is the embedding's
        assert device_map["transformer.wte"] == 0
    placed = placed_bytes(config, device_map, dtype)
    assert set(placed) >= {0, 1}  # split for real
    assert all(placed[device] <= budgets[device] for device in placed)
    assert sum(placed.values()) == total


def test_budgets_that_cannot_hold_the_model_are_refused() -> None:
    total = model_bytes(GPT2, torch.float32)
    with pytest.raises(ValueError, match=r"does not fit|exceeds"):
        plan_device_map(GPT2, {0: total // 4, 1: total // 4}, torch.float32)


def test_a_model_split_by_a_device_map_scores_as_the_whole(tiny_lm) -> None:
    spec = resolve_model(f"path:{tiny_lm.model_dir}", [tiny_lm.model_dir.parent])
    config = AutoConfig.from_pretrained(tiny_lm.model_dir)
    total = model_bytes(config, torch.float32)
    # The CPU holds the head and the tied embedding and a little more; the blocks go to disk
    # and are brought in by accelerate's hooks layer by layer, as they would be to a second GPU.
    device_map = plan_device_map(config, {"cpu": total // 2, "disk": 2 * total}, torch.float32)
    assert device_map["lm_head"] == "cpu" and "disk" in device_map.values()
    split = _load_causal_lm(spec, Placement("cpu", device_map))
    whole = _load_causal_lm(spec, Placement("cpu"))
    assert split.model.hf_device_map == device_map
    texts = ["the canary sings a secret number 4711", "short text", "Customer " * 9]
    requests = [
        ScoringRequest(whole.encode(t), detail_positions=range(1, 4), moments=True) for t in texts
    ]
    schemes = [GREEDY, Scheme(top_k=5)]
    for a, b in zip(
        score_sequences(split.model, requests, split.device, schemes=schemes),
        score_sequences(whole.model, requests, whole.device, schemes=schemes),
        strict=True,
    ):
        np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.sigma, b.sigma, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(a.ranks, b.ranks)
        np.testing.assert_array_equal(a.argmax_match, b.argmax_match)
        np.testing.assert_allclose(a.scheme_logprobs["topk5_T1"], b.scheme_logprobs["topk5_T1"])
