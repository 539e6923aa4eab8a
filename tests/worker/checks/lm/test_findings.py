"""The LM family's sentences, from summaries the real summarizers make: the numbers, the
wording and the risk each reading carries."""

from __future__ import annotations

import math
import random

import pytest

from tests.word_texts import word_texts
from worker.checks.lm.compute import summarize_membership
from worker.checks.lm.findings import (
    extraction_finding,
    loss_finding,
    membership_finding,
    scheme_words,
)
from worker.checks.lm.kinds import ExtractionParams, LossParams, MembershipParams
from worker.engine.extraction import n_min, summarize_extraction
from worker.engine.loss import summarize_loss
from worker.engine.membership import membership_report


def _extraction_values(extracted: bool, member: bool) -> dict:
    """A record the top-k sampler emits for sure (p_z = 1), or one it almost never does."""
    log10_pz = 0.0 if extracted else -12.0
    return {
        "greedy_extracted": extracted,
        "log10_pz": {"greedy": 0.0 if extracted else None, "topk40_T1": log10_pz},
        "n_min": {
            "greedy": {p: 1 if extracted else None for p in ("0.5", "0.9")},
            "topk40_T1": {f"{p:g}": n_min(10**log10_pz, p) for p in (0.5, 0.9)},
        },
        "member": member,
    }


def test_extraction_says_how_many_training_records_come_back_with_a_wilson_interval() -> None:
    values = [_extraction_values(i < 12, True) for i in range(400)]
    values += [_extraction_values(i < 1, False) for i in range(200)]
    params = ExtractionParams(
        schemes=[{"temperature": 0}, {"top_k": 40}], p_grid=[0.5, 0.9], n_grid=[1, 10, 1000]
    )
    summary = summarize_extraction(values, ["greedy", "topk40_T1"], [0.5, 0.9], [1, 10, 1000])
    found = extraction_finding(summary, params, {"all": 600, "true": 400, "false": 200})
    # Wilson by hand for 12 of 400, z = 1.96: centre 0.034471, half-width 0.017228.
    phat, n, z = 12 / 400, 400, 1.959963984540054
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (round(100 * (centre - half), 1), round(100 * (centre + half), 1)) == (1.7, 5.2)
    assert found.text.startswith(
        "12 of 400 training records (3.0%, 95% CI 1.7–5.2%) can be extracted verbatim "
        "(the 50-token suffix after a 50-token prefix) within 1,000 queries at top-k 40 "
        "with probability ≥ 90%; greedy decoding reproduces 12."
    ), found.text
    assert "Non-members, for comparison: 1 of 200 records (0.5%, 95% CI 0.1–2.8%)" in found.text
    assert found.risk == "high"  # the interval's lower bound, 1.7%, is above 1%
    assert "NIST AI RMF MEASURE 2.7 and 2.10" in found.control and found.next_step


def test_no_extraction_among_enough_records_is_no_risk_and_among_few_is_low() -> None:
    params = ExtractionParams()
    many = summarize_extraction(
        [_extraction_values(False, True) for _ in range(500)], ["greedy"], [0.9], [1]
    )
    found = extraction_finding(many, params, {})
    assert found.text.startswith("0 of 500 training records (0.0%, 95% CI 0.0–0.8%) are reproduced")
    assert found.risk == "none"
    few = summarize_extraction(
        [_extraction_values(False, None) for _ in range(30)], ["greedy"], [0.9], [1]
    )
    assert extraction_finding(few, params, {}).risk == "low"
    assert "0 of 30 records" in extraction_finding(few, params, {}).text
    assert extraction_finding({"all": {"n": 0}}, params, {}).risk == "unknown"


def test_scheme_names_read_as_words() -> None:
    assert scheme_words("topk40_T1") == "top-k 40"
    assert scheme_words("topp0.9_T0.7") == "top-p 0.9, temperature 0.7"
    assert scheme_words("topk50_topp0.95_T1") == "top-k 50, top-p 0.95"


def test_loss_reports_loss_in_nats_and_grades_no_risk() -> None:
    values = [
        {
            "loss": 1.0 + i / 100,
            "n_scored": 10,
            "sum_logprob": -10 * (1.0 + i / 100),
            "member": i % 2 == 0,
        }
        for i in range(50)
    ]
    summary = summarize_loss(values)
    found = loss_finding(summary, LossParams(), {})
    assert found.text.startswith(f"Mean loss {summary['mean_sample_loss']:.2f} (95% CI ")
    assert "nats/token over 50 records" in found.text and "gap +0.01" in found.text
    assert found.risk == "unknown"


def _membership_summary(
    members: list[float], others: list[float], texts: list[str], bootstrap: int = 200
) -> dict:
    """The summary as finalize makes it: the real summarizer, given each record's text, adds
    the blind baseline, the readings, the margins and dataset inference."""
    labels = [True] * len(members) + [False] * len(others)
    values = [
        {"loss": s, "member": m, "text": t}
        for s, m, t in zip(members + others, labels, texts, strict=True)
    ]
    return summarize_membership(values, MembershipParams(scores=["loss"], bootstrap=bootstrap))


def _spread(n: int, shift: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(shift, 1.0) for _ in range(n)]


