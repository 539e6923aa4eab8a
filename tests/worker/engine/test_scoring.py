"""The teacher-forced pass (METRICS.md §1) against slow, direct per-token implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from worker.engine.batching import plan_batches
from worker.engine.loss import sample_loss, summarize_loss
from worker.engine.membership import minkpp
from worker.engine.schemes import Scheme
from worker.engine.scoring import ScoringRequest, score_sequences, truncate
from worker.engine.token_stats import TokenStats
from worker.local import load_local


def tiny_gpt2(vocab: int = 97, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config).eval()


def test_fact_2_uniform_logits() -> None:
    model = tiny_gpt2(vocab=50)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: p = 1/V everywhere
    (stats,) = score_sequences(
        model,
        [ScoringRequest([3, 0, 7, 0], detail_positions=range(3), moments=True)],
        "cpu",
        schemes=[Scheme()],
    )
    np.testing.assert_allclose(stats.logprobs, [-math.log(50)] * 3, rtol=1e-6)
    np.testing.assert_allclose(stats.entropy, [math.log(50)] * 3, rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, 0, atol=1e-6)
    assert stats.ranks.tolist() == [1, 1, 1] and stats.ties.tolist() == [49, 49, 49]
    assert stats.argmax_match.tolist() == [True, False, True]  # ties go to the lowest id, 0
    np.testing.assert_allclose(stats.mu, -stats.entropy)  # fact 1


def direct_stats(model: GPT2LMHeadModel, ids: list[int]) -> dict[str, list[float]]:
    """The slow way: full logits, one position at a time, in float64."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    out: dict[str, list[float]] = {k: [] for k in ("logprob", "mu", "sigma", "z", "rank", "margin")}
    for t in range(1, len(ids)):
        z, target = logits[t - 1], ids[t]
        logp = torch.log_softmax(z, dim=0)
        p = logp.exp()
        mu = float((p * logp).sum())
        sigma = math.sqrt(max(float((p * logp**2).sum()) - mu**2, 0.0))
        out["logprob"].append(float(logp[target]))
        out["mu"].append(mu)
        out["sigma"].append(sigma)
        out["z"].append((float(logp[target]) - mu) / sigma)
        out["rank"].append(1 + int((z > z[target]).sum()))
        others = torch.cat([z[:target], z[target + 1 :]])
        out["margin"].append(float(z[target] - others.max()))
    return out


def test_every_statistic_matches_a_direct_implementation() -> None:
    model = tiny_gpt2()
    ids = torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(3)).tolist()
    request = ScoringRequest(ids, detail_positions=range(39), moments=True)
    (stats,) = score_sequences(model, [request], "cpu")
    direct = direct_stats(model, ids)
    np.testing.assert_allclose(stats.logprobs, direct["logprob"], atol=1e-5)
    np.testing.assert_allclose(stats.mu, direct["mu"], atol=1e-5)
    np.testing.assert_allclose(stats.sigma, direct["sigma"], atol=1e-5)
    np.testing.assert_allclose(stats.margins, direct["margin"], atol=1e-5)
    assert stats.ranks.tolist() == direct["rank"]
    # Min-K%++ against its slow per-token form, for several k.
    for k in (0.1, 0.2, 0.5, 1.0):
        expected = np.sort(direct["z"])[: max(int(len(direct["z"]) * k), 1)].mean()
        assert minkpp(stats, k)[0] == pytest.approx(expected, abs=1e-5)


def test_fact_3_batched_chunked_and_alone_agree(tiny_lm) -> None:
    loaded = load_local(tiny_lm.model_dir)
    texts = ["Customer amber-basil has secret PIN 123456.", "short", "Customer " * 12]
    requests = [
        ScoringRequest(loaded.encode(t), detail_positions=range(3), moments=True) for t in texts
    ]
    schemes = [Scheme(top_k=40), Scheme(temperature=0.7, top_p=0.9)]
    batched = score_sequences(loaded.model, requests, "cpu", schemes=schemes)
    tiny_chunks = score_sequences(
        loaded.model, requests, "cpu", schemes=schemes, batch_size=1, vocab_budget_bytes=1
    )
    for request, in_batch, chunked in zip(requests, batched, tiny_chunks, strict=True):
        (alone,) = score_sequences(loaded.model, [request], "cpu", schemes=schemes)
        for other in (alone, chunked):
            np.testing.assert_allclose(in_batch.logprobs, other.logprobs, atol=1e-4)
            np.testing.assert_allclose(in_batch.sigma, other.sigma, atol=1e-4)
            assert in_batch.argmax_match.tolist() == other.argmax_match.tolist()
            for name in in_batch.scheme_logprobs:
                np.testing.assert_allclose(
                    in_batch.scheme_logprobs[name], other.scheme_logprobs[name], atol=1e-4
                )
        assert np.isnan(in_batch.scheme_logprobs["topk40_T1"][3:]).all()  # not requested


def test_loss_values_and_summary() -> None:
    values = sample_loss(TokenStats(5, np.array([-0.1, -2.0, -0.5, -3.0])), n_bytes=12)
    assert values["n_scored"] == 4 and math.isclose(values["loss"], 1.4)
    assert sample_loss(TokenStats(1, np.zeros(0)), 1)["reason"] == "too_short"
    assert sample_loss(TokenStats(0, np.zeros(0)), 0)["reason"] == "empty"
    summary = summarize_loss(
        [
            {**sample_loss(TokenStats(3, np.array([-1.0, -1.0])), 3), "member": True},
            {**sample_loss(TokenStats(5, np.array([-4.0] * 4), True), 5), "member": False},
        ]
    )
    assert math.isclose(summary["mean_nll"], 3.0) and summary["n_truncated"] == 1
    assert summary["by_member"]["nonmembers"]["mean_nll"] == 4.0
    # A loss that was not finite is stored as null (core/db.py): skipped, and said why.
    undefined = {**sample_loss(TokenStats(3, np.array([-1.0, -1.0])), 3), "loss": None}
    with_undefined = summarize_loss([undefined, sample_loss(TokenStats(0, np.zeros(0)), 0)])
    assert with_undefined["n_skipped"] == 2
    assert with_undefined["skipped_reasons"] == ["empty", "not_finite"]


def test_batches_group_similar_lengths() -> None:
    assert plan_batches([5, 100, 7, 98, 6], batch_size=2) == [[1, 3], [2, 4], [0]]
    assert truncate([1, 2, 3], 2) == ([1, 2], True)


def test_an_empty_sequence_gets_empty_statistics_beside_others() -> None:
    """An empty text under a model without a BOS token is an empty request: the model must not
    see a zero-width batch ("cannot reshape tensor of 0 elements"), and the others still score."""
    model = tiny_gpt2()
    requests = [ScoringRequest([]), ScoringRequest([5, 6, 7]), ScoringRequest([], truncated=True)]
    empty, scored, empty_again = score_sequences(model, requests, "cpu")
    assert empty.n_tokens == 0 and empty.n_scored == 0 and empty.mean_logprob is None
    assert empty_again.truncated
    (alone,) = score_sequences(model, [requests[1]], "cpu")
    np.testing.assert_allclose(scored.logprobs, alone.logprobs, atol=1e-5)
    assert score_sequences(model, [ScoringRequest([])], "cpu")[0].n_scored == 0
