"""The unlearning sentence: the forget set's accuracy against the retrained model's."""

from __future__ import annotations

from worker.checks.unlearning.compute import summarize
from worker.checks.unlearning.kinds import UnlearningParams
from worker.checks.unlearning.report import REPORT


def _rows(unlearned_correct: int, retrained_correct: int) -> list[dict]:
    rows = []
    for i, split in enumerate(["forget"] * 40 + ["retain"] * 20 + ["test"] * 20):
        correct = {
            "unlearned": i < unlearned_correct if split == "forget" else True,
            "retrained": i < retrained_correct if split == "forget" else True,
        }
        rows.append(
            {
                "id": str(i),
                "split": split,
                "correct": correct,
                "confidence": {"unlearned": 0.5 + i / 200, "retrained": 0.4 + i / 300},
                "mia_features": {"unlearned": [0.5, 0.3, i / 100], "retrained": [0.4, 0.2, 0.1]},
                "stratify_score": -i / 20,
                "stratify_basis": "unlearned",
            }
        )
    return rows


def test_a_forget_set_still_known_is_high_risk() -> None:
    summary = summarize(_rows(36, 8), UnlearningParams(rum_n_per_level=3))
    found = REPORT.findings["unlearning"](summary, UnlearningParams(), {"all": 80})
    assert found.text.startswith(
        "The unlearned model still classifies 36 of 40 forget-set records "
        "(90.0%, 95% CI 76.9–96.0%) correctly, against 20.0% for the model retrained without "
        "them (Tug-of-War "
    ), found.text
    assert found.risk == "high" and "GDPR Art. 17" in found.control


def test_a_forget_set_at_the_retrained_level_is_low_risk() -> None:
    summary = summarize(_rows(9, 8), UnlearningParams(rum_n_per_level=3))
    found = REPORT.findings["unlearning"](summary, UnlearningParams(), {})
    assert "9 of 40 forget-set records" in found.text and found.risk == "low"
