"""How `kk_memorization` computes: each puzzle and its perturbations answered greedily and
judged against the gold solution; LiMem per perturbation, people and split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.inspection.datasets import DatasetError, Record
from worker.checks.reasoning.kinds import KKParams
from worker.checks.reasoning.passes import GenerationContext
from worker.engine.reasoning.kk_judge import judge, limem
from worker.engine.reasoning.kk_puzzles import MATH_LEVEL
from worker.engine.reasoning.kk_sets import prompt

OUTPUT_CHARS = 2000  # what a row keeps of each answer


def _puzzle(record: Record) -> dict[str, Any]:
    data = record.data
    for name, kind in (("quiz", str), ("solution_text", str), ("n_people", int)):
        if not isinstance(data.get(name), kind):
            raise DatasetError(record.line_no, f"field {name!r} must be a {kind.__name__}")
    return data


def _verdict(output: str, puzzle: Mapping[str, Any], n_people: int) -> dict[str, Any]:
    roles = tuple((puzzle.get("knight_knave") or {}).values()) or ("knight", "knave")
    found = judge(output, puzzle["solution_text"], n_people, puzzle.get("names") or (), roles)
    return {
        "correct": found.correct,
        "correct_ratio": found.correct_ratio,
        "wrong_reason": found.wrong_reason,
        "strict_correct": found.strict_correct,
    }


def compute(
    context: GenerationContext, records: Sequence[Record], params: KKParams
) -> list[dict[str, Any]]:
    puzzles = [_puzzle(r) for r in records]
    prompts: list[str] = []
    where: list[tuple[int, str]] = []  # (record, "original" or the perturbation)
    for i, data in enumerate(puzzles):
        prompts.append(prompt(data["quiz"]))
        where.append((i, "original"))
        for kind in params.perturbations:
            changed = (data.get("perturbations") or {}).get(kind)
            if changed is not None:
                prompts.append(prompt(changed["quiz"]))
                where.append((i, kind))
    outputs = context.generate(prompts, params.max_new_tokens, params.chat_template)
    rows: list[dict[str, Any]] = [
        {
            "id": records[i].sample_id,
            "n_people": data["n_people"],
            "split": data.get("split"),
            "correct_pert": {kind: None for kind in params.perturbations},
            "detail": {"outputs": {}, "gold": {}},
        }
        for i, data in enumerate(puzzles)
    ]
    for (i, kind), output in zip(where, outputs, strict=True):
        data = puzzles[i] if kind == "original" else puzzles[i]["perturbations"][kind]
        verdict = _verdict(output, data, puzzles[i]["n_people"])
        rows[i]["detail"]["outputs"][kind] = output[:OUTPUT_CHARS]
        rows[i]["detail"]["gold"][kind] = data["solution_text"]
        if kind == "original":
            rows[i].update(
                correct_orig=verdict["correct"],
                correct_ratio=verdict["correct_ratio"],
                wrong_reason=verdict["wrong_reason"],
                strict_correct=verdict["strict_correct"],
            )
        else:
            rows[i]["correct_pert"][kind] = verdict["correct"]
    for row in rows:
        # Solved as seen, not once perturbed: "solved by memorization" under that perturbation.
        row["memorized"] = {
            kind: (None if ok is None else bool(row["correct_orig"] and not ok))
            for kind, ok in row["correct_pert"].items()
        }
        row["memorized_any"] = any(row["memorized"].get(k) for k in MATH_LEVEL)
    return rows


def _limem_table(rows: Sequence[Mapping[str, Any]], kinds: Sequence[str]) -> dict[str, Any]:
    table = {}
    for kind in kinds:
        found = limem([r["correct_orig"] for r in rows], [r["correct_pert"][kind] for r in rows])
        table[kind] = {
            "n": found.n,
            "accuracy": found.accuracy,
            "consistency": found.consistency,
            "limem": found.limem,
        }
    return table


def summarize(values: Sequence[dict[str, Any]], params: KKParams) -> dict[str, Any]:
    kinds = params.perturbations
    summary: dict[str, Any] = {
        "n_puzzles": len(values),
        "accuracy": sum(v["correct_orig"] for v in values) / len(values) if values else None,
        "by_perturbation": _limem_table(values, kinds),
        "by_people": {},
        "wrong_reasons": {},
    }
    for n in sorted({v["n_people"] for v in values}):
        for split in sorted({str(v.get("split")) for v in values if v["n_people"] == n}):
            group = [v for v in values if v["n_people"] == n and str(v.get("split")) == split]
            summary["by_people"].setdefault(str(n), {})[split] = {
                "n": len(group),
                "accuracy": sum(v["correct_orig"] for v in group) / len(group),
                "by_perturbation": _limem_table(group, kinds),
            }
    for v in values:
        if v.get("wrong_reason"):
            reason = v["wrong_reason"]
            summary["wrong_reasons"][reason] = summary["wrong_reasons"].get(reason, 0) + 1
    summary["memorized_puzzles"] = [v["id"] for v in values if v["memorized_any"]][:200]
    return summary
