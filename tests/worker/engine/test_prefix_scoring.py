"""The shared-prefix pass gives the log-likelihoods of scoring prefix + text plainly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from worker.engine.prefix_scoring import prefix_logprobs
from worker.engine.scoring import ScoringRequest, score_sequences


def _gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=128, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config).eval()


def _llama() -> torch.nn.Module:
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("build", [_gpt2, _llama])
def test_prefix_cache_matches_plain_concatenation(build) -> None:
    model = build()
    rng = np.random.default_rng(3)
    prefix = rng.integers(0, 97, 23).tolist()
    # Lengths differ so rows are right-padded; one text of one token; batches of 3 split them.
    texts = [rng.integers(0, 97, n).tolist() for n in (17, 5, 1, 30, 9)]
    found = prefix_logprobs(model, prefix, texts, "cpu", batch_size=3)
    plain = score_sequences(model, [ScoringRequest(prefix + t) for t in texts], "cpu")
    for text, got, stats in zip(texts, found, plain, strict=True):
        expected = stats.logprobs[len(prefix) - 1 :]
        assert got.shape == (len(text),)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_the_prefix_changes_the_scores_and_empty_texts_pass() -> None:
    model = _gpt2()
    found = prefix_logprobs(model, [5, 6, 7], [[1, 2, 3], []], "cpu")
    alone = prefix_logprobs(model, [5], [[1, 2, 3]], "cpu")
    assert found[1].shape == (0,)
    assert not np.allclose(found[0], alone[0])
    with pytest.raises(ValueError, match="at least one token"):
        prefix_logprobs(model, [], [[1]], "cpu")


def test_a_small_token_budget_splits_batches_with_identical_values(monkeypatch) -> None:
    import worker.engine.prefix_scoring as prefix_scoring

    model = _gpt2()
    rng = np.random.default_rng(5)
    prefix = rng.integers(0, 97, 20).tolist()
    texts = [rng.integers(0, 97, n).tolist() for n in (12, 11, 10, 12)]
    batches: list[int] = []
    real = prefix_scoring._batch_logprobs

    def counted(model, state, batch):
        batches.append(len(batch))
        return real(model, state, batch)

    monkeypatch.setattr(prefix_scoring, "_batch_logprobs", counted)
    whole = prefix_logprobs(model, prefix, texts, "cpu", batch_size=8, max_batch_tokens=10_000)
    assert batches == [4]
    batches.clear()
    # Each row costs its text plus the 20 prefix tokens: 64 tokens hold two rows, not four.
    split = prefix_logprobs(model, prefix, texts, "cpu", batch_size=8, max_batch_tokens=64)
    assert batches == [2, 2]
    for got, expected in zip(split, whole, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
