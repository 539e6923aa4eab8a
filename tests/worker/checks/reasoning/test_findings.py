"""The reasoning family's sentences from summaries made by the real summarizers."""

from __future__ import annotations

from worker.checks.reasoning.report import REPORT
from worker.checks.registry import REGISTRY


def _summary(kind_name: str, raw_params: dict, rows: list[dict]) -> tuple[dict, object]:
    kind = REGISTRY.get_check(kind_name)
    params = kind.parse_params(raw_params)
    return kind.summarize(rows, params), params


def test_kk_counts_puzzles_solved_as_seen_but_not_once_perturbed() -> None:
    rows = [
        {
            "id": f"p{i}",
            "n_people": 3,
            "split": "train",
            "correct_orig": i < 30,
            "wrong_reason": None if i < 30 else "wrong_identity",
            # Of the 30 solved originals, 12 fail once the leaf statement changes.
            "correct_pert": {"perturbed_leaf": not (i < 12), "flip_role": True},
            "memorized_any": i < 12,
        }
        for i in range(40)
    ]
    summary, params = _summary(
        "kk_memorization", {"perturbations": ["perturbed_leaf", "flip_role"]}, rows
    )
    found = REPORT.findings["kk_memorization"](summary, params, {"all": 40})
    assert found.text.startswith(
        "12 of 40 puzzles (30.0%, 95% CI 18.1–45.4%) are solved as seen but not once perturbed "
        "(perturbed leaf; LiMem 0.3); accuracy on the originals 0.75."
    ), found.text
    assert found.risk == "high"  # the lower bound, 18.1%, is above a tenth
    assert "MEASURE 2.5" in found.control


def test_retention_counts_what_the_first_version_knew_and_the_audited_one_lost() -> None:
    rows = [
        {
            "id": f"f{i}",
            "comparison": "exact",
            "correct": {"v0": i < 20, "v1": i < 15},
            "transition": "forgotten" if 15 <= i < 20 else "retained",
            "lost_at": "v1" if 15 <= i < 20 else None,
        }
        for i in range(25)
    ]
    summary, params = _summary("retention", {"versions": ["path:/m/v1"]}, rows)
    found = REPORT.findings["retention"](summary, params, {})
    assert found.text.startswith(
        "The audited model (v1) has forgotten 5 of 20 factoids (25.0%, 95% CI 11.2–46.9%) that "
        "v0 answered; accuracy 0.8 → 0.6."
    ), found.text
    assert found.risk == "high"


def test_wilt_reports_rules_found_and_grades_no_memorisation_risk() -> None:
    rows = [
        {
            "rule_id": str(i),
            "family": "linear",
            "correct": i < 3,
            "valid": True,
            "outcome": "guessed",
            "tests_used": 10 + i,
            "grid_agreement": 1.0 if i < 3 else 0.4,
            "points": 1 if i < 3 else 0,
            "repeated_tests": 0,
        }
        for i in range(10)
    ]
    summary, params = _summary("wilt", {}, rows)
    found = REPORT.findings["wilt"](summary, params, {})
    assert found.text.startswith("3 of 10 hidden rules (30.0%, 95% CI 10.8–60.3%) were found")
    assert "14.5 tests on average" in found.text and found.risk == "unknown"
