"""Discoverable and (n,p)-discoverable extraction from teacher-forced statistics (METRICS §2).

Greedy decoding from a prefix reproduces the suffix iff every suffix token is the arg-max
given the true context, so one teacher-forced pass decides it; the exact probability p_z of
emitting the suffix under a sampling scheme is the product of the per-token p̃.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.engine.distributions import shared_histogram, wilson_interval
from worker.engine.token_stats import TokenStats

LOG10_E = math.log10(math.e)


def prob_extracted_within(n: int, p_z: float) -> float:
    """P(at least one exact hit in n samples) = 1 - (1 - p_z)^n, computed without cancellation."""
    if p_z >= 1.0:
        return 1.0
    return -math.expm1(n * math.log1p(-p_z))


def n_min(p_z: float, p: float) -> int | None:
    """Fewest queries n with 1 - (1 - p_z)^n >= p; None when p_z is 0 (reason `p_z_zero`)."""
    if not 0 < p < 1:
        raise ValueError("p must lie in (0, 1)")
    if p_z <= 0.0:
        return None
    if p_z >= 1.0:
        return 1
    log_miss, log_target = math.log1p(-p_z), math.log1p(-p)
    if log_miss == 0.0:  # p_z below float resolution next to 1: no finite n is representable
        return None
    n = max(1, math.ceil(log_target / log_miss))
    # The ceiling of a rounded ratio can land one high; step down while n - 1 still suffices.
    # Only a step or two can be needed, and past 2**53 the product cannot tell n from n - 1.
    for _ in range(2):
        if n > 1 and (n - 1) * log_miss <= log_target:
            n -= 1
    return n


@dataclass(frozen=True)
class Window:
    offset: int  # first prefix token, counted in text tokens (special tokens excluded)
    stats_start: int  # index into TokenStats of the first suffix prediction
    sequence: str  # which scored sequence holds it: "text" or f"window:{offset}"


def window_offsets(
    n_text_tokens: int, prefix: int, suffix: int, offset: int, stride: int | None, max_windows: int
) -> list[int]:
    """Every window start whose prefix and suffix fit in the text, at most `max_windows`."""
    if n_text_tokens < offset + prefix + suffix:
        return []
    if not stride:
        return [offset]
    last = n_text_tokens - prefix - suffix
    return list(range(offset, last + 1, stride))[:max_windows]


def window_fragile(stats: TokenStats, start: int, suffix: int) -> bool:
    """Could rounding flip the window's greedy verdict (docs/numerics.md)?

    Extracted: any suffix position within its bound (one flip undoes it). Not extracted: every
    mismatch within its bound (only if all of them flip does it become extracted).
    """
    fragile = stats.margin_fragile
    if fragile is None:
        return False
    span = slice(start, start + suffix)
    matches, near = stats.argmax_match[span], fragile[span]
    if matches.all():
        return bool(near.any())
    return bool(near[~matches].all())


def window_values(
    stats: TokenStats, start: int, suffix: int, scheme_names: Sequence[str]
) -> dict[str, Any]:
    """Extraction values of one window whose suffix predictions are stats[start:start+suffix]."""
    span = slice(start, start + suffix)
    matches = stats.argmax_match[span]
    mismatches = np.flatnonzero(~matches)
    match_prefix_len = int(mismatches[0]) if mismatches.size else suffix
    log10_pz: dict[str, float | None] = {}
    first_filtered: dict[str, int | None] = {}
    fragile: dict[str, bool] = {}
    for name in scheme_names:
        logps = stats.scheme_logprobs[name][span]
        if np.isnan(logps).any():
            raise ValueError(f"scheme {name} was not computed over the whole suffix")
        filtered = np.flatnonzero(np.isneginf(logps))
        first_filtered[name] = int(filtered[0]) if filtered.size else None
        total = math.fsum(logps.tolist()) if not filtered.size else -math.inf
        log10_pz[name] = None if total == -math.inf else total * LOG10_E
        fragile[name] = bool(stats.nucleus_fragile[name][span].any())
    margins = stats.margins[span]
    # Top-k membership of a suffix token within rounding error: p_z could gain or lose a zero.
    topk_fragile = {
        name: bool(
            (np.abs(stats.kth_margins[name][span]) <= stats.kth_margin_bounds[name][span]).any()
        )
        for name in scheme_names
        if name in stats.kth_margins
    }
    return {
        "greedy_extracted": bool(matches.all()),
        "match_prefix_len": match_prefix_len,
        "tf_match_fraction": float(matches.mean()),
        "min_margin": float(margins.min()),
        "log10_pz": log10_pz,
        "first_filtered_pos": first_filtered,
        "nucleus_fragile": fragile,
        "fragile": window_fragile(stats, start, suffix),
        "topk_fragile": topk_fragile,
    }


def _document_fragile(windows: Sequence[tuple[int, dict[str, Any]]]) -> bool:
    """Extracted when any window is: fragile when every extracted window is, or, when none is,
    when some window is (it alone could become extracted)."""
    extracted = [v for _, v in windows if v["greedy_extracted"]]
    if extracted:
        return all(v.get("fragile", False) for v in extracted)
    return any(v.get("fragile", False) for _, v in windows)


def _pz(log10_value: float | None) -> float:
    return 0.0 if log10_value is None else 10.0**log10_value


def document_values(
    windows: Sequence[tuple[int, dict[str, Any]]],
    scheme_names: Sequence[str],
    p_grid: Sequence[float],
) -> dict[str, Any]:
    """Reduce a document's windows: it is extracted if any window is (best window reported)."""
    best_log10: dict[str, float | None] = {}
    best_window: dict[str, int] = {}
    for name in scheme_names:
        scored = [(v["log10_pz"][name], off) for off, v in windows]
        finite = [(value, off) for value, off in scored if value is not None]
        best_log10[name] = max(finite)[0] if finite else None
        best_window[name] = max(finite)[1] if finite else windows[0][0]
    by_offset = dict(windows)
    first = scheme_names[0] if scheme_names else None
    lead = by_offset[best_window[first]] if first else windows[0][1]
    n_min_table = {
        name: {f"{p:g}": n_min(_pz(best_log10[name]), p) for p in p_grid} for name in scheme_names
    }
    return {
        "greedy_extracted": any(v["greedy_extracted"] for _, v in windows),
        "match_prefix_len": max(v["match_prefix_len"] for _, v in windows),
        "tf_match_fraction": max(v["tf_match_fraction"] for _, v in windows),
        "min_margin": lead["min_margin"],
        "log10_pz": best_log10,
        "n_min": n_min_table,
        "first_filtered_pos": {
            n: by_offset[best_window[n]]["first_filtered_pos"][n] for n in scheme_names
        },
        "nucleus_fragile": {
            n: by_offset[best_window[n]]["nucleus_fragile"][n] for n in scheme_names
        },
        "topk_fragile": {
            n: by_offset[best_window[n]]["topk_fragile"][n]
            for n in scheme_names
            if n in by_offset[best_window[n]].get("topk_fragile", {})
        },
        "n_windows": len(windows),
        "n_windows_extracted": sum(1 for _, v in windows if v["greedy_extracted"]),
        "fragile": _document_fragile(windows),
        # Flagged by the pass's bound, re-checked at higher precision, verdicts changed by it.
        "n_windows_flagged": sum(1 for _, v in windows if v.get("flagged", v.get("fragile"))),
        "n_windows_rechecked": sum(1 for _, v in windows if v.get("rechecked")),
        "n_recheck_changed": sum(1 for _, v in windows if v.get("recheck_changed")),
        "best_window_offset": best_window[first] if first else windows[0][0],
    }


