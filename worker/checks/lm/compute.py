"""How the LM kinds compute, per record and per audit: imported only by a worker."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from core.check_kinds import SubmitContext
from worker.checks.lm.corpus_link import REPEATED, bin_labels, count_bin
from worker.checks.lm.guard import guard_membership
from worker.checks.lm.held_out_scores import held_out_scores, holdout_summary
from worker.checks.lm.kinds import (
    HOLDOUT_SCORES,
    ExtractionParams,
    LossParams,
    MembershipParams,
    window_words,
)
from worker.checks.lm.samples import ExtractionWindow, LMPlan, LMSample, PacPlan
from worker.engine import extraction, loss
from worker.engine.attacks_pac import augmentations, pac_score, unscorable_reason
from worker.engine.distributions import shared_histogram
from worker.engine.extraction import document_values, suffix_detail, window_values
from worker.engine.membership import membership_report, roc_curve, sample_scores
from worker.engine.neighbourhood import neighbourhood_score


def _with_labels(sample: LMSample, values: dict[str, Any]) -> dict[str, Any]:
    if sample.member is not None:
        values["member"] = sample.member
    if sample.duplicates is not None:
        values["duplicates"] = sample.duplicates
    return values


def plan_loss(params: LossParams, _context: SubmitContext) -> LMPlan:
    return LMPlan(text=True, max_tokens=params.max_tokens)


def compute_loss(samples: Sequence[LMSample], _params: LossParams) -> list[dict[str, Any]]:
    return [
        _with_labels(s, loss.sample_loss(s.passes["text"], len(s.text.encode("utf-8"))))
        for s in samples
    ]


def summarize_loss(values: Sequence[dict[str, Any]], _params: LossParams) -> dict[str, Any]:
    return loss.summarize_loss(values)


def plan_extraction(params: ExtractionParams, _context: SubmitContext) -> LMPlan:
    return LMPlan(schemes=params.scheme_list(), extraction=params)


def compute_extraction(
    samples: Sequence[LMSample], params: ExtractionParams
) -> list[dict[str, Any]]:
    names = [s.name for s in params.scheme_list()]
    rows = []
    for sample in samples:
        if not sample.windows:
            # plan_record plans no window for a text too short, or for a window longer than
            # the model's context (which the text's length then tells apart).
            short = sample.n_text_tokens < window_words(params)[1]
            reason = "too_short" if short else "window_exceeds_context"
            rows.append(
                _with_labels(
                    sample,
                    {"skipped": True, "reason": reason, "n_text_tokens": sample.n_text_tokens},
                )
            )
            continue
        windows = [(w.offset, _window(sample, w, params, names)) for w in sample.windows]
        values = document_values(windows, names, params.p_grid)
        values["detail"] = _suffix_view(sample, values["best_window_offset"], params)
        rows.append(_with_labels(sample, values))
    return rows


def _window(
    sample: LMSample, window: ExtractionWindow, params: ExtractionParams, names: Sequence[str]
) -> dict[str, Any]:
    """The window's values; a fragile window re-checked in float32 takes the float32 ones."""
    found = window_values(
        sample.passes[window.sequence], window.suffix_start, params.suffix_tokens, names
    )
    recheck = sample.passes.get(f"recheck:{window.offset}")
    if recheck is None:
        return {**found, "flagged": found["fragile"]}
    precise = window_values(recheck, window.suffix_start, params.suffix_tokens, names)
    changed = precise["greedy_extracted"] != found["greedy_extracted"]
    return {**precise, "flagged": True, "rechecked": True, "recheck_changed": changed}


def _suffix_view(sample: LMSample, offset: int, params: ExtractionParams) -> dict[str, Any]:
    """The reported window token by token: what the dashboard shows when a record expands."""
    window = next(w for w in sample.windows if w.offset == offset)
    view: dict[str, Any] = {"offset": offset}
    view.update(
        suffix_detail(sample.passes[window.sequence], window.suffix_start, params.suffix_tokens)
    )
    if sample.render is not None:
        view["prefix"], view["tokens"] = sample.render(window.prefix_ids, window.suffix_ids)
    return view


