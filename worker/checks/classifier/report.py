"""The classifier family's report part: charts, the numbers behind them as small tables, and
the readings METRICS.md states with them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.classifier import figures as figures
from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    Finding,
    ReportPart,
    Section,
    Table,
    charts,
    count_of,
    counted,
    format_number,
)


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


def diversity_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """Entropy and MI are read against another model measured alike, never alone."""
    layers = summary.get("layers") or {}
    n = summary.get("n_samples", 0)
    if not layers:
        return Finding(
            "diversity",
            f"Information diversity could not be measured ({n:,} usable records; it needs 2).",
            "unknown",
            CONTROL_MEMORISATION,
            "Audit at least two records with stored activations.",
        )
    spans = "; ".join(
        f"{name}: mean entropy {format_number(layer['entropy']['mean'], 3)} nats, mean MI "
        f"{format_number(layer['mi'].get('mean'), 3)} nats"
        for name, layer in layers.items()
    )
    return Finding(
        "diversity",
        f"Neuron entropy and inter-neuron MI over {n:,} records in {len(layers)} layers ({spans}). "
        "They say which kind of memorisation a model leans to (shortcut H1 or example-level H2) "
        "only beside another model measured the same way; alone they grade no risk.",
        "unknown",
        CONTROL_MEMORISATION,
        "Compare with a reference model audited with the same dataset, layers and bins.",
    )


def proxies_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """Proxies rank records; they measure no rate, so the sentence says what the ranking shows."""
    rank_by = summary.get("rank_by") or "the rank proxy"
    top = summary.get("most_memorized") or []
    entry = (summary.get("proxies") or {}).get(rank_by) or {}
    if not top:
        return Finding(
            "proxies",
            f"No record could be ranked by {rank_by} ({summary.get('n_scored', 0):,} scored).",
            "unknown",
            CONTROL_MEMORISATION,
            "Check that the records carry labels the model's classes cover.",
        )
    median = f", median {format_number(entry.get('median'), 3)}" if "median" in entry else ""
    return Finding(
        "proxies",
        f"The {len(top):,} most memorised of {summary.get('n_scored', 0):,} records by "
        f"{rank_by} are listed below (top score {format_number(top[0].get('score'), 3)}"
        f"{median}). Proxies rank records; they measure no rate, so they grade no risk.",
        "unknown",
        CONTROL_MEMORISATION,
        "Review the top records (mislabelled, duplicated or rare ones); confirm a concern with "
        "held-out records before acting.",
    )


def capacity_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """Whether the model fits every record: the capacity to memorise, not proof of it."""
    n = summary.get("n_samples", 0)
    accuracy = summary.get("training_accuracy")
    if accuracy is None or not n:
        return Finding(
            "capacity",
            "Capacity bounds only: the records carry no labels, so the fit was not measured.",
            "unknown",
            CONTROL_MEMORISATION,
            "Audit labelled training records to see whether the model fits them all.",
        )
    fitted = count_of(accuracy, n)
    text = f"The model fits {counted(fitted, n, 'records')}"
    if summary.get("contradictory_pairs"):
        text += f"; {len(summary['contradictory_pairs']):,} pairs of identical inputs disagree"
    risk = "medium" if summary.get("interpolates") else "low"
    text += (
        ": it interpolates them, so it has the capacity to memorise their labels."
        if risk == "medium"
        else "."
    )
    return Finding(
        "capacity",
        text,
        risk,
        CONTROL_MEMORISATION,
        "Run the proxies check to see which records are memorised rather than learned."
        if risk == "medium"
        else "Nothing to do for capacity; the proxies check shows which records stand out.",
    )


REPORT = ReportPart(
    sections={
        "diversity": diversity_section,
        "proxies": proxies_section,
        "capacity": capacity_section,
    },
    findings={
        "diversity": diversity_finding,
        "proxies": proxies_finding,
        "capacity": capacity_finding,
    },
)
