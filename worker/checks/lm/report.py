"""The LM family's report part: sections for extraction, membership and loss, the headline
figures of each, their trend across versions, and two audits' overlays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from worker.checks.lm import figures
from worker.checks.lm.approximate_figures import (
    approximate_finding,
    approximate_headlines,
    approximate_section,
)
from worker.checks.lm.coverage_figures import (
    coverage_finding,
    coverage_headlines,
    coverage_section,
)
from worker.checks.lm.figures import headline_p, sampled_schemes
from worker.checks.lm.findings import (
    dataset_inference_words,
    extraction_finding,
    loss_finding,
    membership_finding,
)
from worker.checks.lm.finetune_figures import (
    finetune_finding,
    finetune_headlines,
    finetune_section,
)
from worker.checks.report_kit import (
    Headline,
    ReportPart,
    Section,
    Table,
    charts,
    interval_text,
    percent_interval_text,
)


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
    notes += _fragile_notes(summary)
    if summary.get("unfit"):
        notes.append(f"{summary['unfit']}.")
    elif summary.get("n_skipped"):
        notes.append(f"{summary['n_skipped']:,} records were too short and were skipped.")
    return Section("extraction", "Extraction", charts("extraction", named), notes)


def _fragile_notes(summary: Mapping[str, Any]) -> list[str]:
    """How many verdicts lay within rounding error, what the float32 re-check did, and the greedy
    rate as an interval when some stayed fragile (docs/numerics.md)."""
    counts = summary.get("fragile") or {}
    notes = []
    sampled = counts.get("documents_sampled_fragile") or {}
    if sampled:
        listed = ", ".join(f"{name} {count:,}" for name, count in sampled.items())
        notes.append(
            f"Documents whose best window has a top-k or nucleus membership within rounding "
            f"error ({listed}) are flagged, not re-checked: their p_z is as computed."
        )
    if not counts.get("windows_flagged"):
        return notes
    notes.insert(
        0,
        f"{counts['windows_flagged']:,} windows had a greedy verdict within the pass's rounding "
        f"bound; {counts['windows_rechecked']:,} were re-checked in float32 and the re-check "
        f"changed {counts['verdicts_changed']:,} verdicts.",
    )
    lo, hi = (summary.get("all") or {}).get("greedy_rate_interval") or (None, None)
    if counts.get("documents_fragile") and lo is not None:
        notes.append(
            f"{counts['documents_fragile']:,} documents stay within rounding error: the greedy "
            f"rate lies in [{lo:.1%}, {hi:.1%}]."
        )
    return notes


SPLIT_READINGS = {
    "confounded": "confounded: the texts alone tell members from non-members",
    "no_confound_detected": "no confound detected by the blind baseline",
}


def _blind_table(blind: Mapping[str, Any]) -> Table:
    """The model-free classifier's result: what any membership score must beat on this split."""
    method = blind.get("method") or {}
    features = method.get("features") or []
    rows = [
        ["reading", SPLIT_READINGS.get(blind["reading"], blind["reading"])],
        ["AUROC", interval_text((blind.get("auroc") or {}).get("value"), _ci_of(blind, "auroc"))],
        [
            "TPR at 1% FPR",
            percent_interval_text(
                (blind.get("tpr_at_0.01_fpr") or {}).get("value"), _ci_of(blind, "tpr_at_0.01_fpr")
            ),
        ],
        [
            "records",
            f"{blind.get('n_members', 0):,} members / {blind.get('n_nonmembers', 0):,} non-members",
        ],
        [
            "method",
            f"{method.get('classifier', '—')} on {', '.join(map(str, features)) or '—'}; "
            f"{method.get('folds', '—')}-fold cross-validated; confounded when the AUROC's "
            f"lower bound exceeds 0.5 + δ (δ = {method.get('delta', '—')})",
        ],
    ]
    return Table(
        "Blind baseline: members against non-members from the texts alone", ["", "value"], rows
    )


def _ci_of(entry: Mapping[str, Any], name: str) -> list[float | None] | None:
    found = entry.get(name) or {}
    return found.get("ci95") if isinstance(found, Mapping) else None


READING_WORDS = {
    "stands": "stands",
    "no_membership_signal": "no membership signal",
    "underpowered": "underpowered",
    "inconclusive": "inconclusive",
}


