"""The reasoning family's report part: Knights-and-Knaves LiMem, factoid retention across
versions, and WILT."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.reasoning import figures
from worker.checks.report_kit import (
    CONTROL_VALIDITY,
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
from worker.engine.reasoning.kk_puzzles import MATH_LEVEL

# A tenth of the puzzles solved as seen but not once perturbed is a reasoning score that
# mostly measures recall.
KK_MATERIAL = 0.10
# Forgetting a twentieth of what the first version knew is a regression worth a look.
RETENTION_MATERIAL = 0.05


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


def kk_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """Puzzles solved as seen but not once the answer changes: LiMem = Acc · (1 − CR) is the
    share of all puzzles, so its count is LiMem · n."""
    table = summary.get("by_perturbation") or {}
    chosen = [k for k in MATH_LEVEL if k in table] or list(table)
    if not chosen or not summary.get("n_puzzles"):
        return Finding(
            "kk_memorization",
            "Reasoning memorisation could not be assessed: no puzzle was graded.",
            "unknown",
            CONTROL_VALIDITY,
            "Audit Knights-and-Knaves puzzles with their perturbations.",
        )
    worst = max(chosen, key=lambda k: table[k].get("limem") or 0.0)
    entry = table[worst]
    n = entry.get("n") or 0
    hits = count_of(entry.get("limem"), n)
    text = (
        f"{counted(hits, n, 'puzzles')} are solved as seen but not once perturbed "
        f"({worst.replace('_', ' ')}; LiMem {format_number(entry.get('limem'), 3)}); accuracy "
        f"on the originals {format_number(summary.get('accuracy'), 3)}."
    )
    risk = proportion_risk(hits, n, KK_MATERIAL)
    return Finding(
        "kk_memorization",
        text,
        risk,
        CONTROL_VALIDITY,
        "Do not read accuracy on these puzzles as reasoning; evaluate on perturbed or unseen "
        "puzzles, and check the training data for the benchmark."
        if risk in ("high", "medium")
        else "Keep auditing new versions on perturbed puzzles.",
    )


def retention_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """Of the factoids the first version answered, how many the audited model lost."""
    versions = summary.get("versions") or []
    if len(versions) < 2:
        return Finding(
            "retention",
            "Retention could not be assessed: it needs at least one earlier version.",
            "unknown",
            CONTROL_VALIDITY,
            "Name the earlier versions in params.versions.",
        )
    first, last = versions[0]["label"], versions[-1]["label"]
    change = (summary.get("from_reference") or {}).get(last) or {}
    transitions = change.get("transitions") or {}
    known = transitions.get("retained", 0) + transitions.get("forgotten", 0)
    lost = transitions.get("forgotten", 0)
    if not known:
        return Finding(
            "retention",
            f"Retention could not be assessed: {first} answered none of the factoids.",
            "unknown",
            CONTROL_VALIDITY,
            "Audit factoids the first version knows.",
        )
    text = (
        f"The audited model ({last}) has forgotten {counted(lost, known, 'factoids')} that "
        f"{first} answered; accuracy {format_number(change.get('accuracy_before'), 3)} → "
        f"{format_number(change.get('accuracy_after'), 3)}."
    )
    risk = proportion_risk(lost, known, RETENTION_MATERIAL)
    return Finding(
        "retention",
        text,
        risk,
        CONTROL_VALIDITY,
        "Review the forgotten factoids below before promoting this version."
        if risk in ("high", "medium")
        else "Re-run on each new version.",
    )


def wilt_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """WILT cannot be solved from memory: a baseline for the other reasoning scores."""
    n = summary.get("n_rules") or 0
    if not n:
        return Finding(
            "wilt",
            "WILT could not be assessed: no rule was played.",
            "unknown",
            CONTROL_VALIDITY,
            "Audit WILT rules (memaudit wilt rules writes them).",
        )
    solved = summary.get("n_correct", 0)
    return Finding(
        "wilt",
        f"{counted(solved, n, 'hidden rules')} were found by experiment, with "
        f"{format_number(summary.get('mean_tests_used'), 3)} tests on average. WILT cannot be "
        "solved from memory, so it grades no memorisation risk: it is the baseline to read the "
        "other reasoning scores against.",
        "unknown",
        CONTROL_VALIDITY,
        "Compare with the kk_memorization accuracy: high recall with low WILT suggests memory.",
    )


REPORT = ReportPart(
    sections={
        "kk_memorization": kk_section,
        "retention": retention_section,
        "wilt": wilt_section,
    },
    findings={
        "kk_memorization": kk_finding,
        "retention": retention_finding,
        "wilt": wilt_finding,
    },
)
