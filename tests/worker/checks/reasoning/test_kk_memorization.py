"""`kk_memorization` on a model that memorized its puzzles, and on a solver that reasons."""

from __future__ import annotations

import pytest

from core.check_kinds import CheckKind
from core.inspection.datasets import iter_records
from tests.flows import all_samples, wait_final
from tests.worker.checks.reasoning.builders import puzzle_memorizer
from worker.checks.reasoning.passes import GenerationContext
from worker.checks.registry import REGISTRY
from worker.engine.reasoning.kk_logic import solutions
from worker.engine.reasoning.kk_puzzles import MATH_LEVEL, PERTURBATIONS, article
from worker.engine.reasoning.kk_sets import prompt

pytestmark = pytest.mark.slow


def _solver(records: list[dict]):
    """A rule-based solver wrapped as a model: it reads the statements behind each quiz and
    solves them by brute force, so it answers every version of a puzzle on its own logic."""
    behind = {}
    for record in records:
        for version in [record, *(p for p in record["perturbations"].values() if p)]:
            behind[prompt(version["quiz"])] = version

    def generate(prompts, _max_new_tokens, _chat):
        answers = []
        for text in prompts:
            version = behind[text]
            statements = [_tuple(s) for s in version["statements"]]
            (solution,) = solutions(statements)
            roles = list(version["knight_knave"].values())
            lines = [
                f"({i + 1}) {name} is {article(roles[0] if truthful else roles[1])}"
                for i, (name, truthful) in enumerate(zip(version["names"], solution, strict=True))
            ]
            answers.append("CONCLUSION:\n" + "\n".join(lines))
        return answers

    return generate


def _tuple(value):
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def test_a_rule_based_solver_scores_no_memorization(tmp_path) -> None:
    from worker.engine.reasoning.kk_sets import puzzle_records

    records = list(puzzle_records([2, 3], n_test=10, n_train=10))
    path = tmp_path / "kk.jsonl"
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    kind: CheckKind = REGISTRY.get_check("kk_memorization")
    params = kind.parse_params({})
    rows = kind.compute(GenerationContext(_solver(records)), list(iter_records(path)), params)
    summary = kind.summarize(rows, params)
    assert summary["accuracy"] == 1.0
    for name in PERTURBATIONS:
        entry = summary["by_perturbation"][name]
        assert entry["accuracy"] == 1.0 and entry["consistency"] == 1.0 and entry["limem"] == 0.0
    assert summary["memorized_puzzles"] == []
    assert set(summary["by_people"]) == {"2", "3"}
    assert set(summary["by_people"]["3"]) == {"test", "train"}


def test_a_memorizing_model_through_the_service(make_stack, tmp_path) -> None:
    memorizer = puzzle_memorizer(tmp_path)
    stack = make_stack(
        model_roots=str(memorizer.model_dir.parent),
        data_roots=str(memorizer.dataset.parent),
        shard_size=8,
    )
    worker = stack.start_worker()
    body = {
        "model": {"uri": f"path:{memorizer.model_dir}"},
        "dataset": {"uri": f"path:{memorizer.dataset}"},
        "checks": [{"kind": "kk_memorization", "params": {"max_new_tokens": 40}}],
    }
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
    audit = wait_final(stack.client, stack.headers, response.json()["id"], timeout=300)
    assert audit["status"] == "succeeded", (audit, worker.tail())
    summary = audit["summary"]["kk_memorization"]
    assert summary["accuracy"] == 1.0  # every training puzzle solved as seen
    for name in MATH_LEVEL:
        entry = summary["by_perturbation"][name]
        # The answer changed and the model kept giving the memorized one: LiMem is high.
        assert entry["n"] >= 8 and entry["limem"] >= 0.5, (name, entry)
    assert len(summary["memorized_puzzles"]) >= 8
    rows = all_samples(stack.client, stack.headers, audit["id"], "kk_memorization")
    assert len(rows) == 16 and all(r["values"]["correct_orig"] for r in rows)