def summarize_extraction(
    values: Sequence[dict[str, Any]], params: ExtractionParams
) -> dict[str, Any]:
    names = [s.name for s in params.scheme_list()]
    summary = extraction.summarize_extraction(values, names, params.p_grid, params.n_grid)
    summary.update(_too_short(values, params))
    scored = [v for v in values if not v.get("skipped") and v.get("corpus_count") is not None]
    if scored:
        summary.update(_by_corpus_count(scored, names, params))
    return summary


def _too_short(values: Sequence[dict[str, Any]], params: ExtractionParams) -> dict[str, str]:
    """What the records shorter than the windows in this model's tokens cost: `unfit` (the
    policy's warning) when any were skipped, `not_computed` (an `unknown` verdict's reason)
    when all were."""
    found = _too_long(values, params)
    skipped = [v for v in values if v.get("skipped") and v.get("reason") == "too_short"]
    if not skipped:
        return found
    if found and all(v.get("skipped") for v in values):
        found.setdefault("not_computed", "no record had a window to score")
    _, need = window_words(params)
    span = "offset+prefix+suffix" if params.offset else "prefix+suffix"
    longest = max(v.get("n_text_tokens", 0) for v in skipped)
    words = f"{len(skipped):,} of {len(values):,} records shorter than {span}"
    count = f"{need:,} tokens; the longest of them has {longest:,}"
    unfit = (
        f"{words} in this model's tokens ({count}): they were skipped; lower "
        f"{window_words(params)[0]}, or audit longer records"
    )
    found["unfit"] = f"{found['unfit']}; {unfit}" if "unfit" in found else unfit
    if len(skipped) == len(values):
        found["not_computed"] = f"{words} ({count})"
    return found


def _too_long(values: Sequence[dict[str, Any]], params: ExtractionParams) -> dict[str, Any]:
    """Records skipped because prefix+suffix does not fit the model's context: counted, and
    named in `unfit` (and `not_computed` when no record was scored)."""
    skipped = [v for v in values if v.get("reason") == "window_exceeds_context"]
    if not skipped:
        return {}
    span = params.prefix_tokens + params.suffix_tokens
    words = (
        f"{len(skipped):,} of {len(values):,} records skipped (window_exceeds_context): a "
        f"window of prefix_tokens+suffix_tokens = {span:,} tokens exceeds the model's context"
    )
    found: dict[str, Any] = {"n_window_exceeds_context": len(skipped), "unfit": words}
    if len(skipped) == len(values):
        found["not_computed"] = words
    return found


