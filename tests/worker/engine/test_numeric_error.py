"""The rounding bound of a deciding margin (docs/numerics.md), against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.engine.numeric_error import margin_bound, nucleus_tolerance, ulp, unit_roundoff


def test_unit_roundoff_of_each_dtype() -> None:
    assert unit_roundoff(torch.bfloat16) == 2.0**-8
    assert unit_roundoff(torch.float16) == 2.0**-11
    assert unit_roundoff(torch.float32) == 2.0**-24


def test_ulp_is_the_dtype_spacing() -> None:
    # bf16 keeps 8 significant bits: [8, 16) is spaced 2^(3-7), [0.5, 1) 2^(-1-7).
    assert ulp(torch.tensor([12.0, -12.0, 8.0, 0.75]), torch.bfloat16).tolist() == [
        2.0**-4,
        2.0**-4,
        2.0**-4,
        2.0**-8,
    ]
    assert ulp(torch.tensor([12.0]), torch.float32)[0] == 2.0**-20
    # The spacing really is the distance to the next representable number.
    x = torch.tensor(12.0, dtype=torch.bfloat16)
    step = torch.nextafter(x, torch.tensor(100.0, dtype=torch.bfloat16)) - x
    assert float(step) == ulp(torch.tensor([12.0]), torch.bfloat16)[0]


def _bound(dtype: torch.dtype, scale: float = 1.0) -> float:
    one = torch.tensor([1.0])
    return float(
        margin_bound(
            z_a=torch.tensor([12.0]),
            z_b=torch.tensor([11.9]),
            hidden_norm=torch.tensor([2.0]),
            norm_a=one,
            norm_b=one,
            norm_diff=torch.tensor([0.5]),
            dtype=dtype,
            n_layers=4,
            logit_scale=scale,
        )[0]
    )


def test_bound_by_hand_in_bfloat16() -> None:
    # spacing: ulp(12) + ulp(11.9) = 2 * 2^-4 = 0.125
    # head: 2 u ||h|| (||w_a|| + ||w_b||) = 2 * 2^-8 * 2 * 2 = 0.03125
    # layers: 2 c sqrt(L) u ||h|| ||w_a - w_b|| = 2 * 4 * 2 * 2^-8 * 2 * 0.5 = 0.0625
    assert _bound(torch.bfloat16) == pytest.approx(0.125 + 0.03125 + 0.0625, rel=1e-12)
    # A logit scale s multiplies the head and layer terms, not the logits' own spacing.
    assert _bound(torch.bfloat16, scale=2.0) == pytest.approx(0.125 + 2 * 0.09375, rel=1e-12)


def test_bound_by_hand_in_float32_and_float16() -> None:
    u = 2.0**-24
    expected = 2 * 2.0**-20 + 2 * u * 2 * 2 + 2 * 4 * 2 * u * 2 * 0.5
    assert _bound(torch.float32) == pytest.approx(expected, rel=1e-12)
    u = 2.0**-11
    expected = 2 * 2.0**-7 + 2 * u * 2 * 2 + 2 * 4 * 2 * u * 2 * 0.5
    assert _bound(torch.float16) == pytest.approx(expected, rel=1e-12)


def test_bound_grows_with_the_square_root_of_depth() -> None:
    args = dict(
        z_a=torch.tensor([0.0]),
        z_b=torch.tensor([0.0]),
        hidden_norm=torch.tensor([1.0]),
        norm_a=torch.tensor([0.0]),
        norm_b=torch.tensor([0.0]),
        norm_diff=torch.tensor([1.0]),
        dtype=torch.bfloat16,
    )
    spacing = 2 * ulp(torch.tensor([0.0]), torch.bfloat16)[0]
    four = float(margin_bound(**args, n_layers=4)[0] - spacing)
    sixteen = float(margin_bound(**args, n_layers=16)[0] - spacing)
    assert sixteen == pytest.approx(2 * four, rel=1e-9)


def test_nucleus_tolerance_is_the_mass_shift_of_the_bound() -> None:
    found = nucleus_tolerance(torch.tensor([0.0, 0.01], dtype=torch.float64), 0.9, 1e-6)
    assert found.tolist() == pytest.approx([1e-6, 1e-6 + 0.9 * np.expm1(0.01)], rel=1e-12)
