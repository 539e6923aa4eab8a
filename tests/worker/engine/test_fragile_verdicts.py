"""Which verdicts rounding could flip (docs/numerics.md): positions, windows, documents, rates."""

from __future__ import annotations

import numpy as np

from worker.engine.extraction import (
    document_values,
    greedy_rate_interval,
    summarize_extraction,
    window_fragile,
    window_values,
)
from worker.engine.token_stats import TokenStats


def _stats(margins: list[float], bounds: list[float]) -> TokenStats:
    margins_array = np.array(margins)
    n = len(margins)
    return TokenStats(
        n_tokens=n + 1,
        logprobs=np.zeros(n),
        argmax_match=margins_array > 0,
        margins=margins_array,
        margin_bounds=np.array(bounds),
    )


def test_a_position_is_fragile_iff_its_margin_is_within_the_bound() -> None:
    stats = _stats([0.05, -0.05, 0.2, 0.1, 0.3], [0.1, 0.1, 0.1, 0.1, np.nan])
    assert stats.margin_fragile.tolist() == [True, True, False, True, False]


def test_an_extracted_window_is_fragile_when_any_position_is() -> None:
    assert window_fragile(_stats([1.0, 0.05, 1.0], [0.1] * 3), 0, 3)
    assert not window_fragile(_stats([1.0, 0.5, 1.0], [0.1] * 3), 0, 3)
    # Only the window's own suffix counts.
    assert not window_fragile(_stats([0.05, 1.0, 1.0], [0.1] * 3), 1, 2)


def test_a_missed_window_is_fragile_only_when_every_mismatch_is() -> None:
    # Two mismatches, both within the bound: both could flip, so the window could be extracted.
    assert window_fragile(_stats([1.0, -0.05, -0.01], [0.1] * 3), 0, 3)
    # One mismatch is far from a tie: no rounding makes this window extracted.
    assert not window_fragile(_stats([1.0, -0.05, -2.0], [0.1] * 3), 0, 3)
    # A fragile match does not make a missed window fragile.
    assert not window_fragile(_stats([0.01, -2.0], [0.1] * 2), 0, 2)


def test_no_bounds_means_nothing_is_flagged() -> None:
    stats = TokenStats(
        n_tokens=3, logprobs=np.zeros(2), argmax_match=np.ones(2, bool), margins=np.zeros(2)
    )
    assert not window_fragile(stats, 0, 2)
    assert window_values(stats, 0, 2, [])["fragile"] is False


def _window(extracted: bool, fragile: bool) -> dict:
    return {
        "greedy_extracted": extracted,
        "fragile": fragile,
        "match_prefix_len": 0,
        "tf_match_fraction": 0.0,
        "min_margin": 0.0,
        "log10_pz": {},
        "first_filtered_pos": {},
        "nucleus_fragile": {},
    }


def test_document_fragility() -> None:
    def fragile(*windows: tuple[bool, bool]) -> bool:
        found = document_values(list(enumerate(_window(*w) for w in windows)), [], [0.5])
        return found["fragile"]

    # Extracted documents: fragile only when every extracted window could flip.
    assert fragile((True, True), (False, False))
    assert not fragile((True, True), (True, False))
    # Not extracted: any fragile window could become extracted.
    assert fragile((False, False), (False, True))
    assert not fragile((False, False), (False, False))


def test_rate_interval_counts_fragile_verdicts_both_ways() -> None:
    samples = [
        {"greedy_extracted": True, "fragile": True},
        {"greedy_extracted": True, "fragile": False},
        {"greedy_extracted": False, "fragile": True},
        {"greedy_extracted": False, "fragile": True},
        {"greedy_extracted": False, "fragile": False},
    ]
    # 2 of 5 extracted; lo drops the fragile one (1/5), hi adds the two fragile misses (4/5).
    assert greedy_rate_interval(samples) == [0.2, 0.8]
    firm = [{**s, "fragile": False} for s in samples]
    assert greedy_rate_interval(firm) == [0.4, 0.4]


def test_summary_counts_flags_rechecks_and_changes() -> None:
    rows = [
        {
            "greedy_extracted": True,
            "fragile": False,
            "n_windows_flagged": 2,
            "n_windows_rechecked": 2,
            "n_recheck_changed": 1,
            "n_min": {},
            "log10_pz": {},
        },
        {
            "greedy_extracted": False,
            "fragile": True,
            "n_windows_flagged": 1,
            "n_windows_rechecked": 0,
            "n_recheck_changed": 0,
            "n_min": {},
            "log10_pz": {},
        },
    ]
    summary = summarize_extraction(rows, [], [0.5], [1])
    assert summary["fragile"] == {
        "windows_flagged": 3,
        "windows_rechecked": 2,
        "verdicts_changed": 1,
        "documents_fragile": 1,
        "documents_sampled_fragile": {},
    }
    assert summary["all"]["greedy_rate_interval"] == [0.5, 1.0]
    # A sampled scheme's membership within rounding error is counted per scheme.
    rows[0] = {**rows[0], "nucleus_fragile": {"topp0.9_T1": True}, "topk_fragile": {}}
    rows[1] = {**rows[1], "nucleus_fragile": {"topp0.9_T1": False}, "topk_fragile": {"x": True}}
    counted = summarize_extraction(rows, [], [0.5], [1])["fragile"]["documents_sampled_fragile"]
    assert counted == {"topp0.9_T1": 1}


def test_the_top_k_boundary_is_the_kth_largest_other_logit() -> None:
    import torch

    from worker.engine.head_stats import kth_other as _kth_other

    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]] * 3)
    targets = torch.tensor([0, 2, 1])
    # k = 2: id 0 is kept, the token that would push it out is the 3rd largest (id 2); id 2 is
    # out, the one it must beat is the 2nd largest (id 1); id 1 is kept, against id 2.
    boundary, top = _kth_other(logits, targets, 2)
    assert boundary.tolist() == [2, 1, 2]
    assert top[0].tolist() == [3.0, 2.0, 1.0]


def test_window_flags_top_k_membership_within_the_bound() -> None:
    stats = TokenStats(
        n_tokens=4,
        logprobs=np.zeros(3),
        argmax_match=np.ones(3, bool),
        margins=np.ones(3),
        margin_bounds=np.full(3, 0.1),
        scheme_logprobs={"topk2_T1": np.full(3, -1.0)},
        nucleus_fragile={"topk2_T1": np.zeros(3, bool)},
        kth_margins={"topk2_T1": np.array([2.0, 0.05, 1.0])},
        kth_margin_bounds={"topk2_T1": np.full(3, 0.1)},
    )
    assert window_values(stats, 0, 3, ["topk2_T1"])["topk_fragile"] == {"topk2_T1": True}
    assert window_values(stats, 2, 1, ["topk2_T1"])["topk_fragile"] == {"topk2_T1": False}