def test_a_confounded_split_cannot_be_assessed() -> None:
    texts = word_texts(150, 1, marker=" — as noted") + word_texts(150, 2)
    summary = _membership_summary(_spread(150, 1.0, 1), _spread(150, 0.0, 2), texts)
    blind = summary["blind_baseline"]["auroc"]
    found = membership_finding(summary, MembershipParams(), {})
    assert found.text.startswith(
        "Membership cannot be assessed: the member and non-member texts differ without the "
        f"model (blind AUROC {blind['value']:.2f}, 95% CI {blind['ci95'][0]:.2f}–"
        f"{blind['ci95'][1]:.2f})"
    ), found.text
    assert found.risk == "unknown" and "same source and period" in found.next_step


def test_a_strong_signal_on_a_clean_split_stands_with_auroc_and_tpr() -> None:
    summary = _membership_summary(_spread(150, 2.5, 3), _spread(150, 0.0, 4), word_texts(300, 5))
    entry = summary["scores"]["loss"]
    assert entry["reading"]["reading"] == "stands"
    found = membership_finding(summary, MembershipParams(), {})
    auroc, tpr = entry["auroc"], entry["tpr_at_0.01_fpr"]
    assert found.text.startswith(
        f"Membership signal stands: the best score (loss) reaches AUROC {auroc['value']:.2f} "
        f"(95% CI {auroc['ci95'][0]:.2f}–{auroc['ci95'][1]:.2f}), TPR "
        f"{100 * tpr['value']:.1f}% (95% CI {100 * tpr['ci95'][0]:.1f}–"
        f"{100 * tpr['ci95'][1]:.1f}%) at 1% FPR; no confound detected by the blind baseline "
        "(blind AUROC "
    ), found.text
    assert "not confounded" not in found.text
    assert found.risk == ("high" if tpr["ci95"][0] > 0.01 else "medium")


def test_an_underpowered_score_says_how_many_records_it_needs() -> None:
    summary = _membership_summary(_spread(20, 0.35, 6), _spread(20, 0.0, 7), word_texts(40, 8), 400)
    reading = summary["scores"]["loss"]["reading"]
    assert reading["reading"] == "underpowered", summary["scores"]["loss"]["auroc"]
    found = membership_finding(summary, MembershipParams(), {})
    assert found.text.startswith("Membership is underpowered: the best score (loss) reaches AUROC")
    assert f"about {reading['records_needed']:,} records would be needed" in found.text
    assert found.risk == "unknown" and f"{reading['records_needed']:,}" in found.next_step


def test_no_signal_is_low_risk_and_never_says_not_confounded() -> None:
    members = [i / 500 for i in range(500)]
    summary = _membership_summary(members, list(members), word_texts(1000, 9))
    assert summary["scores"]["loss"]["reading"]["reading"] == "no_membership_signal"
    found = membership_finding(summary, MembershipParams(), {})
    assert found.text.startswith(
        "No per-record membership signal above 0.55: the best score (loss) reaches AUROC 0.50"
    )
    assert "no confound detected by the blind baseline" in found.text
    assert found.risk == "low"


def test_dataset_inference_gives_its_p_value_and_power_as_records_needed() -> None:
    summary = _membership_summary(_spread(150, 2.5, 3), _spread(150, 0.0, 4), word_texts(300, 5))
    summary["dataset_inference"] = {
        "p_value": 0.0032,
        "t": 2.9,
        "df": 99,
        "n_suspect": 150,
        "n_validation": 150,
        "features": ["loss"],
        "split_seed": 0,
        "power": {
            "sizes": [50, 100],
            "median_p": [0.2, 0.01],
            "repeats": 20,
            "records_needed_for_p_0.01": 120,
        },
    }
    text = membership_finding(summary, MembershipParams(), {}).text
    assert (
        "Dataset inference (Maini et al. 2024): p = 0.0032 over 150 suspect and 150 validation "
        "records; records needed for p < 0.01: about 120." in text
    )
    summary["dataset_inference"]["reading"] = {
        "reading": "inconclusive",
        "why": "the split is confounded",
    }
    text = membership_finding(summary, MembershipParams(), {}).text
    assert "p = " not in text and "Dataset inference is inconclusive too: the split is" in text
    summary["dataset_inference"] = {"skipped": "fewer than 40 members"}
    assert (
        "Dataset inference was skipped: fewer than 40 members."
        in membership_finding(summary, MembershipParams(), {}).text
    )


def test_without_labels_or_a_baseline_membership_says_what_it_cannot_say() -> None:
    unlabelled = summarize_membership([{"loss": -1.0}, {"loss": -2.0}], MembershipParams())
    found = membership_finding(unlabelled, MembershipParams(), {})
    assert "no member labels" in found.text and found.risk == "unknown"
    entry = membership_report([1.0, 2.0, 3.0], [0.0, 0.5, 1.5], bootstrap=20)
    old = membership_finding({"scores": {"loss": entry}}, MembershipParams(), {})
    assert old.text.startswith("Membership is not read against a blind baseline")
    assert "a split confound is not ruled out" in old.text and old.risk == "unknown"


@pytest.mark.parametrize("build", [extraction_finding, loss_finding, membership_finding])
def test_every_lm_sentence_survives_a_bare_summary(build) -> None:
    found = build({"n_samples": 0}, None, {})
    assert found.text and found.risk == "unknown"
