"""The `loss` check: mean token negative log-likelihood per sample (METRICS.md §1)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from worker.engine.distributions import mean_interval, shared_histogram
from worker.engine.token_stats import TokenStats


def sample_loss(stats: TokenStats, n_bytes: int) -> dict[str, Any]:
    mean = stats.mean_logprob
    return {
        "n_tokens": stats.n_tokens,
        "n_scored": stats.n_scored,
        "n_bytes": n_bytes,
        "sum_logprob": stats.sum_logprob,
        "mean_logprob": mean,
        "loss": None if mean is None else -mean,
        "truncated": stats.truncated,
        "reason": _unscored_reason(stats),
    }


def _unscored_reason(stats: TokenStats) -> str | None:
    """Why a record has no loss: an empty text, or one token with no left context."""
    if stats.mean_logprob is not None:
        return None
    return "empty" if stats.n_tokens == 0 else "too_short"


def _pooled(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    scored = [v for v in values if v.get("loss") is not None]
    n_tokens = sum(v["n_scored"] for v in scored)
    if not n_tokens:
        return {
            "n_samples": len(values),
            "n_scored_tokens": 0,
            "mean_nll": None,
            "perplexity": None,
            "mean_sample_loss": None,
            "reason": "no_scored_tokens",
        }
    mean_nll = -sum(v["sum_logprob"] for v in scored) / n_tokens
    return {
        "n_samples": len(values),
        "n_scored_tokens": n_tokens,
        "mean_nll": mean_nll,
        "perplexity": math.exp(min(mean_nll, 700.0)),
        "mean_sample_loss": sum(v["loss"] for v in scored) / len(scored),
        "n_truncated": sum(1 for v in values if v.get("truncated")),
    }


NOT_FINITE = "not_finite"


def summarize_loss(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pooled NLL and perplexity, overall and for members and non-members when labelled."""
    summary = _pooled(values)
    unscored = [v for v in values if v.get("loss") is None]
    summary["n_skipped"] = len(unscored)
    if unscored:
        # A row with no reason held a loss that was not a finite number: stored, it reads null.
        reasons = sorted({str(v.get("reason") or NOT_FINITE) for v in unscored})
        summary["skipped_reasons"] = reasons
    summary["mean_sample_loss_ci95"] = mean_interval(
        [v["loss"] for v in values if v.get("loss") is not None]
    )
    groups = {"members": True, "nonmembers": False}
    losses = {"all": [v.get("loss") for v in values]}
    if any(v.get("member") is not None for v in values):
        summary["by_member"] = {
            name: _pooled([v for v in values if v.get("member") is flag])
            for name, flag in groups.items()
        }
        losses = {
            name: [v.get("loss") for v in values if v.get("member") is flag]
            for name, flag in groups.items()
        }
    summary["histogram"] = shared_histogram(losses)
    return summary
