"""Fine-tune vs base: what a model fine-tuned on private data learned beyond its public base.

The audit's `reference_model` is the base. Per record: Δℓ = ℓ_target − ℓ_base per token, its
mean and Min-K% over it (membership-style scores), Δℓ over prefix/suffix windows, and greedy
extraction of each window under the target and under the base; the headline is the records
extractable from the target but not from the base. The model work is `finetune_work.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator

from core.check_kinds import (
    CheckKind,
    CheckParams,
    Lazy,
    Metric,
    SubmitContext,
    TableColumn,
)
from worker.checks.lm.kinds import (
    MAX_TOKENS_FIELD,
    MAX_WINDOW_TOKENS,
    MAX_WINDOWS_FIELD,
    OFFSET_FIELD,
    STRIDE_FIELD,
    fit_windows_beside_scores,
)
from worker.checks.lm.labels import read_record
from worker.checks.lm.samples import LMPlan, LMSample


class FinetuneParams(CheckParams):
    k: list[float] = Field(
        default_factory=lambda: [0.2],
        min_length=1,
        max_length=16,
        description="Fractions of lowest Δℓ tokens for Min-K% over Δℓ",
    )
    prefix_tokens: int = Field(32, ge=1, le=MAX_WINDOW_TOKENS, description="Window prefix")
    suffix_tokens: int = Field(
        32, ge=1, le=MAX_WINDOW_TOKENS, description="Suffix greedy decoding must reproduce"
    )
    offset: int = OFFSET_FIELD
    stride: int | None = STRIDE_FIELD
    max_windows: int = MAX_WINDOWS_FIELD
    bootstrap: int = Field(1000, ge=0, le=20000, description="Bootstrap resamples for CIs")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    max_tokens: int | None = MAX_TOKENS_FIELD

    @field_validator("k")
    @classmethod
    def _k_fraction(cls, values: list[float]) -> list[float]:
        if any(not 0 < k <= 1 for k in values):
            raise ValueError("every k must lie in (0, 1]")
        return values


def _validate(params: FinetuneParams, context: SubmitContext) -> None:
    if not context.has_reference_model:
        raise ValueError(
            "finetune compares the audited model with its base: name the base as the "
            "reference_model"
        )
    if context.compare_tokenizers is not None:
        context.compare_tokenizers()  # ValueError: the base tokenizes differently


def plan_finetune(params: FinetuneParams, _context: SubmitContext) -> LMPlan:
    return LMPlan(load_reference=True, max_tokens=params.max_tokens)


def compute_finetune(samples: Sequence[LMSample], _params: FinetuneParams) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        values = {"id": sample.sample_id, **sample.extras["finetune"]}
        if sample.member is not None:
            values["member"] = sample.member
        if sample.duplicates is not None:
            values["duplicates"] = sample.duplicates
        rows.append(values)
    return rows


def score_keys(params: FinetuneParams) -> list[str]:
    return ["mean_delta", *[f"mink_delta_{k:g}" for k in params.k]]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _largest_gain_first(value: dict[str, Any]) -> tuple[bool, float]:
    """Sort key: the window that gained most first; a gain stored as null (core/db.py keeps
    NaN and infinities so) last, where -NaN's unordered key left it before."""
    gain = value["best_window"]["mean_delta"]
    return not _finite(gain), -gain if _finite(gain) else 0.0