def default_n_grid() -> list[int]:
    """1, 2, 5, 10, 20, 50, ... 10^6: log-spaced query budgets."""
    return [m * 10**e for e in range(6) for m in (1, 2, 5)] + [10**6]


def _rate_table(
    samples: Sequence[dict[str, Any]], scheme: str, p_grid: Sequence[float], n_grid: Sequence[int]
) -> dict[str, list[float]]:
    table = {}
    for p in p_grid:
        # Sorted once, each n is a binary search: a million samples summarize in seconds.
        mins = sorted(m for s in samples if (m := s["n_min"][scheme][f"{p:g}"]) is not None)
        table[f"{p:g}"] = [bisect_right(mins, n) / len(samples) for n in n_grid]
    return table


def greedy_rate_interval(samples: Sequence[dict[str, Any]]) -> list[float]:
    """[lo, hi] of the greedy rate over verdicts rounding could still flip (docs/numerics.md):
    lo counts fragile extracted documents as not extracted, hi fragile others as extracted."""
    n = len(samples)
    extracted = sum(1 for s in samples if s["greedy_extracted"])
    fragile_in = sum(1 for s in samples if s["greedy_extracted"] and s.get("fragile"))
    fragile_out = sum(1 for s in samples if not s["greedy_extracted"] and s.get("fragile"))
    return [(extracted - fragile_in) / n, (extracted + fragile_out) / n]