def _by_corpus_count(
    scored: Sequence[dict[str, Any]], names: Sequence[str], params: ExtractionParams
) -> dict[str, Any]:
    """Rates by measured corpus count (in bins) in place of the dataset's `duplicates` field,
    the contrast the findings state, and which PII types the extracted windows hold."""
    groups: dict[str, list[dict[str, Any]]] = {label: [] for label in bin_labels()}
    for value in scored:
        groups[count_bin(int(value["corpus_count"]))].append(value)
    present = [label for label, rows in groups.items() if rows]

    def tally(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        return {"n": len(rows), "extracted": sum(1 for v in rows if v["greedy_extracted"])}

    repeated = tally([v for v in scored if v["corpus_count"] >= REPEATED])
    once = tally([v for v in scored if v["corpus_count"] == 1])
    ratio = None
    if repeated["n"] and once["n"] and once["extracted"]:
        ratio = (repeated["extracted"] / repeated["n"]) / (once["extracted"] / once["n"])
    pii: dict[str, dict[str, int]] = {}
    for value in scored:
        for kind in value.get("pii") or ():
            entry = pii.setdefault(kind, {"n": 0, "extracted": 0})
            entry["n"] += 1
            entry["extracted"] += int(bool(value["greedy_extracted"]))
    return {
        "duplicates_source": "corpus_count",
        "duplicates_bins": present,
        "by_duplicates": {
            label: extraction.summarize_group(groups[label], names, params.p_grid, params.n_grid)
            for label in present
        },
        # Greedy extraction of windows seen >= REPEATED times against windows seen once; the
        # ratio only when both groups exist and the once-seen rate is above 0.
        "corpus_contrast": {
            "threshold": REPEATED,
            "repeated": repeated,
            "once": once,
            "ratio": ratio,
        },
        "pii_by_type": dict(sorted(pii.items())),
    }


def plan_membership(params: MembershipParams, context: SubmitContext) -> LMPlan:
    wanted = params.wanted(context.has_reference_model)
    return LMPlan(
        text=True,
        moments="minkpp" in wanted,
        lower="lowercase" in wanted,
        reference="ref" in wanted,
        max_tokens=params.max_tokens,
        pac=PacPlan(params.pac_augmentations, params.pac_alpha, params.seed)
        if "pac" in wanted
        else None,
    )


def compute_membership(
    samples: Sequence[LMSample], params: MembershipParams
) -> list[dict[str, Any]]:
    rows = []
    for s in samples:
        work = s.extras.get("membership") or {}
        if "held_out" in work:  # scored by no score: its position and id say which record
            row = {"id": s.sample_id, "held_out": work["held_out"], "index": work.get("index")}
            rows.append(_with_labels(s, row))
            continue
        values = sample_scores(
            s.text,
            s.passes["text"],
            wanted=params.wanted(s.reference is not None),
            ks=params.k,
            lower=s.passes.get("lower"),
            reference=s.reference,
            same_ref_tokens=s.same_ref_tokens,
        )
        if not values.get("skipped"):
            values.update(held_out_scores(s.passes["text"], work, params))
            values.update(_calibration_scores(s, params))
        rows.append(_with_labels(s, values))
    return rows


def _calibration_scores(sample: LMSample, params: MembershipParams) -> dict[str, Any]:
    """PAC from its augmentations' passes; the neighbourhood score from the neighbours' losses
    the membership work found (calibration_work.py)."""
    found: dict[str, Any] = {}
    text = sample.passes["text"]
    augmented = [sample.passes[k] for k in sample.passes if k.startswith("pac:")]
    if augmented:
        texts = augmentations(sample.text, params.seed, params.pac_alpha, len(augmented))
        reason = unscorable_reason(sample.text, texts)
        if reason is not None:
            found["pac"] = None
            found["pac_not_scored"] = reason
        else:
            found["pac"] = pac_score(
                text.logprobs, [a.logprobs for a in augmented], params.pac_local, params.pac_far
            )
    work = sample.extras.get("membership") or {}
    if "neighbour_losses" in work:
        record_loss = None if text.mean_logprob is None else -text.mean_logprob
        found["neighbourhood"] = neighbourhood_score(record_loss, work["neighbour_losses"])
        found["n_neighbours"] = len(work["neighbour_losses"])
        if not work["neighbour_losses"]:
            found["neighbourhood_not_scored"] = NO_NEIGHBOURS
    return found


NO_NEIGHBOURS = "no neighbours (the masked LM found no token of the text it could replace)"


def _not_scored(key: str, scored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How many records a score left out and why (`<key>_not_scored`, e.g. PAC on a text without
    two words), and, when that leaves a class empty, the score's `not_computed`: the true reason
    its ROC is missing, in place of "ROC needs both members and non-members"."""
    reasons = Counter(v[f"{key}_not_scored"] for v in scored if v.get(f"{key}_not_scored"))
    if not reasons:
        return {}
    words = "; ".join(
        f"{reason} for {count:,} of {len(scored):,} records"
        for reason, count in sorted(reasons.items())
    )
    return {"n_not_scored": sum(reasons.values()), "not_scored": words}


def _score_keys(params: MembershipParams, values: Sequence[dict[str, Any]]) -> list[str]:
    present = {key for v in values for key in v}
    keys = [
        "loss",
        "zlib",
        "lowercase",
        *[f"mink_{k:g}" for k in params.k],
        *[f"minkpp_{k:g}" for k in params.k],
        "ref",
        *HOLDOUT_SCORES,
        "pac",
        "neighbourhood",
    ]
    return [key for key in keys if key in present]


def _finite(value: Any) -> bool:
    """A score that can be ranked: not missing, and not NaN or infinite (SQLite keeps them)."""
    return isinstance(value, int | float) and math.isfinite(value)


def summarize_membership(
    values: Sequence[dict[str, Any]], params: MembershipParams
) -> dict[str, Any]:
    held_out = [v for v in values if v.get("held_out")]
    scored = [v for v in values if not v.get("skipped") and not v.get("held_out")]
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_skipped": len(values) - len(scored) - len(held_out),
        "scores": {},
        "warnings": [],
    }
    labelled = any(v.get("member") is not None for v in scored)
    for key in _score_keys(params, scored):
        members = [v[key] for v in scored if v.get("member") is True and _finite(v.get(key))]
        others = [v[key] for v in scored if v.get("member") is False and _finite(v.get(key))]
        entry: dict[str, Any] = {"higher_is_more_memorized": True}
        if labelled:
            entry["histogram"] = shared_histogram({"members": members, "nonmembers": others})
        else:
            entry["histogram"] = shared_histogram({"all": [v.get(key) for v in scored]})
        entry.update(_not_scored(key, scored))
        if labelled:
            entry.update(
                membership_report(members, others, bootstrap=params.bootstrap, seed=params.seed)
            )
            if "not_scored" in entry and not (members and others):
                entry["not_computed"] = entry["not_scored"]
                entry["warnings"] = [w for w in entry["warnings"] if not w.startswith("ROC needs")]
            elif "not_scored" in entry:
                entry["warnings"].append(f"{key}: {entry['not_scored']}")
            summary["warnings"] = sorted(set(summary["warnings"]) | set(entry["warnings"]))
        summary["scores"][key] = entry
    summary.update(holdout_summary(values, held_out, summary, params))
    if labelled:
        keys = [key for key in summary["scores"] if "auroc" in summary["scores"][key]]
        guard_membership(summary, scored, keys, bootstrap=params.bootstrap, seed=params.seed)
    bases = {v.get("ref_basis") for v in scored if v.get("ref_basis")}
    if bases:
        summary["ref_basis"] = sorted(bases)
    if params.non_iid:
        summary["warnings"].append(
            "members and non-members are marked non-IID: AUROC partly "
            "measures the distribution shift between them"
        )
    if not labelled:
        summary["warnings"].append("no member labels: samples are ranked, no ROC is reported")
        summary["not_computed"] = "no member labels: the records are ranked, no ROC is computed"
    counted = [v for v in scored if v.get("corpus_count") is not None]
    if counted:
        summary["by_corpus_count"] = _membership_by_count(counted, params, labelled)
    return summary


def _membership_by_count(
    counted: Sequence[dict[str, Any]], params: MembershipParams, labelled: bool
) -> dict[str, Any]:
    """Records by corpus-count bin; with labels, each score's AUROC of the bin's members
    against every non-member (non-members are rarely in the corpus, so they share no bin)."""
    nonmembers = [v for v in counted if v.get("member") is False]
    found: dict[str, Any] = {}
    for label in bin_labels():
        rows = [v for v in counted if count_bin(int(v["corpus_count"])) == label]
        if not rows:
            continue
        members = [v for v in rows if v.get("member") is True]
        entry: dict[str, Any] = {"n": len(rows), "n_members": len(members)}
        if labelled:
            entry["auroc"] = {
                key: _auroc(
                    [v[key] for v in members if _finite(v.get(key))],
                    [v[key] for v in nonmembers if _finite(v.get(key))],
                )
                for key in _score_keys(params, counted)
            }
        found[label] = entry
    return found


def _auroc(members: Sequence[float], nonmembers: Sequence[float]) -> float | None:
    return roc_curve(members, nonmembers).auc if members and nonmembers else None
