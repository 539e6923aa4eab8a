"""Every kind of every family says its verdict in words; the shared wording is exact."""

from __future__ import annotations

import math

import pytest

from worker.checks.registry import REGISTRY
from worker.checks.report_kit import Finding, counted, proportion_risk


def test_every_registered_kind_declares_a_finding() -> None:
    missing = [
        name
        for name in REGISTRY.kinds
        if name not in REGISTRY.report_part(REGISTRY.family_of(name)).findings
    ]
    assert missing == []
    assert len(REGISTRY.kinds) >= 13  # lm 3, classifier 3, unlearning 1, reasoning 3, diffusion 3


@pytest.mark.parametrize("kind", sorted(REGISTRY.kinds))
def test_every_finding_survives_a_nearly_empty_summary(kind: str) -> None:
    build = REGISTRY.report_part(REGISTRY.family_of(kind)).findings[kind]
    found = build({"n": 0}, None, {})
    assert isinstance(found, Finding) and found.kind == kind
    assert found.text and found.control and found.next_step and found.risk == "unknown"


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(12, 400), (0, 10), (10, 10), (1, 3)])
def test_counted_carries_the_wilson_interval_of_the_counts(k: int, n: int) -> None:
    low, high = _wilson_by_hand(k, n)
    expected = f"{k:,} of {n:,} records ({100 * k / n:.1f}%, 95% CI {100 * max(low, 0):.1f}–"
    assert counted(k, n, "records").startswith(expected)
    assert counted(k, n, "records").endswith(f"{100 * min(high, 1):.1f}%)")


def test_proportion_risk_reads_the_interval_against_the_line() -> None:
    assert proportion_risk(12, 400) == "high"  # CI 1.7–5.2%: above 1%
    assert proportion_risk(1, 400) == "medium"  # a hit, but the CI reaches below 1%
    assert proportion_risk(0, 500) == "none"  # CI 0.0–0.8%: below 1%
    assert proportion_risk(0, 50) == "low"  # none seen, 1% not ruled out
    assert proportion_risk(0, 0) == "unknown"


def test_a_finding_refuses_a_risk_level_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="risk must be one of"):
        Finding("loss", "text", "severe", "control", "next")
