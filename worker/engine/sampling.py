"""Exact next-token probabilities after a sampling scheme's post-processing (METRICS.md §2.3).

The order is HF `generate`'s: temperature, then top-k, then top-p, with the nucleus measured
on the renormalized top-k distribution. Masses are accumulated in float64.
"""

from __future__ import annotations

import math

import torch

from worker.engine.numeric_error import nucleus_tolerance
from worker.engine.schemes import Scheme

# A target whose preceding nucleus mass lies this close to top_p could flip with rounding of
# the float64 sums; the logits' own rounding widens it by nucleus_tolerance when it is known.
NUCLEUS_FRAGILE_TOL = 1e-6
# The nucleus usually closes within the first few hundred tokens; sort more only when needed.
NUCLEUS_CANDIDATES = 256


def _nucleus_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest descending prefix whose mass reaches top_p (always the top token).

    A token is kept iff the mass of the tokens sorted before it is < top_p, which is HF's
    rule (drop ascending-cumulative mass <= 1 - top_p) read from the other end.
    """
    vocab = probs.shape[-1]
    m = min(vocab, NUCLEUS_CANDIDATES)
    while True:
        values, indices = torch.topk(probs, m, dim=-1)  # (C, m), descending
        before = torch.cumsum(values, dim=-1) - values  # mass sorted before each candidate
        closes = (before[:, -1] + values[:, -1]) >= top_p
        if m == vocab or bool(closes.all()):
            break
        m = min(vocab, m * 8)
    keep_sorted = before < top_p
    keep_sorted[:, 0] = True
    mask = torch.zeros_like(probs, dtype=torch.bool)
    return mask.scatter_(-1, indices, keep_sorted)


def scheme_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    scheme: Scheme,
    margin_bounds: torch.Tensor | None = None,
    top_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p̃(target) for each row, and whether it sits on the nucleus edge.

    logits: (C, V) float32; targets: (C,) long; margin_bounds: (C,) the rounding bound tau of
    each row's logits (docs/numerics.md), which widens the nucleus edge; top_values: the
    caller's descending top-k (or more) logits per row, when it has them. Returns float64 (C,)
    with -inf for targets the scheme filters out, and a bool (C,) `nucleus_fragile` flag.
    """
    torch.arange(targets.shape[0], device=logits.device)
    fragile = torch.zeros_like(targets, dtype=torch.bool)
    if scheme.greedy:
        # torch.argmax returns the lowest index among tied maxima, as HF greedy decoding does.
        hit = logits.argmax(dim=-1) == targets
        zero = torch.zeros_like(targets, dtype=torch.float64)
        return zero.masked_fill(~hit, -math.inf), fragile

    if 0 < scheme.top_k < logits.shape[-1] and scheme.top_p == 1:
        fast = _top_k_logprobs(logits, targets, scheme, top_values)
        if fast is not None:
            return fast, fragile
    return _general_logprobs(logits, targets, scheme, margin_bounds)


def _top_k_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    scheme: Scheme,
    top_values: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Top-k without top-p: only the k survivors enter the normalizer.

    Returns None when some row has ties beyond the k-th value (all of them stay, as in HF),
    which the general path handles.
    """
    if top_values is None:
        top_values = torch.topk(logits, scheme.top_k, dim=-1).values
    top = top_values[:, : scheme.top_k]  # (C, k), descending
    kth = top[:, -1:]
    if bool(((logits >= kth).sum(dim=-1) > scheme.top_k).any()):
        return None
    scaled = top.double() / scheme.temperature
    target = logits.gather(-1, targets[:, None]).squeeze(-1)
    logprob = target.double() / scheme.temperature - torch.logsumexp(scaled, dim=-1)
    return logprob.masked_fill(target < kth.squeeze(-1), -math.inf)


def _general_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    scheme: Scheme,
    margin_bounds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(targets.shape[0], device=logits.device)
    fragile = torch.zeros_like(targets, dtype=torch.bool)
    z = logits.double() / scheme.temperature  # (C, V)
    keep = torch.ones_like(z, dtype=torch.bool)
    vocab = z.shape[-1]
    if 0 < scheme.top_k < vocab:
        kth = torch.topk(z, scheme.top_k, dim=-1).values[:, -1:]  # (C, 1)
        keep = z >= kth  # every token tied with the k-th stays, as in HF
    if scheme.top_p < 1:
        probs = torch.softmax(z.masked_fill(~keep, -math.inf), dim=-1)  # renormalized top-k
        keep = keep & _nucleus_mask(probs, scheme.top_p)
        target_prob = probs[rows, targets]
        above = torch.where(probs > target_prob[:, None], probs, 0.0).sum(dim=-1)
        tolerance: torch.Tensor | float = NUCLEUS_FRAGILE_TOL
        if margin_bounds is not None:
            tolerance = nucleus_tolerance(margin_bounds.to(above.device), scheme.top_p, tolerance)
        fragile = (above - scheme.top_p).abs() < tolerance
    kept_logits = z.masked_fill(~keep, -math.inf)
    logprob = z[rows, targets] - torch.logsumexp(kept_logits, dim=-1)
    return logprob.masked_fill(~keep[rows, targets], -math.inf), fragile


def scheme_distribution(logits: torch.Tensor, scheme: Scheme) -> torch.Tensor:
    """The whole next-token distribution a sampled scheme draws from, for generation.

    logits: (C, V); returns float64 (C, V) probabilities, zero where the scheme filters a token
    out. The same rules as `scheme_logprobs`: temperature, top-k keeping every token tied with
    the k-th, then the nucleus on the renormalized top-k distribution.
    """
    if scheme.greedy:
        raise ValueError("greedy decoding takes the arg-max; it has no distribution to draw from")
    z = logits.double() / scheme.temperature  # (C, V)
    keep = torch.ones_like(z, dtype=torch.bool)
    if 0 < scheme.top_k < z.shape[-1]:
        kth = torch.topk(z, scheme.top_k, dim=-1).values[:, -1:]  # (C, 1)
        keep = z >= kth
    if scheme.top_p < 1:
        probs = torch.softmax(z.masked_fill(~keep, -math.inf), dim=-1)
        keep = keep & _nucleus_mask(probs, scheme.top_p)
    return torch.softmax(z.masked_fill(~keep, -math.inf), dim=-1)
