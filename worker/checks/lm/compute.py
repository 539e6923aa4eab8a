"""How the LM kinds compute, per record and per audit: imported only by a worker."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from core.check_kinds import SubmitContext
from worker.checks.lm.guard import guard_membership
from worker.checks.lm.kinds import ExtractionParams, LossParams, MembershipParams
from worker.checks.lm.samples import LMPlan, LMSample
from worker.engine import extraction, loss
from worker.engine.distributions import shared_histogram
from worker.engine.extraction import document_values, suffix_detail, window_values
from worker.engine.membership import membership_report, sample_scores


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
            rows.append(
                _with_labels(
                    sample,
                    {"skipped": True, "reason": "too_short", "n_text_tokens": sample.n_text_tokens},
                )
            )
            continue
        windows = [
            (
                w.offset,
                window_values(
                    sample.passes[w.sequence], w.suffix_start, params.suffix_tokens, names
                ),
            )
            for w in sample.windows
        ]
        values = document_values(windows, names, params.p_grid)
        values["detail"] = _suffix_view(sample, values["best_window_offset"], params)
        rows.append(_with_labels(sample, values))
    return rows


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
    return extraction.summarize_extraction(values, names, params.p_grid, params.n_grid)


def plan_membership(params: MembershipParams, context: SubmitContext) -> LMPlan:
    wanted = params.wanted(context.has_reference_model)
    return LMPlan(
        text=True,
        moments="minkpp" in wanted,
        lower="lowercase" in wanted,
        reference="ref" in wanted,
        max_tokens=params.max_tokens,
    )


def compute_membership(
    samples: Sequence[LMSample], params: MembershipParams
) -> list[dict[str, Any]]:
    rows = []
    for s in samples:
        values = sample_scores(
            s.text,
            s.passes["text"],
            wanted=params.wanted(s.reference is not None),
            ks=params.k,
            lower=s.passes.get("lower"),
            reference=s.reference,
            same_ref_tokens=s.same_ref_tokens,
        )
        rows.append(_with_labels(s, values))
    return rows


def _score_keys(params: MembershipParams, values: Sequence[dict[str, Any]]) -> list[str]:
    present = {key for v in values for key in v}
    keys = [
        "loss",
        "zlib",
        "lowercase",
        *[f"mink_{k:g}" for k in params.k],
        *[f"minkpp_{k:g}" for k in params.k],
        "ref",
    ]
    return [key for key in keys if key in present]


def _finite(value: Any) -> bool:
    """A score that can be ranked: not missing, and not NaN or infinite (SQLite keeps them)."""
    return isinstance(value, int | float) and math.isfinite(value)


def summarize_membership(
    values: Sequence[dict[str, Any]], params: MembershipParams
) -> dict[str, Any]:
    scored = [v for v in values if not v.get("skipped")]
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_skipped": len(values) - len(scored),
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
        if labelled:
            entry.update(
                membership_report(members, others, bootstrap=params.bootstrap, seed=params.seed)
            )
            summary["warnings"] = sorted(set(summary["warnings"]) | set(entry["warnings"]))
        summary["scores"][key] = entry
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
    return summary
