"""The classifier family's report part: charts, the numbers behind them as small tables, and
the readings METRICS.md states with them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.classifier import figures as figures
from worker.checks.report_kit import ReportPart, Section, Table, charts, format_number


def diversity_section(summary: Mapping[str, Any]) -> Section:
    layers = summary.get("layers") or {}
    readings = summary.get("readings") or {}
    notes = [f"{key}: {text}." for key, text in readings.items()]
    settings = summary.get("settings") or {}
    notes.append(
        f"{summary.get('n_samples', 0):,} records, {settings.get('n_bins')} "
        f"{settings.get('binning')} bins, {settings.get('mi_estimator')} estimator, "
        f"{settings.get('pooling')} pooling."
    )
    notes += list(summary.get("warnings", []))
    rows = [
        [
            name,
            format_number(layer["n_neurons"]),
            format_number(layer["entropy"]["mean"]),
            format_number(layer["entropy"]["median"]),
            format_number(layer["mi"].get("mean")),
            format_number(layer["mi"].get("median")),
            f"{layer['mi']['n_pairs']:,}"
            + (f" ({layer['mi']['n_neurons_sampled']} neurons)" if layer["mi"]["sampled"] else ""),
            format_number(layer["mi"]["independent_bias"]),
        ]
        for name, layer in layers.items()
    ]
    table = Table(
        "Per layer (nats)",
        ["layer", "neurons", "mean H", "median H", "mean MI", "median MI", "pairs", "(B−1)²/2S"],
        rows,
    )
    named = [
        ("entropy", figures.entropy_box_figure(summary)),
        ("mi", figures.mi_density_figure(summary)),
    ]
    return Section(
        "diversity",
        "Information diversity",
        charts("diversity", named),
        notes,
        [table] if rows else [],
    )


def proxies_section(summary: Mapping[str, Any]) -> Section:
    names = list(summary.get("proxies") or {})
    named = [("exemplars", figures.exemplar_figure(summary))]
    named += [(f"hist-{name}", figures.proxy_histogram_figure(summary, name)) for name in names]
    shown = [n for n in ("loss", "confidence", "margin", "heldout_kl", "feldman_mem") if n in names]
    top = Table(
        f"Most memorized by {summary.get('rank_by')}",
        ["record", "label", "predicted", "score", *shown],
        [
            [
                str(e["id"]),
                format_number(e.get("label")),
                format_number(e.get("predicted")),
                format_number(e.get("score")),
                *(format_number(e.get(n)) for n in shown),
            ]
            for e in summary.get("most_memorized", [])
        ],
    )
    rho = summary.get("spearman") or {}
    correlations = Table(
        "Spearman ρ between proxies (signed so higher = more memorized)",
        ["", *names],
        [[a, *(format_number((rho.get(a) or {}).get(b), 3) for b in names)] for a in names],
    )
    notes = []
    if summary.get("missing"):
        notes.append(
            f"Not computed (the data does not allow them): {', '.join(summary['missing'])}."
        )
    if summary.get("n_heldout"):
        notes.append(f"{summary['n_heldout']:,} held-out records served the held-out copy only.")
    return Section(
        "proxies", "Memorization proxies", charts("proxies", named), notes, [top, correlations]
    )


def capacity_section(summary: Mapping[str, Any]) -> Section:
    model = summary.get("model") or {}
    facts: list[list[str]] = [["parameters", format_number(model.get("param_count"))]]
    attention = model.get("attention")
    if attention:
        facts += [
            ["capacity C = H·d_h + d", format_number(attention["capacity"])],
            ["associations T₀", format_number(attention["associations"])],
            ["accuracy bound φ", format_number(attention["phi"])],
            [
                "earlier bound (Mahdavi et al.)",
                format_number(attention["previous_phi"])
                + ("" if attention["previous_applies"] else " (needs S ≤ d)"),
            ],
        ]
    width = model.get("width")
    if width:
        facts.append(
            [
                "narrowest hidden layer / inputs",
                f"{width['min_hidden_width']} / {width['input_dim']}",
            ]
        )
    if "training_accuracy" in summary:
        facts.append(["accuracy on these records", f"{100 * summary['training_accuracy']:.2f}%"])
    if "separation_bound" in summary:
        facts.append(["separation bound c(D)", format_number(summary["separation_bound"])])
    notes = []
    if attention:
        notes.append(attention["scope"] + ".")
    if width and width.get("text"):
        notes.append(width["text"])
    if summary.get("separation_note"):
        notes.append(summary["separation_note"] + ".")
    if summary.get("contradictory_pairs"):
        pairs = "; ".join(" & ".join(map(str, p)) for p in summary["contradictory_pairs"][:20])
        notes.append(f"Contradictory pairs: {pairs}.")
    named = [("nearest", figures.capacity_figure(summary))]
    return Section(
        "capacity",
        "Capacity",
        charts("capacity", named),
        notes,
        [Table("Bounds", ["", "value"], facts)],
    )


REPORT = ReportPart(
    sections={
        "diversity": diversity_section,
        "proxies": proxies_section,
        "capacity": capacity_section,
    }
)
