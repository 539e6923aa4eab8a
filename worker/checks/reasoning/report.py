"""The reasoning family's report part: Knights-and-Knaves LiMem, factoid retention across
versions, and WILT."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.reasoning import figures
from worker.checks.report_kit import ReportPart, Section, Table, charts, format_number


def kk_section(summary: Mapping[str, Any]) -> Section:
    table = summary.get("by_perturbation") or {}
    rows = [
        [
            name,
            format_number(entry["n"]),
            format_number(entry["accuracy"]),
            format_number(entry["consistency"]),
            format_number(entry["limem"]),
        ]
        for name, entry in table.items()
    ]
    notes = [
        "LiMem = Acc · (1 − CR): high when puzzles are solved as seen but not once perturbed "
        "(Xie et al. 2024). Math-level perturbations (perturbed_statement, perturbed_leaf) "
        "change the answer; the others change only the wording."
    ]
    if summary.get("wrong_reasons"):
        reasons = ", ".join(f"{k} {v}" for k, v in summary["wrong_reasons"].items())
        notes.append(f"Unsolved originals: {reasons}.")
    memorized = summary.get("memorized_puzzles") or []
    tables = [Table("By perturbation", ["perturbation", "|D_π|", "Acc", "CR", "LiMem"], rows)]
    if memorized:
        tables.append(
            Table(
                "Solved only in the original form (a math-level perturbation failed)",
                ["puzzle"],
                [[m] for m in memorized[:50]],
            )
        )
    named = [
        ("by-people", figures.limem_by_people_figure(summary)),
        ("by-perturbation", figures.limem_by_perturbation_figure(summary)),
    ]
    return Section(
        "kk_memorization",
        "Reasoning memorization (Knights and Knaves)",
        charts("kk", named),
        notes,
        tables,
    )


def retention_section(summary: Mapping[str, Any]) -> Section:
    versions = summary.get("versions") or []
    accuracy = summary.get("accuracy") or {}
    change = summary.get("from_reference") or {}
    rows = [
        [
            v["label"],
            v["uri"],
            format_number(accuracy.get(v["label"])),
            format_number((change.get(v["label"]) or {}).get("forgetting_pp")),
        ]
        for v in versions
    ]
    forgotten = summary.get("forgotten") or []
    tables = [Table("Versions", ["version", "model", "accuracy", "forgetting since v0 (pp)"], rows)]
    if forgotten:
        tables.append(
            Table(
                "Forgotten factoids",
                ["factoid", "lost at"],
                [[f["id"], f["lost_at"]] for f in forgotten[:100]],
            )
        )
    named = [
        ("heatmap", figures.retention_heatmap_figure(summary)),
        ("accuracy", figures.retention_accuracy_figure(summary)),
    ]
    return Section("retention", "Factoid retention", charts("retention", named), [], tables)


def wilt_section(summary: Mapping[str, Any]) -> Section:
    rules = summary.get("per_rule") or []
    rows = [
        [
            str(r["rule_id"]),
            r["family"],
            figures.STATUS_NAMES[figures.rule_status(r)],
            format_number(r["tests_used"]),
            format_number(r["grid_agreement"]),
            format_number(r["points"]),
        ]
        for r in rules
    ]
    outcomes = ", ".join(f"{k} {v}" for k, v in (summary.get("outcomes") or {}).items())
    notes = [
        f"{summary.get('n_correct', 0)} of {summary.get('n_rules', 0)} rules solved "
        f"(accuracy {format_number(summary.get('accuracy'))}), "
        f"{format_number(summary.get('mean_tests_used'))} tests on average, "
        f"{format_number(summary.get('total_points'))} points; outcomes: {outcomes or 'none'}.",
        "Each rule is a clean conversation, so WILT cannot be solved from memory (Banatt et al. "
        "2024). A guess is correct only if it equals the rule on 10,000 seeded random points "
        f"(seed {summary.get('seed')}) and all 68,921 points of [−20, 20]³. Full transcripts: "
        "open a rule in the records table below.",
    ]
    named = [
        ("grid", figures.rule_grid_figure(summary)),
        ("families", figures.accuracy_by_family_figure(summary)),
        ("tests", figures.tests_used_figure(summary)),
        ("agreement", figures.wrong_agreement_figure(summary)),
    ]
    table = Table(
        "Per rule", ["rule", "family", "result", "tests", "grid agreement", "points"], rows
    )
    return Section("wilt", "Inductive reasoning (WILT)", charts("wilt", named), notes, [table])


REPORT = ReportPart(
    sections={
        "kk_memorization": kk_section,
        "retention": retention_section,
        "wilt": wilt_section,
    }
)
