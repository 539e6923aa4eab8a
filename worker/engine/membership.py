"""Membership scores and their ROC statistics (METRICS.md §3). Higher score = more likely member.

Formulas follow the Min-K%++ reference code; ROC follows sklearn's `roc_curve` semantics (tied
scores form one point) with a trapezoidal AUROC, so ties count one half.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.engine.token_stats import TokenStats

FPR_LEVELS = (0.001, 0.01, 0.05)


def _k_len(n_scored: int, k: float) -> tuple[int, bool]:
    k_len = int(n_scored * k)
    return (1, True) if k_len == 0 else (k_len, False)


def mink(logprobs: np.ndarray, k: float) -> tuple[float, bool]:
    """Mean of the k-fraction lowest token log-probs; (value, k_clamped)."""
    k_len, clamped = _k_len(len(logprobs), k)
    return float(np.sort(logprobs)[:k_len].mean()), clamped


def minkpp_token_scores(stats: TokenStats) -> tuple[np.ndarray, bool]:
    """z_t = (ℓ_t - μ_t) / σ_t over the full vocabulary; z := 0 where σ_t = 0."""
    sigma = stats.sigma
    zero = sigma <= 0
    z = np.where(zero, 0.0, (stats.logprobs - stats.mu) / np.where(zero, 1.0, sigma))
    return z, bool(zero.any())


def minkpp(stats: TokenStats, k: float) -> tuple[float, bool, bool]:
    """(value, k_clamped, sigma_zero)."""
    z, sigma_zero = minkpp_token_scores(stats)
    value, clamped = mink(z, k)
    return value, clamped, sigma_zero


def zlib_ratio(mean_logprob: float, text: str) -> float:
    return mean_logprob / len(zlib.compress(text.encode("utf-8")))


def reference_score(
    target: TokenStats, reference: TokenStats, same_tokens: bool, n_bytes: int
) -> tuple[float, str]:
    """ll_target - ll_ref: per token when both tokenize alike, else per byte of the text."""
    if same_tokens and target.n_scored == reference.n_scored:
        return target.mean_logprob - reference.mean_logprob, "per_token"
    return (target.sum_logprob - reference.sum_logprob) / max(n_bytes, 1), "per_byte"


# ---- ROC -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roc:
    fpr: np.ndarray
    tpr: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))


def roc_curve(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> Roc:
    """One point per distinct threshold, from (0, 0) to (1, 1): sklearn's `roc_curve` with
    `drop_intermediate=False`, and `auc` its `roc_auc_score` (ties count one half); the one ROC
    of the engine (tests/worker/engine/test_membership.py holds it to sklearn's)."""
    if len(member_scores) == 0 or len(nonmember_scores) == 0:
        raise ValueError("a ROC needs members and non-members")
    scores = np.concatenate([np.asarray(member_scores, float), np.asarray(nonmember_scores, float)])
    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / len(member_scores)]
    fpr = np.r_[0.0, fps / len(nonmember_scores)]
    return Roc(fpr, tpr)


def tpr_at_fpr(roc: Roc, alpha: float) -> float:
    """TPR at the last ROC point with FPR <= alpha (no interpolation), as the reference does."""
    return float(roc.tpr[np.flatnonzero(roc.fpr <= alpha)[-1]])


def fpr_at_tpr(roc: Roc, level: float = 0.95) -> float:
    return float(roc.fpr[np.flatnonzero(roc.tpr >= level)[0]])


def _metrics(members: np.ndarray, nonmembers: np.ndarray) -> dict[str, float]:
    roc = roc_curve(members, nonmembers)
    values = {"auroc": roc.auc, "fpr_at_95_tpr": fpr_at_tpr(roc)}
    for alpha in FPR_LEVELS:
        values[f"tpr_at_{alpha:g}_fpr"] = tpr_at_fpr(roc, alpha)
    return values


def _thin(roc: Roc, max_points: int = 400) -> dict[str, list[float]]:
    """ROC points for plotting; long curves are subsampled, endpoints kept."""
    n = len(roc.fpr)
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(n, max_points)).round().astype(int)])
    return {"fpr": roc.fpr[keep].tolist(), "tpr": roc.tpr[keep].tolist()}


def membership_report(
    members: Sequence[float], nonmembers: Sequence[float], *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """AUROC, TPR at low FPR and FPR at 95% TPR with percentile bootstrap CIs.

    TPR at FPR alpha needs at least 1/alpha non-members; below that it is null with a reason
    rather than a silent TPR at 0% FPR.
    """
    m, nm = np.asarray(members, float), np.asarray(nonmembers, float)
    if len(m) == 0 or len(nm) == 0:
        return {
            "n_members": len(m),
            "n_nonmembers": len(nm),
            "auroc": None,
            "reason": "needs_members_and_nonmembers",
            "warnings": ["ROC needs both members and non-members"],
        }
    point = _metrics(m, nm)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(bootstrap):
        sample = _metrics(rng.choice(m, len(m)), rng.choice(nm, len(nm)))
        for name, value in sample.items():
            draws[name].append(value)
    report: dict[str, Any] = {
        "n_members": len(m),
        "n_nonmembers": len(nm),
        "bootstrap": bootstrap,
        "seed": seed,
        "warnings": [],
    }
    for name, value in point.items():
        ci = np.percentile(draws[name], [2.5, 97.5]).tolist() if bootstrap else [None, None]
        report[name] = {"value": value, "ci95": ci}
    for alpha in FPR_LEVELS:
        needed = math.ceil(1 / alpha - 1e-9)
        if len(nm) < needed:
            report[f"tpr_at_{alpha:g}_fpr"] = {
                "value": None,
                "ci95": [None, None],
                "reason": "insufficient_nonmembers",
            }
            report["warnings"].append(
                f"TPR at {alpha:.1%} FPR needs >= {needed} non-members (have {len(nm)})"
            )
    report["roc"] = _thin(roc_curve(m, nm))
    return report


def sample_scores(
    text: str,
    stats: TokenStats,
    *,
    wanted: set[str],
    ks: Sequence[float],
    lower: TokenStats | None = None,
    reference: TokenStats | None = None,
    same_ref_tokens: bool = False,
) -> dict[str, Any]:
    """The wanted membership scores of one text, oriented higher = more likely a member."""
    ll = stats.mean_logprob
    if ll is None:
        return {"skipped": True, "reason": "no_scored_tokens"}
    values: dict[str, Any] = {}
    flags: set[str] = set()
    if "loss" in wanted:
        values["loss"] = ll
    if "zlib" in wanted:
        values["zlib"] = zlib_ratio(ll, text)
    for k in ks:
        if "mink" in wanted:
            values[f"mink_{k:g}"], clamped = mink(stats.logprobs, k)
            flags |= {"k_clamped"} if clamped else set()
        if "minkpp" in wanted:
            values[f"minkpp_{k:g}"], clamped, sigma_zero = minkpp(stats, k)
            flags |= {"k_clamped"} if clamped else set()
            flags |= {"sigma_zero"} if sigma_zero else set()
    if "lowercase" in wanted and lower is not None and lower.mean_logprob is not None:
        values["lowercase"] = lower.mean_logprob / ll if ll != 0 else None
    if "ref" in wanted and reference is not None and reference.mean_logprob is not None:
        values["ref"], values["ref_basis"] = reference_score(
            stats, reference, same_ref_tokens, len(text.encode("utf-8"))
        )
    values["n_scored"] = stats.n_scored
    values["truncated"] = stats.truncated
    values["flags"] = sorted(flags)
    return values