def _readings_table(scores: Mapping[str, Mapping[str, Any]]) -> Table | None:
    """Each score's reading and, for information only, its margin over the blind baseline."""
    rows = []
    for key, entry in scores.items():
        reading = entry.get("reading") or {}
        if not reading:
            continue
        words = READING_WORDS.get(reading.get("reading"), str(reading.get("reading")))
        if reading.get("why"):
            words += f" ({reading['why']})"
        if reading.get("records_needed"):
            words += f"; about {reading['records_needed']:,} records needed"
        margin = entry.get("margin_over_blind") or {}
        rows.append(
            [
                key,
                interval_text((entry.get("auroc") or {}).get("value"), _ci_of(entry, "auroc")),
                words,
                f"{interval_text(margin.get('value'), margin.get('ci95'))}"
                if margin.get("value") is not None
                else "—",
            ]
        )
    if not rows:
        return None
    header = ["score", "AUROC", "reading", "AUROC − blind AUROC (for information only)"]
    return Table("Readings per score", header, rows)


def _membership_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = [("roc", figures.roc_figure(summary))]
    for key in summary.get("scores", {}):
        named.append(
            (f"dist-{key.replace('.', '_')}", figures.score_distribution_figure(summary, key))
        )
    notes = list(summary.get("warnings", []))
    tables = []
    blind = summary.get("blind_baseline") or {}
    if blind.get("reading") in SPLIT_READINGS:
        tables.append(_blind_table(blind))
    elif blind:
        notes.append(f"The blind baseline was not run: {blind.get('reason', 'no reason given')}.")
    readings = _readings_table(summary.get("scores") or {})
    if readings is not None:
        tables.append(readings)
    inference = dataset_inference_words(summary).strip()
    if inference:
        notes.append(inference)
    notes.extend(holdout_notes(summary.get("holdout") or {}))
    return Section("membership", "Membership", charts("membership", named), notes, tables)


def holdout_notes(holdout: Mapping[str, Any]) -> list[str]:
    """Which records the held-out scores learnt from, and loss's AUROC on the records they share."""
    if not holdout:
        return []
    scores = ", ".join(holdout.get("scores") or ())
    if holdout.get("not_computed"):
        return [f"{scores} were not computed: {holdout['not_computed']}."]
    source = holdout.get("source") or ""
    if source.startswith(("path:", "dataset:")):
        return [
            f"{scores} learnt from the reference corpus {source}; no audited record was held out."
        ]
    prefix, frequency = holdout.get("prefix") or {}, holdout.get("frequency_only") or {}

    def named(group: Mapping[str, Any]) -> str:
        ids = [*group.get("members", ()), *group.get("nonmembers", ())]
        return ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")

    words = (
        f"{scores} learnt from {holdout.get('n_held_out', 0)} held-out records, scored by no "
        f"score (loss included): prefix shots ({holdout.get('shots')} per label, within "
        f"{holdout.get('prefix_tokens')} tokens) {named(prefix)}"
    )
    if frequency.get("members") or frequency.get("nonmembers"):
        words += f"; token frequencies also from {named(frequency)}"
    loss = holdout.get("loss_auroc_same_records") or {}
    if loss.get("value") is not None:
        words += (
            f". Every AUROC is on the same {holdout.get('n_scored', 0):,} scored records; "
            f"loss's is {interval_text(loss['value'], loss.get('ci95'))}"
        )
    return [words + "."]


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
        "coverage": coverage_section,
        "approximate": approximate_section,
        "finetune": finetune_section,
    },
    headlines={
        "extraction": _extraction,
        "membership": _membership,
        "loss": _loss,
        "coverage": coverage_headlines,
        "approximate": approximate_headlines,
        "finetune": finetune_headlines,
    },
    findings={
        "extraction": extraction_finding,
        "membership": membership_finding,
        "loss": loss_finding,
        "approximate": approximate_finding,
        "finetune": finetune_finding,
        "coverage": coverage_finding,
    },
    trend={
        "extraction.all.greedy_rate": (0.0, 1.02),
        "extraction.members.greedy_rate": (0.0, 1.02),
        "membership.best_auroc": (0.4, 1.02),
        "membership.best_tpr_at_1pct_fpr": (0.0, 1.02),
        "loss.mean_sample_loss": None,
        "finetune.all.target_not_base": (0.0, 1.02),
        "finetune.mink_delta_auroc": (0.4, 1.02),
    },
    compare=_compare,
)
