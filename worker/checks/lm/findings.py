"""The LM family's verdicts in words: one sentence per kind, every number read from the summary
finalize stored (proportions with Wilson intervals from their counts), with its risk level, the
control it serves and the next step. Pure: summary, params and row counts in, a Finding out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.lm.figures import headline_p, sampled_schemes
from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    Finding,
    count_of,
    counted,
    interval_text,
    percent_interval_text,
    proportion_risk,
)

# How a membership score's reading ranks when one score must speak for all of them.
READING_ORDER = ("stands", "underpowered", "no_membership_signal", "inconclusive")


def scheme_words(name: str) -> str:
    """`topk40_T1` -> `top-k 40`, `topp0.9_T0.7` -> `top-p 0.9, temperature 0.7`."""
    if name == "greedy":
        return "greedy decoding"
    words = []
    for part in name.split("_"):
        if part.startswith("topk"):
            words.append(f"top-k {part[4:]}")
        elif part.startswith("topp"):
            words.append(f"top-p {part[4:]}")
        elif part.startswith("T") and part[1:] != "1":
            words.append(f"temperature {part[1:]}")
    return ", ".join(words) or "plain sampling at temperature 1"


def _window_words(params: Any) -> str:
    prefix, suffix = getattr(params, "prefix_tokens", None), getattr(params, "suffix_tokens", None)
    if prefix is None or suffix is None:
        return ""
    return f" (the {suffix:,}-token suffix after a {prefix:,}-token prefix)"


def extraction_finding(
    summary: Mapping[str, Any], params: Any, _counts: Mapping[str, int]
) -> Finding:
    """How many training records come back verbatim, at the largest query budget and headline
    p the summary carries for its first sampled scheme (greedy alone where none was sampled)."""
    labelled = bool((summary.get("members") or {}).get("n"))
    group, noun = ("members", "training records") if labelled else ("all", "records")
    stats = summary.get(group) or {}
    n = stats.get("n") or 0
    schemes, p = sampled_schemes(summary), headline_p(summary)
    window = _window_words(params)
    if not n:
        return Finding(
            "extraction",
            "Extraction could not be assessed: no record was long enough for the prefix and "
            f"suffix{window}.",
            "unknown",
            CONTROL_MEMORISATION,
            "Audit longer records, or shorten prefix_tokens and suffix_tokens.",
        )
    greedy = count_of(stats.get("greedy_rate"), n)
    if schemes and p and stats.get("rates"):
        scheme, budget = schemes[0], summary["n_grid"][-1]
        hits = count_of(stats["rates"][scheme][p][-1], n)
        text = (
            f"{counted(hits, n, noun)} can be extracted verbatim{window} within {budget:,} "
            f"queries at {scheme_words(scheme)} with probability ≥ {float(p):.0%}; "
            f"greedy decoding reproduces {greedy:,}."
        )
    else:
        hits = greedy
        text = f"{counted(hits, n, noun)} are reproduced verbatim by greedy decoding{window}."
    others = summary.get("nonmembers") or {}
    if labelled and others.get("n"):
        shown = (
            count_of(others["rates"][schemes[0]][p][-1], others["n"])
            if schemes and p and others.get("rates")
            else count_of(others.get("greedy_rate"), others["n"])
        )
        text += f" Non-members, for comparison: {counted(shown, others['n'], 'records')}."
    contrast = corpus_contrast_words(summary.get("corpus_contrast"))
    if contrast:
        text += f" {contrast}"
    risk = proportion_risk(hits, n)
    next_step = (
        "Open the most extractable records below; deduplicate or remove them from the training "
        "data, or filter outputs, before release."
        if risk in ("high", "medium")
        else "Re-run on each new version with records drawn from the training data."
    )
    return Finding("extraction", text, risk, CONTROL_MEMORISATION, next_step)


def corpus_contrast_words(contrast: Mapping[str, Any] | None) -> str:
    """`Windows repeated ≥ 10 times in the corpus are extracted 40× more often than windows
    seen once (8 of 10 vs 2 of 100).` A ratio only when both groups have records and the
    once-seen rate is above 0; the counts alone otherwise."""
    if not contrast:
        return ""
    threshold = contrast["threshold"]
    repeated, once = contrast["repeated"], contrast["once"]
    counts = (
        f"{repeated['extracted']:,} of {repeated['n']:,} vs {once['extracted']:,} of {once['n']:,}"
    )
    if not repeated["n"]:
        return f"No window is repeated ≥ {threshold} times in the linked corpus."
    if not once["n"]:
        return (
            f"Windows repeated ≥ {threshold} times in the linked corpus: "
            f"{repeated['extracted']:,} of {repeated['n']:,} extracted greedily; none is seen "
            "only once to compare with."
        )
    if contrast.get("ratio") is None:
        return (
            f"Windows repeated ≥ {threshold} times in the linked corpus against windows seen "
            f"once, extracted greedily: {counts}."
        )
    ratio = contrast["ratio"]
    how = f"{ratio:.3g}× more often than" if ratio >= 1 else f"{ratio:.3g}× as often as"
    return (
        f"Windows repeated ≥ {threshold} times in the linked corpus are extracted {how} "
        f"windows seen once, greedily ({counts})."
    )


def loss_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """Loss describes the model on these records; on its own it grades no risk."""
    mean = summary.get("mean_sample_loss")
    if mean is None:
        return Finding(
            "loss",
            "Loss could not be computed: no token was scored.",
            "unknown",
            CONTROL_MEMORISATION,
            "Check that the records hold text the tokenizer can read.",
        )
    text = (
        f"Mean loss {interval_text(mean, summary.get('mean_sample_loss_ci95'))} nats/token over "
        f"{summary.get('n_samples', 0):,} records"
    )
    if summary.get("perplexity"):
        text += f" (pooled perplexity {summary['perplexity']:.2f})"
    by_member = summary.get("by_member") or {}
    members, others = by_member.get("members") or {}, by_member.get("nonmembers") or {}
    if members.get("mean_nll") is not None and others.get("mean_nll") is not None:
        gap = others["mean_nll"] - members["mean_nll"]
        text += (
            f"; members {members['mean_nll']:.2f} against non-members "
            f"{others['mean_nll']:.2f} nats/token (gap {gap:+.2f})"
        )
    return Finding(
        "loss",
        text + ". Loss alone grades no risk.",
        "unknown",
        CONTROL_MEMORISATION,
        "Read it with the membership check, which tests the members' advantage with CIs.",
    )


def _scored(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        key: entry
        for key, entry in (summary.get("scores") or {}).items()
        if (entry.get("auroc") or {}).get("value") is not None
    }


def _reading(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return entry.get("reading") or {}


def _lead(scored: Mapping[str, Mapping[str, Any]]) -> str:
    """The score that speaks for the check: the best reading, then the highest AUROC."""

    def rank(key: str) -> tuple[int, float]:
        reading = _reading(scored[key]).get("reading")
        order = READING_ORDER.index(reading) if reading in READING_ORDER else len(READING_ORDER)
        return (-order, scored[key]["auroc"]["value"])

    return max(scored, key=rank)


def _blind_words(blind: Mapping[str, Any]) -> str:
    """`blind AUROC 0.97, 95% CI 0.95–0.99`: it sits inside parentheses of its own."""
    auroc = blind.get("auroc") or {}
    value, ci = auroc.get("value"), auroc.get("ci95") or [None, None]
    if value is None:
        return "blind AUROC n/a"
    if None in ci:
        return f"blind AUROC {value:.2f}"
    return f"blind AUROC {value:.2f}, 95% CI {ci[0]:.2f}–{ci[1]:.2f}"


def _tpr_words(entry: Mapping[str, Any]) -> str:
    tpr = entry.get("tpr_at_0.01_fpr") or {}
    if tpr.get("value") is None:
        reason = str(tpr.get("reason", "not computed")).replace("_", " ")
        return f"TPR at 1% FPR not computed ({reason})"
    return f"TPR {percent_interval_text(tpr['value'], tpr.get('ci95'))} at 1% FPR"


def dataset_inference_words(summary: Mapping[str, Any]) -> str:
    """The aggregate test's p-value and its power as records needed (never as a p-value)."""
    found = summary.get("dataset_inference")
    if not found:
        return ""
    if found.get("skipped"):
        return f" Dataset inference was skipped: {found['skipped']}."
    if found.get("p_value") is None:
        return ""
    reading = found.get("reading") or {}
    if reading.get("reading") == "inconclusive":
        # Its p-value would say the two sets differ, which the split alone explains.
        return f" Dataset inference is inconclusive too: {reading.get('why', 'the split')}."
    text = (
        f" Dataset inference (Maini et al. 2024): p = {found['p_value']:.2g} over "
        f"{found.get('n_suspect', 0):,} suspect and {found.get('n_validation', 0):,} "
        "validation records"
    )
    if reading.get("reading") == "underpowered":
        text += " (not significant: the test can find a set was trained on, never clear one)"
    needed = (found.get("power") or {}).get("records_needed_for_p_0.01", "absent")
    if needed is None:
        text += "; records needed for p < 0.01: not reached at the sizes tried"
    elif needed != "absent":
        text += f"; records needed for p < 0.01: about {needed:,}"
    return text + "."


