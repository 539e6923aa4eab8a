"""Headline numbers and the verdicts a comparison draws from their directions."""

from __future__ import annotations

from app.dashboard.headline import deltas, headlines


def _summary(greedy: float, loss: float, with_membership: bool = True) -> dict:
    summary = {
        "extraction": {
            "n_grid": [1, 10],
            "p_grid": [0.9],
            "schemes": ["greedy"],
            "all": {
                "n": 100,
                "greedy_rate": greedy,
                "greedy_rate_ci95": [greedy - 0.1, greedy + 0.1],
            },
        },
        "loss": {
            "mean_sample_loss": loss,
            "mean_sample_loss_ci95": [loss - 1, loss + 1],
            "perplexity": 9.0,
        },
    }
    if with_membership:
        summary["membership"] = {
            "scores": {
                "loss": {
                    "auroc": {"value": 0.7, "ci95": [0.6, 0.8]},
                    "n_members": 50,
                    "n_nonmembers": 50,
                },
                "zlib": {
                    "auroc": {"value": 0.8, "ci95": [0.7, 0.9]},
                    "n_members": 50,
                    "n_nonmembers": 50,
                },
            }
        }
    return summary


def test_headlines_pick_the_best_score_and_carry_intervals() -> None:
    found = {h.key: h for h in headlines(_summary(0.25, 2.0))}
    greedy = found["extraction.all.greedy_rate"]
    assert greedy.formatted() == "25.0%" and greedy.ci_text == "95% CI 15.0% – 35.0%"
    best = found["membership.best_auroc"]
    assert best.label == "Best membership AUROC (zlib)" and best.value == 0.8
    assert found["membership.best_tpr_at_1pct_fpr"].formatted() == "n/a"
    assert found["loss.mean_sample_loss"].note == "perplexity 9.00"


def test_more_extraction_is_worse_and_higher_loss_is_better() -> None:
    result = {d.headline.key: d for d in deltas(_summary(0.25, 2.0), _summary(0.40, 3.0))}
    extraction = result["extraction.all.greedy_rate"]
    assert extraction.verdict == "worse" and extraction.change_text == "+15.0 pts"
    loss = result["loss.mean_sample_loss"]
    assert loss.verdict == "better" and loss.change_text == "+1.000"
    same = deltas(_summary(0.25, 2.0), _summary(0.25, 2.0))
    assert {d.verdict for d in same} == {"same"}


def test_metrics_only_one_side_has_are_kept_one_sided() -> None:
    result = {d.headline.key: d for d in deltas(_summary(0.2, 2.0, False), _summary(0.2, 2.0))}
    auroc = result["membership.best_auroc"]
    assert auroc.first is None and auroc.second.value == 0.8
    assert auroc.change is None and auroc.verdict == "same" and auroc.change_text == "n/a"
