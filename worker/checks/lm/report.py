"""The LM family's report part: sections for extraction, membership and loss, the headline
figures of each, their trend across versions, and two audits' overlays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from worker.checks.lm import figures
from worker.checks.lm.figures import headline_p, sampled_schemes
from worker.checks.report_kit import Headline, ReportPart, Section, charts


def _extraction_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = []
    notes = []
    schemes = figures.sampled_schemes(summary)
    if not summary.get("all", {}).get("n"):
        notes.append("No record was long enough for the prefix and suffix.")
    for scheme in schemes if summary.get("all", {}).get("n") else []:
        slug = scheme.replace(".", "_").replace("=", "")
        named += [
            (f"rate-{slug}", figures.extraction_rate_figure(summary, scheme)),
            (f"groups-{slug}", figures.extraction_groups_figure(summary, scheme)),
            (f"pz-{slug}", figures.pz_histogram_figure(summary, scheme)),
            (f"duplicates-{slug}", figures.duplicates_figure(summary, scheme)),
        ]
    if not schemes:
        notes.append("Only greedy decoding was audited: see the greedy rates above.")
    if summary.get("n_skipped"):
        notes.append(f"{summary['n_skipped']:,} records were too short and were skipped.")
    return Section("extraction", "Extraction", charts("extraction", named), notes)


def _membership_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = [("roc", figures.roc_figure(summary))]
    for key in summary.get("scores", {}):
        named.append(
            (f"dist-{key.replace('.', '_')}", figures.score_distribution_figure(summary, key))
        )
    return Section(
        "membership", "Membership", charts("membership", named), list(summary.get("warnings", []))
    )


def _loss_section(summary: Mapping[str, Any]) -> Section:
    return Section(
        "loss", "Loss", charts("loss", [("hist", figures.loss_histogram_figure(summary))])
    )


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


def _compare(
    a: Mapping[str, Any], b: Mapping[str, Any], names: Sequence[str]
) -> list[tuple[str, go.Figure]]:
    """Two audits' (n,p) curves per shared scheme, and their ROC curves, overlaid."""
    overlays: list[tuple[str, go.Figure]] = []
    shared_schemes = [
        s
        for s in sampled_schemes(a.get("extraction", {}))
        if s in sampled_schemes(b.get("extraction", {}))
    ]
    for scheme in shared_schemes:
        figure = figures.compare_rates_figure([a["extraction"], b["extraction"]], names, scheme)
        if figure is not None:
            overlays.append((f"compare-rate-{len(overlays)}", figure))
    roc = figures.compare_roc_figure([a.get("membership", {}), b.get("membership", {})], names)
    if roc is not None:
        overlays.append(("compare-roc", roc))
    return overlays


REPORT = ReportPart(
    sections={
        "extraction": _extraction_section,
        "membership": _membership_section,
        "loss": _loss_section,
    },
    headlines={"extraction": _extraction, "membership": _membership, "loss": _loss},
    trend={
        "extraction.all.greedy_rate": (0.0, 1.02),
        "extraction.members.greedy_rate": (0.0, 1.02),
        "membership.best_auroc": (0.4, 1.02),
        "membership.best_tpr_at_1pct_fpr": (0.0, 1.02),
        "loss.mean_sample_loss": None,
    },
    compare=_compare,
)
