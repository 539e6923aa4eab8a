"""Exact p̃ under temperature, top-k and top-p (METRICS.md §2.3, validation facts 3 and 4)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from worker.checks.lm.kinds import ExtractionParams
from worker.engine.sampling import NUCLEUS_CANDIDATES, scheme_logprobs
from worker.engine.schemes import Scheme

LOGITS = [2.0, 1.0, 0.0, -1.0]


def probabilities(logits: list[float], scheme: Scheme) -> list[float]:
    z = torch.tensor([logits] * len(logits))
    logp, _ = scheme_logprobs(z, torch.arange(len(logits)), scheme)
    return [math.exp(v) for v in logp.tolist()]


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        (Scheme(), [0.64391, 0.23688, 0.08714, 0.03206]),
        (Scheme(top_k=2), [0.73106, 0.26894, 0, 0]),
        (Scheme(top_p=0.8), [0.73106, 0.26894, 0, 0]),
        (Scheme(top_p=0.9), [0.66524, 0.24473, 0.09003, 0]),
        (Scheme(top_k=3, top_p=0.9), [0.73106, 0.26894, 0, 0]),
        (Scheme(temperature=2), [0.45505, 0.27600, 0.16741, 0.10154]),
        (Scheme(temperature=2, top_p=0.8), [0.50648, 0.30720, 0.18632, 0]),
        (Scheme(temperature=0.5, top_p=0.8), [1, 0, 0, 0]),
    ],
    ids=lambda value: value.name if isinstance(value, Scheme) else None,
)
def test_fact_3_processor_order(scheme: Scheme, expected: list[float]) -> None:
    assert probabilities(LOGITS, scheme) == pytest.approx(expected, abs=5e-6)


def test_fact_3_top_p_before_temperature_would_differ() -> None:
    # Top-p first keeps ids 0-1 of softmax(z); T=0.5 on those alone gives 0.88080 for id 0.
    wrong_order = torch.softmax(torch.tensor([2.0, 1.0]) / 0.5, dim=0)[0].item()
    assert wrong_order == pytest.approx(0.88080, abs=5e-6)
    assert probabilities(LOGITS, Scheme(temperature=0.5, top_p=0.8))[0] == 1.0


def test_fact_4_top_k_keeps_ties_and_greedy_takes_the_lowest_id() -> None:
    assert probabilities([1.0, 1.0, 0.0], Scheme(top_k=1)) == pytest.approx([0.5, 0.5, 0])
    assert probabilities([1.0, 1.0, 0.0], Scheme(temperature=0)) == [1.0, 0.0, 0.0]


def _nucleus_by_full_sort(z: torch.Tensor, target: int, top_p: float) -> float:
    probs = torch.softmax(z.double(), dim=-1)
    values, order = torch.sort(probs, descending=True)
    keep = (torch.cumsum(values, 0) - values) < top_p
    kept = order[keep]
    return probs[target].item() / probs[kept].sum().item() if target in kept.tolist() else 0.0


def test_nucleus_beyond_the_first_candidates_matches_a_full_sort() -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(3000, generator=generator) * 0.1  # flat: the nucleus needs > 256 tokens
    targets = torch.tensor([int(torch.argsort(z, descending=True)[i]) for i in (5, 900, 2500)])
    logp, _ = scheme_logprobs(z.expand(3, -1).contiguous(), targets, Scheme(top_p=0.9))
    for value, target in zip(logp.tolist(), targets.tolist(), strict=True):
        expected = _nucleus_by_full_sort(z, target, 0.9)
        assert (math.exp(value) if value > -math.inf else 0.0) == pytest.approx(expected, rel=1e-9)
    assert NUCLEUS_CANDIDATES < 0.9 * 3000


def test_scheme_names() -> None:
    assert Scheme(temperature=0).name == "greedy"
    assert Scheme(top_k=40).name == "topk40_T1"
    assert Scheme(temperature=0.7, top_k=50, top_p=0.95).name == "topk50_topp0.95_T0.7"


def test_context_dependent_processors_are_rejected() -> None:
    with pytest.raises(ValidationError, match="rejected, never approximated"):
        ExtractionParams(schemes=[{"temperature": 1, "repetition_penalty": 1.2}])
    with pytest.raises(ValidationError):
        ExtractionParams(p_grid=[1.0])


def test_top_k_fast_path_equals_the_general_computation() -> None:
    from worker.engine.sampling import _general_logprobs, _top_k_logprobs

    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 500, generator=generator) * 3
    targets = torch.randint(0, 500, (64,), generator=generator)
    for scheme in (Scheme(top_k=40), Scheme(temperature=0.7, top_k=5), Scheme(top_k=499)):
        fast = _top_k_logprobs(logits, targets, scheme)
        general, _ = _general_logprobs(logits, targets, scheme)
        assert fast is not None and torch.isinf(fast).equal(torch.isinf(general))
        finite = ~torch.isinf(general)
        assert torch.allclose(fast[finite], general[finite], atol=1e-6)
    tied = torch.tensor([[1.0, 1.0, 0.0]])
    assert _top_k_logprobs(tied, torch.tensor([1]), Scheme(top_k=1)) is None  # general path
