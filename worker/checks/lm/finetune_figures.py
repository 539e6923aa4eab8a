"""The finetune kind's report section and finding: Δℓ histograms of members against
non-members, and the records extractable from the fine-tune but not from its base. Summary in,
figures out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    GROUP_NAMES,
    Finding,
    Headline,
    Section,
    Table,
    charts,
    counted,
    format_number,
    histogram_figure,
    layout,
    proportion_risk,
)

DELTA_AXIS = "Δℓ = ℓ_target − ℓ_base, nats/token (higher = learned by the fine-tune)"
TARGET_COLOR = "#dc2626"
BASE_COLOR = "#64748b"
ONLY_COLOR = "#7c2d12"


def delta_histogram_figure(summary: Mapping[str, Any], key: str) -> go.Figure | None:
    histogram = (summary.get("scores") or {}).get(key, {}).get("histogram")
    if not histogram:
        return None
    name = "mean Δℓ" if key == "mean_delta" else f"Min-{key.rsplit('_', 1)[1]} Δℓ"
    groups = "records" if "all" in histogram.get("counts", {}) else "members vs non-members"
    return histogram_figure(histogram, f"{name}: {groups}", DELTA_AXIS)


def extraction_counts_figure(summary: Mapping[str, Any]) -> go.Figure | None:
    """Per group: records greedy decoding extracts from the fine-tune, from the base, and from
    the fine-tune but not the base (the headline)."""
    counts = summary.get("extraction") or {}
    groups = [g for g in ("members", "nonmembers", "all") if g in counts]
    if not groups or not counts["all"].get("n_windowed"):
        return None
    if len(groups) > 1:
        groups.remove("all")
    bars = [
        ("target_extracted", "fine-tune extracts", TARGET_COLOR),
        ("base_extracted", "base extracts", BASE_COLOR),
        ("target_not_base", "fine-tune, not base", ONLY_COLOR),
    ]
    figure = go.Figure(
        [
            go.Bar(
                x=[GROUP_NAMES[g] for g in groups],
                y=[counts[g][key] for g in groups],
                name=label,
                marker={"color": color},
                customdata=[counts[g]["n_windowed"] for g in groups],
                hovertemplate="%{y} of %{customdata} records<extra>" + label + "</extra>",
            )
            for key, label, color in bars
        ]
    )
    figure.update_layout(barmode="group")
    return layout(
        figure,
        "Greedy extraction: fine-tune vs base",
        xaxis={"title": ""},
        yaxis={"title": "records"},
    )


def _found_table(summary: Mapping[str, Any]) -> Table | None:
    found = summary.get("target_not_base") or []
    if not found:
        return None
    rows = [
        [
            str(row.get("id")),
            format_number(row.get("offset")),
            format_number(row.get("mean_delta")),
            format_number(row.get("base_match_len")),
        ]
        for row in found[:20]
    ]
    return Table(
        "Records extractable from the fine-tune but not the base (largest suffix Δℓ first)",
        ["record", "window offset", "suffix mean Δℓ", "base's matching tokens"],
        rows,
    )


def finetune_section(summary: Mapping[str, Any]) -> Section:
    named: list[tuple[str, go.Figure | None]] = [("extraction", extraction_counts_figure(summary))]
    for key in summary.get("scores") or {}:
        named.append((f"dist-{key.replace('.', '_')}", delta_histogram_figure(summary, key)))
    notes = []
    counts = (summary.get("extraction") or {}).get("all") or {}
    if counts.get("n_windowed"):
        notes.append(
            f"{counts['target_not_base']:,} of {counts['n_windowed']:,} records are extractable "
            f"from the fine-tune but not from its base ({counts['target_extracted']:,} from the "
            f"fine-tune, {counts['base_extracted']:,} from the base)."
        )
    if summary.get("pass"):
        notes.append(f"Target and base scored in {summary['pass']}.")
    notes += list(summary.get("warnings") or [])
    table = _found_table(summary)
    return Section(
        "finetune",
        "Fine-tune vs base",
        charts("finetune", named),
        notes,
        [table] if table is not None else [],
    )


def finetune_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    """The share of records extractable from the fine-tune but not its base (per group when
    labelled), and the first Min-K% over Δℓ's membership AUROC when labelled."""
    result = []
    counts = summary.get("extraction") or {}
    for group, suffix in (("all", ""), ("members", " · members")):
        stats = counts.get(group) or {}
        n = stats.get("n_windowed") or 0
        if not n:
            continue
        result.append(
            Headline(
                f"finetune.{group}.target_not_base",
                f"Extractable from the fine-tune, not its base{suffix}",
                stats["target_not_base"] / n,
                None,
                True,
                True,
                f"{stats['target_not_base']:,} of {n:,} records",
            )
        )
    scores = summary.get("scores") or {}
    key = next((k for k in scores if k.startswith("mink_delta_")), None)
    auroc = ((scores.get(key) or {}).get("auroc") or {}) if key else {}
    if auroc.get("value") is not None:
        ci = auroc.get("ci95")
        entry = scores[key]
        result.append(
            Headline(
                "finetune.mink_delta_auroc",
                f"Min-{key.rsplit('_', 1)[1]} Δℓ membership AUROC",
                auroc["value"],
                (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else None,
                False,
                True,
                f"{entry.get('n_members', 0):,} members / "
                f"{entry.get('n_nonmembers', 0):,} non-members",
            )
        )
    return result


def finetune_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """What the fine-tune made extractable that its base was not: graded on those records."""
    counts = (summary.get("extraction") or {}).get("all") or {}
    n = counts.get("n_windowed") or 0
    if not n:
        why = (
            "prefix_tokens+suffix_tokens exceeds the models' context"
            if summary.get("n_window_exceeds_context")
            else "no record was long enough for a window, or none had a token to score"
        )
        return Finding(
            "finetune",
            f"The fine-tune's extraction was not compared with its base: {why}.",
            "unknown",
            CONTROL_MEMORISATION,
            "Lower prefix_tokens and suffix_tokens, or audit longer records.",
        )
    only = counts["target_not_base"]
    text = (
        f"Greedy decoding extracts {counted(only, n, 'records')} from the fine-tune but not "
        f"from its base"
    )
    entry = (summary.get("scores") or {}).get("mean_delta") or {}
    auroc = (entry.get("auroc") or {}).get("value")
    if auroc is not None:
        text += f"; mean Δℓ separates members from non-members with AUROC {auroc:.2f}"
    return Finding(
        "finetune",
        text + ".",
        proportion_risk(only, n),
        CONTROL_MEMORISATION,
        "Remove or deduplicate the extracted records from the fine-tuning data, or train with "
        "fewer epochs or differential privacy, then audit again.",
    )
