"""How far rounding can move a deciding margin m = z_a - z_b: the bound tau of docs/numerics.md.

A verdict decided by the sign of m (greedy match, top-k membership) is fragile when |m| <= tau.
tau bounds the gap between the margin this pass observed and the margin of another evaluation of
the same model (another kernel, float32, or exact arithmetic), so every term counts two
evaluations.
"""

from __future__ import annotations

import math

import torch

# Roundings that land on the residual stream per layer: two residual additions and the two
# sublayers' output projections (docs/numerics.md, "Hidden-state error from L layers").
ROUNDINGS_PER_LAYER = 4.0


def _precision_bits(dtype: torch.dtype) -> int:
    """Significand bits with the hidden bit: bf16 8, fp16 11, fp32 24, fp64 53."""
    return 1 - round(math.log2(torch.finfo(dtype).eps))


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = 2^-p: round-to-nearest moves a value by at most u relative (bf16 2^-8)."""
    return 2.0 ** -_precision_bits(dtype)


def ulp(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of `dtype`'s numbers at |values|: 2^(floor(log2|x|) - p + 1), subnormal below.
    Float64 in and out, on the values' device (the scoring pass keeps it there).

    >>> ulp(torch.tensor([1.0, 12.0, 0.0]), torch.bfloat16).tolist()
    [0.0078125, 0.0625, 9.183549615799121e-41]
    """
    magnitude = values.double().abs().clamp_min(torch.finfo(dtype).tiny)
    _, exponent = torch.frexp(magnitude)  # |x| = m 2^e with m in [0.5, 1): floor(log2|x|) = e - 1
    return torch.exp2((exponent - _precision_bits(dtype)).double())


def margin_bound(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    hidden_norm: torch.Tensor,
    norm_a: torch.Tensor,
    norm_b: torch.Tensor,
    norm_diff: torch.Tensor,
    dtype: torch.dtype,
    n_layers: int,
    logit_scale: float = 1.0,
) -> torch.Tensor:
    """tau per position, float64.

    tau = ulp(z_a) + ulp(z_b)                                   (spacing: the logits' rounding)
        + 2 u ||h|| (||w_a|| + ||w_b||) |s|                     (the head's input rounding)
        + 2 c sqrt(L) u ||h|| ||w_a - w_b|| |s|,  c = 4         (L layers' rounding of h)

    z_a, z_b: the two logits (after any logit scale); hidden_norm ||h|| of the head's input;
    norm_a, norm_b, norm_diff: ||w_a||, ||w_b||, ||w_a - w_b|| of the head's weight rows;
    dtype: the dtype the logits are formed in; n_layers: L; logit_scale: s.
    """
    u = unit_roundoff(dtype)
    hidden, weight_a, weight_b, weight_diff = (
        x.double() for x in (hidden_norm, norm_a, norm_b, norm_diff)
    )
    spacing = ulp(z_a, dtype) + ulp(z_b, dtype)
    head = 2.0 * u * hidden * (weight_a + weight_b)
    layers = 2.0 * ROUNDINGS_PER_LAYER * math.sqrt(max(n_layers, 0)) * u * hidden * weight_diff
    return spacing + abs(logit_scale) * (head + layers)


def nucleus_tolerance(bound: torch.Tensor, top_p: float, floor: float) -> torch.Tensor:
    """How close the mass before a target may come to top_p before its membership is fragile.

    Moving every logit by at most tau/2 scales each probability by a factor in e^(±tau), so a
    mass near top_p moves by at most top_p · expm1(tau); `floor` is the float64 summation slack.
    """
    return floor + top_p * torch.expm1(bound.double())