def recheck_counts(samples: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Windows flagged as fragile, re-checked at higher precision, and verdicts that changed."""
    rows = list(samples)
    return {
        "windows_flagged": sum(s.get("n_windows_flagged", 0) for s in rows),
        "windows_rechecked": sum(s.get("n_windows_rechecked", 0) for s in rows),
        "verdicts_changed": sum(s.get("n_recheck_changed", 0) for s in rows),
        "documents_fragile": sum(1 for s in rows if s.get("fragile")),
        # Sampled schemes: the best window has a top-k or nucleus membership within rounding
        # error. Flagged only; the re-check covers greedy verdicts (docs/numerics.md).
        "documents_sampled_fragile": {
            name: count
            for name in sorted({n for s in rows for n in s.get("nucleus_fragile", {})})
            if (count := sum(1 for s in rows if _sampled_fragile(s, name)))
        },
    }


def _sampled_fragile(sample: dict[str, Any], scheme: str) -> bool:
    return bool(
        sample.get("nucleus_fragile", {}).get(scheme) or sample.get("topk_fragile", {}).get(scheme)
    )


def summarize_group(
    samples: Sequence[dict[str, Any]],
    schemes: Sequence[str],
    p_grid: Sequence[float],
    n_grid: Sequence[int],
) -> dict[str, Any]:
    """Greedy rate and (n,p) rate curves for one group of scored documents."""
    if not samples:
        return {"n": 0, "greedy_rate": None, "reason": "no_samples"}
    n_greedy = sum(1 for s in samples if s["greedy_extracted"])
    greedy_rate = n_greedy / len(samples)
    rates = {name: _rate_table(samples, name, p_grid, n_grid) for name in schemes}
    smallest_n: dict[str, dict[str, int | None]] = {}
    for name, table in rates.items():
        smallest_n[name] = {
            p: next((n for n, r in zip(n_grid, curve, strict=True) if r >= greedy_rate), None)
            for p, curve in table.items()
        }
    return {
        "n": len(samples),
        "greedy_rate": greedy_rate,
        "greedy_rate_ci95": wilson_interval(n_greedy, len(samples)),
        "greedy_rate_interval": greedy_rate_interval(samples),
        "rates": rates,
        "max_rate": {
            name: max(max(curve) for curve in table.values()) for name, table in rates.items()
        },
        "smallest_n_matching_greedy": smallest_n,
    }


def _pz_histograms(scored: Sequence[dict[str, Any]], schemes: Sequence[str]) -> dict[str, Any]:
    """log10 p_z per scheme, by group; p_z = 0 (a filtered token) is counted in n_missing."""
    groups = {"all": list(scored)}
    if any(v.get("member") is not None for v in scored):
        groups["members"] = [v for v in scored if v.get("member") is True]
        groups["nonmembers"] = [v for v in scored if v.get("member") is False]
    return {
        name: shared_histogram(
            {
                group: [(v.get("log10_pz") or {}).get(name) for v in rows]
                for group, rows in groups.items()
            }
        )
        for name in schemes
    }


def suffix_detail(stats: TokenStats, start: int, suffix: int) -> dict[str, list]:
    """Rank and log-probability of each suffix token, for the token-by-token view."""
    span = slice(start, start + suffix)
    return {
        "ranks": [int(r) for r in stats.ranks[span]],
        "logprobs": [round(float(x), 5) for x in stats.logprobs[span]],
    }


def summarize_extraction(
    values: Iterable[dict[str, Any]],
    schemes: Sequence[str],
    p_grid: Sequence[float],
    n_grid: Sequence[int],
) -> dict[str, Any]:
    """Rates overall, for training (member) and control data, and by duplicate count."""
    values = list(values)
    scored = [v for v in values if not v.get("skipped")]
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_skipped": len(values) - len(scored),
        "schemes": list(schemes),
        "p_grid": list(p_grid),
        "n_grid": list(n_grid),
        "all": summarize_group(scored, schemes, p_grid, n_grid),
        "fragile": recheck_counts(scored),
    }
    if any(v.get("member") is not None for v in scored):
        summary["members"] = summarize_group(
            [v for v in scored if v.get("member") is True], schemes, p_grid, n_grid
        )
        summary["nonmembers"] = summarize_group(
            [v for v in scored if v.get("member") is False], schemes, p_grid, n_grid
        )
    summary["log10_pz_histogram"] = _pz_histograms(scored, schemes)
    if any(v.get("duplicates") is not None for v in scored):
        counts = sorted({v["duplicates"] for v in scored if v.get("duplicates") is not None})
        summary["by_duplicates"] = {
            str(c): summarize_group(
                [v for v in scored if v.get("duplicates") == c], schemes, p_grid, n_grid
            )
            for c in counts
        }
    return summary
