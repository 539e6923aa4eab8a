"""The diffusion family's report part: the attraction basin, mitigations, and local intrinsic
dimension."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.diffusion import figures as figures
from worker.checks.report_kit import (
    CONTROL_REPLICATION,
    Finding,
    ReportPart,
    Section,
    Table,
    charts,
    count_of,
    counted,
    format_number,
    proportion_risk,
)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def basin_section(summary: Mapping[str, Any]) -> Section:
    rows = [
        [
            name.replace("_", " "),
            format_number(entry["n"]),
            format_number(entry["detection_score"]),
            format_number(entry["similarity"]),
            format_number(entry["copy_rate"]),
        ]
        for name, entry in (summary.get("by_flag") or {}).items()
    ]
    notes = [
        f"{_percent(summary.get('copy_rate'))} of the prompts produced a generation within "
        f"cosine {format_number(summary.get('threshold'))} of a training image "
        f"({_embedding_words(summary)}), at guidance "
        f"{format_number(summary.get('guidance_scale'))}. A high Δ_t means guidance pulls hard: "
        "the trajectory is inside an attraction basin (Jain et al. 2025); the diamond marks where "
        "the dynamic transition rule would switch guidance on.",
    ]
    named = [
        ("delta", figures.delta_curves_figure(summary)),
        ("pairs", figures.exemplar_pairs_figure(summary)),
    ]
    tables = []
    if rows:
        header = ["prompts", "n", "detection score", "similarity", "copy rate"]
        tables.append(Table("By memorized flag", header, rows))
    return Section(
        "cfg_basin", "Guidance and the attraction basin", charts("basin", named), notes, tables
    )


def _embedding_words(summary: Mapping[str, Any]) -> str:
    embedding = summary.get("embedding", "pixels")
    return {
        "copy_encoder": "cosine in the bundled copy-detection encoder",
        "pixels": "cosine of centred pixels",
    }.get(embedding, f"cosine of {embedding}'s activations")


def mitigation_section(summary: Mapping[str, Any]) -> Section:
    methods = summary.get("methods") or {}
    rows = [
        [
            name,
            format_number(entry["mean_similarity"]),
            format_number(entry["copy_rate"]),
            format_number(entry["alignment"]),
            format_number(entry["alignment_cost"]),
        ]
        for name, entry in methods.items()
    ]
    notes = [
        "cfg: guidance throughout; stp: no guidance until the static transition τ; dtp: the plain "
        "conditional model until Δ_t turns upward; og_dtp: opposite guidance until the latents "
        "turn. Pick the method with the fewest copies whose alignment cost you can accept.",
        f"Similarity: {_embedding_words(summary)}, copies from "
        f"{format_number(summary.get('threshold'))}. Alignment cost: plain CFG's alignment "
        "minus the method's.",
    ]
    named = [
        ("similarity", figures.similarity_by_method_figure(summary)),
        ("alignment", figures.alignment_figure(summary)),
    ]
    header = ["method", "mean similarity", "copy rate", "alignment", "alignment cost"]
    return Section(
        "cfg_mitigation",
        "Mitigating guidance-driven copying",
        charts("mitigation", named),
        notes,
        [Table("By method", header, rows)],
    )


def lid_section(summary: Mapping[str, Any]) -> Section:
    readings = ", ".join(f"{k} {v}" for k, v in (summary.get("readings") or {}).items())
    notes = [
        f"Mean FLIPD {format_number(summary.get('mean_flipd'))} at t₀ = {summary.get('t0')}, "
        f"mean LPCA of the data {format_number(summary.get('mean_lpca'))}; readings: {readings}. "
        "A model LID below the data's is overfitting-driven memorization (od_mem); both small "
        "is data-driven (dd_mem), as Ross et al. 2025 read them; the margins are parameters."
    ]
    named = [
        ("histogram", figures.flipd_histogram_figure(summary)),
        ("curve", figures.flipd_curve_figure(summary)),
    ]
    return Section("lid", "Local intrinsic dimension (FLIPD)", charts("lid", named), notes)


def _nothing(kind: str, what: str) -> Finding:
    return Finding(
        kind,
        f"{what} could not be assessed: no prompt was generated.",
        "unknown",
        CONTROL_REPLICATION,
        "Audit prompts (or class labels) with their training images.",
    )


def basin_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """How many prompts produced a near-copy of a training image at the guidance served."""
    n = summary.get("n") or 0
    if not n or summary.get("copy_rate") is None:
        return _nothing("cfg_basin", "Image replication")
    copies = count_of(summary["copy_rate"], n)
    risk = proportion_risk(copies, n)
    return Finding(
        "cfg_basin",
        f"{counted(copies, n, 'prompts')} produced a generation within cosine "
        f"{format_number(summary.get('threshold'))} of a training image "
        f"({_embedding_words(summary)}) at guidance "
        f"{format_number(summary.get('guidance_scale'))}.",
        risk,
        CONTROL_REPLICATION,
        "Deduplicate the copied training images, and compare the guidance mitigations "
        "(cfg_mitigation) before release."
        if risk in ("high", "medium")
        else "Re-run on each new version with the prompts most likely to copy.",
    )


def mitigation_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """The method with the fewest copies, against plain guidance, and what it costs."""
    n = summary.get("n") or 0
    methods = {
        k: v for k, v in (summary.get("methods") or {}).items() if v.get("copy_rate") is not None
    }
    if not n or not methods:
        return _nothing("cfg_mitigation", "Guidance mitigation")
    best = min(methods, key=lambda k: methods[k]["copy_rate"])
    copies = count_of(methods[best]["copy_rate"], n)
    text = f"With {best}, {counted(copies, n, 'prompts')} still copy a training image"
    if "cfg" in methods and best != "cfg":
        text += f", against {count_of(methods['cfg']['copy_rate'], n):,} with plain guidance (cfg)"
    cost = methods[best].get("alignment_cost")
    if cost is not None:
        text += f"; alignment cost {cost:.3f}"
    risk = proportion_risk(copies, n)
    return Finding(
        "cfg_mitigation",
        text + ".",
        risk,
        CONTROL_REPLICATION,
        f"Serve with {best} if its alignment cost is acceptable; deduplicate the training images "
        "that still copy.",
    )


def lid_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """Generations whose local intrinsic dimension reads as memorised (Ross et al. 2025)."""
    n = summary.get("n") or 0
    readings = summary.get("readings") or {}
    if not n:
        return _nothing("lid", "Local intrinsic dimension")
    memorised = readings.get("od_mem", 0) + readings.get("dd_mem", 0)
    risk = proportion_risk(memorised, n)
    return Finding(
        "lid",
        f"{counted(memorised, n, 'records')} read as memorised by their local intrinsic "
        f"dimension ({readings.get('od_mem', 0):,} overfitting-driven, "
        f"{readings.get('dd_mem', 0):,} data-driven; the margins are parameters).",
        risk,
        CONTROL_REPLICATION,
        "Check the od_mem records for near-copies in the training data (cfg_basin)."
        if risk in ("high", "medium")
        else "Re-run on each new version.",
    )


REPORT = ReportPart(
    sections={
        "cfg_basin": basin_section,
        "cfg_mitigation": mitigation_section,
        "lid": lid_section,
    },
    findings={
        "cfg_basin": basin_finding,
        "cfg_mitigation": mitigation_finding,
        "lid": lid_finding,
    },
)
