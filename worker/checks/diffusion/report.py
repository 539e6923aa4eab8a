"""The diffusion family's report part: the attraction basin, mitigations, and local intrinsic
dimension."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.diffusion import figures as figures
from worker.checks.report_kit import ReportPart, Section, Table, charts, format_number


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


REPORT = ReportPart(
    sections={
        "cfg_basin": basin_section,
        "cfg_mitigation": mitigation_section,
        "lid": lid_section,
    }
)
