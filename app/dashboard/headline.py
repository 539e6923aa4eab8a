"""The few numbers that answer "is it regurgitating, and how much": cards, list, trend, compare.

Each carries its direction so a comparison can say better or worse without guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.dashboard.figures import headline_p, sampled_schemes


@dataclass(frozen=True)
class Headline:
    key: str  # stable across audits: what compare and trend match on
    label: str
    value: float | None
    ci95: tuple[float | None, float | None] | None
    percent: bool
    higher_is_more_memorized: bool | None
    note: str = ""

    def formatted(self, value: float | None = None) -> str:
        value = self.value if value is None else value
        if value is None:
            return "n/a"
        return f"{value:.1%}" if self.percent else f"{value:.3f}"

    @property
    def ci_text(self) -> str:
        if not self.ci95 or None in self.ci95:
            return ""
        low, high = self.ci95
        return f"95% CI {self.formatted(low)} – {self.formatted(high)}"


@dataclass(frozen=True)
class Delta:
    first: Headline | None
    second: Headline | None

    @property
    def headline(self) -> Headline:
        return self.first or self.second  # type: ignore[return-value]

    @property
    def change(self) -> float | None:
        if self.first is None or self.second is None:
            return None
        if self.first.value is None or self.second.value is None:
            return None
        return self.second.value - self.first.value

    @property
    def verdict(self) -> str:
        """'worse' when the second audit memorizes more, 'better' when less, else 'same'."""
        change, direction = self.change, self.headline.higher_is_more_memorized
        if change is None or direction is None or abs(change) < 1e-12:
            return "same"
        return "worse" if (change > 0) == direction else "better"

    @property
    def change_text(self) -> str:
        change = self.change
        if change is None:
            return "n/a"
        return f"{change:+.1%}".replace("%", " pts") if self.headline.percent else f"{change:+.3f}"


def _ci(entry: Mapping[str, Any], name: str) -> tuple[float | None, float | None] | None:
    ci = entry.get(name)
    return (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else None


def _extraction(summary: Mapping[str, Any]) -> list[Headline]:
    result = []
    for group, suffix in (("all", ""), ("members", " · members"), ("nonmembers", " · non-members")):
        stats = summary.get(group)
        if not stats or not stats.get("n"):
            continue
        result.append(
            Headline(
                f"extraction.{group}.greedy_rate",
                f"Greedy extraction{suffix}",
                stats["greedy_rate"],
                _ci(stats, "greedy_rate_ci95"),
                True,
                True,
                f"{stats['n']:,} records",
            )
        )
    p, schemes = headline_p(summary), sampled_schemes(summary)
    stats = summary.get("all") or {}
    if p and schemes and stats.get("rates"):
        scheme, n_max = schemes[0], summary["n_grid"][-1]
        result.append(
            Headline(
                f"extraction.all.np_rate.{scheme}",
                f"(n={n_max:,}, p={p}) extraction · {scheme}",
                stats["rates"][scheme][p][-1],
                None,
                True,
                True,
            )
        )
    return result


def _membership(summary: Mapping[str, Any]) -> list[Headline]:
    scored = {
        key: entry
        for key, entry in summary.get("scores", {}).items()
        if (entry.get("auroc") or {}).get("value") is not None
    }
    if not scored:
        return []
    best_key = max(scored, key=lambda key: scored[key]["auroc"]["value"])
    best = scored[best_key]
    result = [
        Headline(
            "membership.best_auroc",
            f"Best membership AUROC ({best_key})",
            best["auroc"]["value"],
            _ci(best["auroc"], "ci95"),
            False,
            True,
            f"{best['n_members']:,} members / {best['n_nonmembers']:,} non-members",
        )
    ]
    tpr = best.get("tpr_at_0.01_fpr") or {}
    result.append(
        Headline(
            "membership.best_tpr_at_1pct_fpr",
            f"TPR at 1% FPR ({best_key})",
            tpr.get("value"),
            _ci(tpr, "ci95"),
            True,
            True,
            tpr.get("reason", "").replace("_", " "),
        )
    )
    return result


def _loss(summary: Mapping[str, Any]) -> list[Headline]:
    if summary.get("mean_sample_loss") is None:
        return []
    result = [
        Headline(
            "loss.mean_sample_loss",
            "Mean loss",
            summary["mean_sample_loss"],
            _ci(summary, "mean_sample_loss_ci95"),
            False,
            False,
            f"perplexity {summary['perplexity']:.2f}" if summary.get("perplexity") else "",
        )
    ]
    by_member = summary.get("by_member") or {}
    members, others = by_member.get("members") or {}, by_member.get("nonmembers") or {}
    if members.get("mean_nll") is not None and others.get("mean_nll") is not None:
        result.append(
            Headline(
                "loss.member_gap",
                "Loss gap (non-members − members)",
                others["mean_nll"] - members["mean_nll"],
                None,
                False,
                True,
                "nats/token; larger = members far more familiar",
            )
        )
    return result


BUILDERS = {"extraction": _extraction, "membership": _membership, "loss": _loss}


def headlines(summary: Mapping[str, Any]) -> list[Headline]:
    """Headline figures of every check in an audit's summary, in a fixed order."""
    result = []
    for kind, build in BUILDERS.items():
        if summary.get(kind):
            result.extend(build(summary[kind]))
    return result


def deltas(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[Delta]:
    """Headlines of the first audit matched by key with the second's."""
    theirs = {h.key: h for h in headlines(second)}
    ours = headlines(first)
    matched = [Delta(h, theirs.get(h.key)) for h in ours]
    known = {h.key for h in ours}
    # Keys only the second audit has (e.g. a check the first lacked) still show, one-sided.
    matched += [Delta(None, h) for key, h in theirs.items() if key not in known]
    return matched
