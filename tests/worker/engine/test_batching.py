"""Batches by tokens: the planner's invariants, the budget's formula, and scores it leaves alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig

from worker.engine.batching import (
    SAFETY_FRACTION,
    activation_bytes_per_token,
    plan_batches,
    plan_token_batches,
    token_budget,
)
from worker.engine.schemes import Scheme
from worker.engine.scoring import ScoringRequest, score_sequences
from worker.local import load_local


def long_tailed_lengths(n: int = 1000, seed: int = 0) -> list[int]:
    """Text lengths as corpora have them: log-normal, median ~150 tokens, a tail to 4,096."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=5.0, sigma=1.0, size=n), 1, 4096).astype(int).tolist()


def padded_and_useful(lengths: list[int], batches: list[list[int]]) -> tuple[int, int]:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return padded, sum(lengths)


@pytest.mark.parametrize("budget", [512, 8192, 65536])
def test_every_index_once_within_the_budget(budget: int) -> None:
    lengths = long_tailed_lengths()
    batches = plan_token_batches(lengths, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        # Only a text longer than the budget may exceed it, and then it is alone.
        assert len(batch) * width <= budget or len(batch) == 1


def test_padding_is_a_small_share_of_a_long_tailed_mix() -> None:
    lengths = long_tailed_lengths()
    padded, useful = padded_and_useful(lengths, plan_token_batches(lengths, 16384))
    assert padded / useful <= 1.1
    # Sixteen texts at a time, in the same sorted order, pad more.
    fixed = padded_and_useful(lengths, plan_batches(lengths, 16))[0]
    assert padded < fixed


def test_max_batch_caps_rows_and_a_long_text_stands_alone() -> None:
    batches = plan_token_batches([10] * 50 + [5000], token_budget=1000, max_batch=8)
    assert batches[0] == [50]  # longest first, over the budget, alone
    assert all(len(b) <= 8 for b in batches)
    assert plan_token_batches([], 100) == []
    with pytest.raises(ValueError, match="positive"):
        plan_token_batches([3], 0)


def test_budget_formula_on_a_stated_config() -> None:
    # Llama-3-8B's shape in bf16: H 4,096, 32 heads, 8 KV heads of 128, I 14,336.
    config = LlamaConfig(
        hidden_size=4096,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        num_hidden_layers=1,
        vocab_size=32,
    )
    per_token = 2 * (7 * 4096 + 2 * 8 * 128 + 3 * 14336 + 2048)
    assert activation_bytes_per_token(config, 2, length=2048) == per_token
    with_scores = 2 * (7 * 4096 + 2 * 1024 + 3 * 14336 + 2048 + 32 * 2048)
    assert activation_bytes_per_token(config, 2, 2048, scores_materialised=True) == with_scores

    model = torch.nn.Linear(1, 1).to(torch.bfloat16)
    model.config = config  # type: ignore[assignment]
    free = 40 * 1024**3  # 40 GiB free on the device
    budget = token_budget(model, "cuda", free_bytes=free, length=2048)
    assert budget == int(SAFETY_FRACTION * free) // per_token == 141_699
    # A float32 re-check of the bf16 weights holds float32 activations: half the tokens.
    upcast = token_budget(model, "cuda", free_bytes=free, length=2048, compute_dtype=torch.float32)
    assert upcast == int(SAFETY_FRACTION * free) // (2 * per_token)
    # Eager attention on CUDA holds the scores, as the CPU path does.
    config._attn_implementation = "eager"
    eager = token_budget(model, "cuda", free_bytes=free, length=2048)
    assert eager == int(SAFETY_FRACTION * free) // with_scores


def test_scores_do_not_depend_on_the_plan(tiny_lm) -> None:
    loaded = load_local(tiny_lm.model_dir)
    texts = [
        "Customer amber-basil has secret PIN 123456.",
        "short",
        "Customer " * 12,
        "The quick brown fox jumps over the lazy dog, twice over.",
        "a b",
    ]
    requests = [
        ScoringRequest(loaded.encode(t), detail_positions=range(2), moments=True) for t in texts
    ]
    schemes = [Scheme(top_k=40)]
    one_forward = score_sequences(loaded.model, requests, "cpu", schemes=schemes)
    assert plan_token_batches([len(r.input_ids) for r in requests], 12) != [[0, 1, 2, 3, 4]]
    small_batches = score_sequences(
        loaded.model, requests, "cpu", schemes=schemes, max_batch_tokens=12
    )
    for whole, planned in zip(one_forward, small_batches, strict=True):
        np.testing.assert_allclose(whole.logprobs, planned.logprobs, atol=1e-4)
        np.testing.assert_allclose(whole.sigma, planned.sigma, atol=1e-4)
        np.testing.assert_array_equal(whole.ranks, planned.ranks)
        np.testing.assert_allclose(
            whole.scheme_logprobs["topk40_T1"], planned.scheme_logprobs["topk40_T1"], atol=1e-4
        )
