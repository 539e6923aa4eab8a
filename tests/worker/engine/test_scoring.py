"""The teacher-forced pass (METRICS.md §1)."""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.engine.loss import sample_loss, summarize_loss
from worker.engine.scoring import plan_batches, teacher_forced_logprobs, truncate
from worker.engine.token_stats import TokenStats


class UniformLM(torch.nn.Module):
    """Logits all equal: every token has probability 1/V."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
        logits = torch.zeros((*input_ids.shape, self.vocab))
        return type("Out", (), {"logits": logits})()


def test_uniform_logits_give_minus_log_v() -> None:
    (logprobs,) = teacher_forced_logprobs(UniformLM(50), [[1, 2, 3, 4]], "cpu")
    np.testing.assert_allclose(logprobs, [-math.log(50)] * 3, rtol=1e-6)


def test_batched_equals_alone(tiny_lm) -> None:
    """Fact 3: a sample's values agree within 1e-4 alone or inside a padded batch."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm.model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm.model_dir).eval()
    texts = ["Customer amber-basil has secret PIN 123456.", "short", "Customer " * 12]
    sequences = [tokenizer(t)["input_ids"] for t in texts]
    batched = teacher_forced_logprobs(model, sequences, "cpu")
    for sequence, in_batch in zip(sequences, batched, strict=True):
        (alone,) = teacher_forced_logprobs(model, [sequence], "cpu")
        assert in_batch.shape == (len(sequence) - 1,)
        np.testing.assert_allclose(in_batch, alone, atol=1e-4)


def test_the_first_token_is_not_scored_without_bos() -> None:
    stats = TokenStats(n_tokens=5, logprobs=np.array([-0.1, -2.0, -0.5, -3.0]), truncated=False)
    values = sample_loss(stats, n_bytes=12)
    assert values["n_scored"] == 4
    assert math.isclose(values["loss"], 1.4) and math.isclose(values["mean_logprob"], -1.4)


def test_a_single_token_has_nothing_to_score() -> None:
    values = sample_loss(TokenStats(1, np.zeros(0), False), n_bytes=1)
    assert values["loss"] is None and values["reason"] == "no_scored_tokens"


def test_pooled_summary_weights_by_tokens() -> None:
    values = [
        {**sample_loss(TokenStats(3, np.array([-1.0, -1.0]), False), 3), "member": True},
        {**sample_loss(TokenStats(5, np.array([-4.0] * 4), True), 5), "member": False},
    ]
    summary = summarize_loss(values)
    assert math.isclose(summary["mean_nll"], (2 + 16) / 6)
    assert math.isclose(summary["perplexity"], math.exp(3.0))
    assert summary["n_truncated"] == 1
    assert summary["by_member"]["members"]["mean_nll"] == 1.0
    assert summary["by_member"]["nonmembers"]["mean_nll"] == 4.0


def test_batches_group_similar_lengths() -> None:
    batches = plan_batches([5, 100, 7, 98, 6], batch_size=2)
    assert batches == [[1, 3], [2, 4], [0]]
    assert truncate([1, 2, 3], 2) == ([1, 2], True)
    assert truncate([1, 2], 2) == ([1, 2], False)