def _tally(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    windowed = [v for v in rows if v.get("n_windows")]
    return {
        "n": len(rows),
        "n_windowed": len(windowed),
        "target_extracted": sum(1 for v in windowed if v["target_extracted"]),
        "base_extracted": sum(1 for v in windowed if v["base_extracted"]),
        "target_not_base": sum(1 for v in windowed if v["target_not_base"]),
    }


def summarize_finetune(values: Sequence[dict[str, Any]], params: FinetuneParams) -> dict[str, Any]:
    from worker.engine.distributions import shared_histogram
    from worker.engine.membership import membership_report

    scored = [v for v in values if _finite(v.get("mean_delta"))]
    members = [v for v in scored if v.get("member") is True]
    others = [v for v in scored if v.get("member") is False]
    labelled = bool(members or others)
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_skipped": len(values) - len(scored),
        "pass": next((v["pass"] for v in scored if v.get("pass")), None),
        "extraction": {"all": _tally(scored)},
        "scores": {},
        "warnings": [],
    }
    if labelled:
        summary["extraction"]["members"] = _tally(members)
        summary["extraction"]["nonmembers"] = _tally(others)
    # The records the fine-tune made extractable, likeliest first: the headline's evidence.
    found = sorted(
        (v for v in scored if v.get("target_not_base")),
        key=_largest_gain_first,
    )
    summary["target_not_base"] = [
        {"id": v.get("id"), "offset": v["best_window_offset"], **v["best_window"]}
        for v in found[:50]
    ]
    summary["mean_delta"] = _mean([v["mean_delta"] for v in scored])
    for key in score_keys(params):
        entry: dict[str, Any] = {"higher_is_more_memorized": True}
        if labelled:
            m = [v[key] for v in members if _finite(v.get(key))]
            o = [v[key] for v in others if _finite(v.get(key))]
            entry["histogram"] = shared_histogram({"members": m, "nonmembers": o})
            entry["mean"] = {"members": _mean(m), "nonmembers": _mean(o)}
            entry.update(membership_report(m, o, bootstrap=params.bootstrap, seed=params.seed))
            summary["warnings"] = sorted(set(summary["warnings"]) | set(entry["warnings"]))
        else:
            entry["histogram"] = shared_histogram({"all": [v.get(key) for v in scored]})
        summary["scores"][key] = entry
    if not labelled:
        summary["warnings"].append("no member labels: Δℓ is ranked, no ROC is reported")
    too_long = [v for v in values if v.get("window_skipped") == "window_exceeds_context"]
    if too_long:
        # Their Δℓ scores stand; only their windows were not extracted.
        summary["n_window_exceeds_context"] = len(too_long)
        summary["warnings"].append(
            f"{len(too_long):,} of {len(values):,} records' windows were skipped "
            "(window_exceeds_context): prefix_tokens+suffix_tokens exceeds the models' context"
        )
    elif not any(v.get("n_windows") for v in scored):
        summary["warnings"].append(
            "no record held offset+prefix_tokens+suffix_tokens tokens: nothing was extracted"
        )
    if not scored:
        summary["not_computed"] = "no record had a token to score"
    return summary


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _columns(params: FinetuneParams) -> list[TableColumn]:
    return [
        TableColumn("target_not_base", "target not base", "bool"),
        TableColumn("mean_delta", "mean Δℓ", "number"),
        TableColumn(f"mink_delta_{params.k[0]:g}", f"Min-{params.k[0]:g} Δℓ", "number"),
        TableColumn("max_window_delta", "max window Δℓ", "number"),
        TableColumn("base_extracted", "base extracts", "bool"),
    ]


FINETUNE = CheckKind(
    name="finetune",
    description="Fine-tune vs base (the reference model): per-token and per-window "
    "log-likelihood gains Δℓ, Min-K% over Δℓ, and the records greedy decoding extracts from "
    "the fine-tune but not from its base. LoRA adapters run unmerged on the base.",
    params_model=FinetuneParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(
        Metric(
            "mean_delta",
            True,
            "nats/token",
            "Mean over the text's tokens of ℓ_target − ℓ_base (log-likelihood gained by the "
            "fine-tune).",
        ),
        Metric(
            "mink_delta",
            True,
            "nats/token",
            "Mean of the k-fraction lowest per-token Δℓ: Min-K% over the fine-tune's gain.",
            "Shi et al., ICLR 2024 (Min-K%), applied to Δℓ",
        ),
        Metric(
            "target_not_base",
            True,
            "bool",
            "Some window's suffix is reproduced by greedy decoding from its prefix under the "
            "fine-tune and not under the base.",
            "Carlini et al. 2022",
        ),
        Metric("target_extracted", True, "bool", "Some window is greedily extracted (target)."),
        Metric("base_extracted", True, "bool", "Some window is greedily extracted (base)."),
        Metric("max_window_delta", True, "nats/token", "Largest suffix mean Δℓ over windows."),
    ),
    plan=Lazy("worker.checks.lm.finetune:plan_finetune"),
    compute=Lazy("worker.checks.lm.finetune:compute_finetune"),
    summarize=Lazy("worker.checks.lm.finetune:summarize_finetune"),
    rank_score=lambda values, p: values.get(f"mink_delta_{p.k[0]:g}"),
    rank_description="Min-K% over Δℓ at the first k",
    table_columns=lambda p: _columns(p),
    validate=_validate,
    fit=fit_windows_beside_scores,
    check_record=read_record,
)