def _inference_stands(summary: Mapping[str, Any]) -> bool:
    """Dataset inference found the member set trained on, on a split it may be read from."""
    found = summary.get("dataset_inference") or {}
    return (found.get("reading") or {}).get("reading") == "stands"


def _no_labels() -> Finding:
    return Finding(
        "membership",
        "Membership cannot be assessed: the records carry no member labels, so no ROC exists.",
        "unknown",
        CONTROL_MEMORISATION,
        "Submit labelled members and non-members drawn from the same source and period.",
    )


def membership_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """The blind baseline's split reading first, then the leading score's reading."""
    scored = _scored(summary)
    if not scored:
        return _no_labels()
    inference = dataset_inference_words(summary)
    blind = summary.get("blind_baseline") or {}
    if blind.get("reading") == "confounded":
        return Finding(
            "membership",
            "Membership cannot be assessed: the member and non-member texts differ without the "
            f"model ({_blind_words(blind)}), so every membership score on this split is "
            f"inconclusive.{inference}",
            "unknown",
            CONTROL_MEMORISATION,
            "Rebuild the non-members from the same source and period as the members (e.g. a "
            "random held-out split of the training data) and re-run.",
        )
    key = _lead(scored)
    entry = scored[key]
    auroc = entry["auroc"]
    score = f"the best score ({key}) reaches AUROC {interval_text(auroc['value'], auroc['ci95'])}"
    if blind.get("reading") == "no_confound_detected":
        split = f"; no confound detected by the blind baseline ({_blind_words(blind)})"
    elif blind:
        split = f"; the blind baseline did not assess the split ({blind.get('reason', '')})"
    else:
        split = ""
    reading = _reading(entry)
    name = reading.get("reading")
    if name == "stands":
        tpr = entry.get("tpr_at_0.01_fpr") or {}
        low = (tpr.get("ci95") or [None])[0]
        return Finding(
            "membership",
            f"Membership signal stands: {score}, {_tpr_words(entry)}{split}.{inference}",
            "high" if low is not None and low > 0.01 else "medium",
            CONTROL_MEMORISATION,
            "Treat the training records as recoverable by membership inference: deduplicate, "
            "train with differential privacy or regularise, and re-audit.",
        )
    if name == "no_membership_signal":
        found_as_set = _inference_stands(summary)
        return Finding(
            "membership",
            f"No per-record membership signal above 0.55: {score}, below 0.55 at its upper "
            f"bound{split}.{inference}",
            "medium" if found_as_set else "low",
            CONTROL_MEMORISATION,
            "The records are not told apart one by one, but dataset inference finds the member "
            "set as a whole was trained on: treat it as used in training."
            if found_as_set
            else "Re-run on each new version; keep the members and non-members from one source.",
        )
    if name == "underpowered":
        needed = reading.get("records_needed")
        more = (
            f"about {needed:,} records would be needed to settle it"
            if needed
            else "the records needed cannot be estimated (the AUROC sits on the line)"
        )
        return Finding(
            "membership",
            f"Membership is underpowered: {score}, an interval that straddles 0.55; "
            f"{more}{split}.{inference}",
            "unknown",
            CONTROL_MEMORISATION,
            f"Audit more labelled records ({needed:,} in all)."
            if needed
            else "Audit more labelled records.",
        )
    if name == "inconclusive":
        return Finding(
            "membership",
            f"Membership is inconclusive ({reading.get('why', 'no reason given')}): "
            f"{score}{split}.{inference}",
            "unknown",
            CONTROL_MEMORISATION,
            "Fix what made it inconclusive and re-run.",
        )
    return Finding(
        "membership",
        f"Membership is not read against a blind baseline: {score}, {_tpr_words(entry)}"
        f"{split}; a split confound is not ruled out.{inference}",
        "unknown",
        CONTROL_MEMORISATION,
        "Re-run the audit so the blind baseline reads the split before acting on the AUROC.",
    )
