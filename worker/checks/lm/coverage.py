"""The `coverage` kind: extraction across a whole work (Cooper et al. 2025, memorized pieces
of books in open-weight LMs). A long document is one record; windows of prefix n and suffix m
slide with a stride across all of it, each scored alone with its exact p_z under each scheme
(`worker/engine/coverage_scan.py`), and the record reports which share of the work is
extractable at p_z >= threshold, the longest extractable run, the top passages and the
per-window log10 p_z series.

`mode: "screen"` reads the work in long chunks first, each suffix conditioned on all the text
before it (not the exact definition, and labelled so), and re-scores exactly only the windows
that screen within `screen_margin` of the threshold.

Declared here (params, metrics, columns) with torch-free imports; the model work and the
reductions load in the worker only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from core.check_kinds import (
    CheckKind,
    CheckParams,
    DataFit,
    FitContext,
    Lazy,
    Metric,
    SubmitContext,
    TableColumn,
)
from core.dataset_profile import max_tokens
from worker.checks.lm.kinds import MAX_WINDOW_TOKENS, OFFSET_FIELD, SchemeParams, fit_windows
from worker.checks.lm.labels import read_record
from worker.checks.lm.samples import LMPlan, LMSample
from worker.engine.schemes import Scheme

if TYPE_CHECKING:
    from worker.checks.lm.passes import KindWork

EXACT = "suffix conditioned on its own prefix only (exact p_z)"
SCREENED = (
    "screen: suffix conditioned on all the text before it in its chunk (not the exact "
    "definition; candidates are re-scored exactly)"
)
GREEDY_KEY = "greedy"
MAX_STRIPS = 50  # documents whose coverage strip the summary keeps (largest share first)
MAX_SPANS = 2000  # extractable spans kept per document and scheme for its strip
SERIES_DIGITS = 6
# A record's stored series, per scheme: every window up to this many (a 100,000-token work at
# stride 1 keeps each window's value, a few MB of JSON), bucket maxima past it, since a
# 10,000,000-token work at stride 1 would otherwise put ten million values in one row.
MAX_SERIES_POINTS = 200_000
# Token positions the scan may run through over a dataset (windows x (prefix + suffix)), at
# one token per byte (the most a text can hold): past it a policy is refused, not left to a
# worker for days. A 1,000,000-byte work at stride 1 with 50+50-token windows is 1e8.
MAX_SCAN_TOKENS = 10_000_000_000


class CoverageParams(CheckParams):
    prefix_tokens: int = Field(50, ge=1, le=MAX_WINDOW_TOKENS, description="Prefix length n")
    suffix_tokens: int = Field(50, ge=1, le=MAX_WINDOW_TOKENS, description="Suffix length m")
    stride: int = Field(10, ge=1, le=MAX_WINDOW_TOKENS, description="Tokens between windows")
    offset: int = OFFSET_FIELD
    schemes: list[SchemeParams] = Field(
        default_factory=lambda: [SchemeParams(top_k=40)],
        min_length=1,
        max_length=8,
        description="Sampling schemes as served (Cooper et al.: top-k 40 at T=1); greedy "
        "verdicts are always reported",
    )
    threshold: float = Field(
        0.01, gt=0, le=1, description="A window is extractable when its p_z is at least this"
    )
    top_passages: int = Field(5, ge=0, le=100, description="Non-overlapping top windows kept")
    series_points: int = Field(
        MAX_SERIES_POINTS,
        ge=2,
        le=MAX_SERIES_POINTS,
        description="Most points a record's stored series holds per scheme: past it, each point "
        "is the largest log10 p_z of a run of consecutive windows (every window is still "
        "scanned, and shares, runs, spans and top passages read them all)",
    )
    mode: Literal["exact", "screen"] = Field(
        "exact",
        description="exact: every window scored alone; screen: one pass over long chunks, "
        "candidates re-scored exactly",
    )
    screen_context: int = Field(
        1024, ge=4, le=MAX_WINDOW_TOKENS, description="Screen chunk length (model context caps)"
    )
    screen_margin: float = Field(
        2.0,
        ge=0,
        le=300,
        description="Screened windows within this many log10 units below the threshold are "
        "re-scored exactly",
    )

    @model_validator(mode="after")
    def _screen_fits(self) -> CoverageParams:
        if self.mode == "screen" and self.screen_context <= self.prefix_tokens + self.suffix_tokens:
            raise ValueError("screen_context must exceed prefix_tokens + suffix_tokens")
        return self

    def scheme_list(self) -> tuple[Scheme, ...]:
        unique: dict[str, Scheme] = {}
        for params in self.schemes:
            unique.setdefault(params.scheme().name, params.scheme())
        return tuple(unique.values())

    def verdict_names(self) -> list[str]:
        """The schemes' names, greedy (always computed) among them."""
        names = [s.name for s in self.scheme_list()]
        return names if GREEDY_KEY in names else [*names, GREEDY_KEY]


def _lead(params: CoverageParams) -> str:
    """The scheme the table and headline read: the first sampled one, else greedy."""
    return next((s.name for s in params.scheme_list() if not s.greedy), GREEDY_KEY)


def _columns(params: CoverageParams) -> list[TableColumn]:
    lead = _lead(params)
    return [
        TableColumn(f"coverage_share.{lead}", f"coverage {lead}", "percent"),
        TableColumn(f"longest_run.{lead}", "longest run", "int"),
        TableColumn(f"max_log10_pz.{lead}", f"max log10 p_z {lead}", "number"),
        TableColumn("n_windows", "windows", "int"),
    ]


COVERAGE = CheckKind(
    name="coverage",
    description="Extraction across whole works: every window of a long document scored alone "
    "(exact p_z), the share of the work extractable, its longest run and top passages.",
    params_model=CoverageParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(
        Metric(
            "coverage_share",
            True,
            "fraction",
            "Share of the work's tokens in the suffix of a window extractable at p_z >= "
            "threshold, per scheme.",
            "Cooper et al. 2025",
        ),
        Metric(
            "longest_run",
            True,
            "tokens",
            "Longest stretch of tokens covered by extractable windows, per scheme.",
        ),
        Metric("max_log10_pz", True, "log10 probability", "The likeliest window's log10 p_z."),
        Metric("n_windows_extractable", True, "windows", "Windows with p_z >= threshold."),
        Metric("n_windows", None, "windows", "Windows scored (no cap)."),
        Metric(
            "series",
            None,
            "log10 probability",
            "Per-window log10 p_z per scheme (offsets in tokens; null where p_z = 0).",
        ),
    ),
    plan=Lazy("worker.checks.lm.coverage:plan_coverage"),
    compute=Lazy("worker.checks.lm.coverage:compute_coverage"),
    summarize=Lazy("worker.checks.lm.coverage:summarize_coverage"),
    rank_score=lambda values, _p: max(
        (v for v in (values.get("coverage_share") or {}).values() if v is not None), default=None
    ),
    rank_description="share of the work extractable (largest across schemes)",
    table_columns=_columns,
    # Extraction's window fit, and a bound on the scan's work (`_fit_coverage`).
    fit=lambda params, context: _fit_coverage(params, context),
    check_record=read_record,
)


def scan_tokens_bound(lengths: Sequence[int], params: CoverageParams) -> int:
    """The token positions scanning texts of these byte lengths takes, at one token per byte."""
    need = params.offset + params.prefix_tokens + params.suffix_tokens
    width = params.prefix_tokens + params.suffix_tokens
    return sum(
        ((max_tokens(b) - need) // params.stride + 1) * width
        for b in lengths
        if max_tokens(b) >= need
    )


def _fit_coverage(params: CoverageParams, context: FitContext) -> DataFit:
    """Extraction's window fit, and a bound on the scan's work over the records read."""
    found = fit_windows(params, context)
    work = scan_tokens_bound(context.profile.text.parsed, params)
    if work <= MAX_SCAN_TOKENS:
        return found
    refusal = (
        f"stride {params.stride:,} over windows of {params.prefix_tokens + params.suffix_tokens:,}"
        f" tokens scans up to {work:,} token positions in this dataset's records (at one token "
        f"per byte), past the {MAX_SCAN_TOKENS:,} a coverage check may take: raise the stride "
        f"to at least {math.ceil(params.stride * work / MAX_SCAN_TOKENS):,}, shorten the "
        "windows, or split the dataset"
    )
    return DataFit((*found.refusals, refusal), found.warnings)


def plan_coverage(_params: CoverageParams, _context: SubmitContext) -> LMPlan:
    """No shared pass: the windows are the kind's own work (`coverage_work`)."""
    return LMPlan()


# ---- model work, in the worker --------------------------------------------------------------


def coverage_work(work: KindWork, params: CoverageParams) -> list[dict[str, Any]]:
    """Per record, the scan's series and reductions (passes.KIND_WORK)."""
    from worker.engine.coverage_scan import ScanSetup

    target = work.target
    setup = ScanSetup.of(target.model, target.device, params.scheme_list())
    found = [
        _scan_record(setup, target, record.text, params, work.batch_size) for record in work.records
    ]
    work.count_tokens(sum(r.get("tokens_run", 0) for r in found))
    return found


def _scan_record(
    setup: Any, target: Any, text: str, params: CoverageParams, batch_size: int
) -> dict[str, Any]:
    import numpy as np

    from worker.engine import coverage, coverage_scan

    ids = target.encode(text)
    specials = list(target.special_prefix)
    n, m = params.prefix_tokens, params.suffix_tokens
    width = len(specials) + n + m
    if width > target.max_tokens:
        return {
            "skipped": True,
            "reason": "window_exceeds_context",
            "window_tokens": width,
            "context": target.max_tokens,
            "n_tokens": len(ids),
        }
    offsets = coverage.coverage_offsets(len(ids), n, m, params.stride, params.offset)
    if not len(offsets):
        return {"skipped": True, "reason": "too_short", "n_tokens": len(ids)}
    found: dict[str, Any] = {"ids": ids, "n_windows": len(offsets)}
    if params.mode == "screen":
        context = min(params.screen_context, target.max_tokens)
        tokens = coverage_scan.screen_token_logprobs(setup, ids, specials, context, n)
        screened = {
            name: coverage.screen_window_log10(values, offsets, n, m)
            for name, values in tokens.items()
        }
        floor = math.log10(params.threshold) - params.screen_margin
        keep = np.logical_or.reduce([v >= floor for v in screened.values()])
        candidates = offsets.start + params.stride * np.flatnonzero(keep)
        found["screen"] = {"offsets": offsets, "log10_pz": screened, "candidates": candidates}
        offsets = candidates
        found["tokens_run"] = len(ids)
    series = coverage_scan.scan_windows(setup, ids, specials, offsets, n, m, batch_size)
    found["series"] = _rechecked(series, setup, target, ids, specials, params, batch_size)
    rechecked = found["series"].rechecked or 0
    found["tokens_run"] = found.get("tokens_run", 0) + width * (len(offsets) + rechecked)
    return found


def _rechecked(
    series: Any,
    setup: Any,
    target: Any,
    ids: Sequence[int],
    specials: Sequence[int],
    params: CoverageParams,
    batch_size: int,
) -> Any:
    """Windows whose greedy verdict rounding could flip, scored again in float32 when the model
    computes below it (docs/numerics.md); their float32 values replace the pass's."""
    import torch

    from worker.checks.lm.recheck import computes_below_float32, float32_compute
    from worker.engine.coverage import WindowSeries
    from worker.engine.coverage_scan import ScanSetup, scan_windows

    fragile = series.fragile
    if not fragile.any() or not computes_below_float32(target.model):
        return series
    offsets = series.offsets
    with float32_compute(target.model, target.device) as model:
        precise = ScanSetup.of(model, target.device, setup.schemes, torch.float32)
        again = scan_windows(
            precise,
            ids,
            specials,
            offsets[fragile],
            params.prefix_tokens,
            params.suffix_tokens,
            batch_size,
        )
    names = list(series.schemes)
    greedy, still = series.greedy, series.fragile
    greedy[fragile], still[fragile] = again.greedy, again.fragile
    log10 = {name: series.log10_pz(name) for name in names}
    for name in names:
        log10[name][fragile] = again.log10_pz(name)
    merged = WindowSeries(names, rechecked=int(fragile.sum()))
    merged.add(offsets, greedy, still, log10)
    return merged


# ---- per-record values --------------------------------------------------------------------


def _rounded(values: Any) -> list[float | None]:
    return [round(float(v), SERIES_DIGITS) if math.isfinite(v) else None for v in values]


def compute_coverage(samples: Sequence[LMSample], params: CoverageParams) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        found = sample.extras.get("coverage")
        if found is None or found.get("skipped"):
            values = dict(found or {"skipped": True, "reason": "not_scanned"})
        else:
            values = _record_values(sample, found, params)
        values["sample_id"] = sample.sample_id
        if sample.member is not None:
            values["member"] = sample.member
        rows.append(values)
    return rows


def _record_values(
    sample: LMSample, found: dict[str, Any], params: CoverageParams
) -> dict[str, Any]:
    import numpy as np

    from worker.engine import coverage

    ids, series = found["ids"], found["series"]
    n, m, total = params.prefix_tokens, params.suffix_tokens, len(found["ids"])
    offsets, greedy = series.offsets, series.greedy
    per_window = {s.name: series.log10_pz(s.name) for s in params.scheme_list()}
    per_window.setdefault(GREEDY_KEY, np.where(greedy, 0.0, -math.inf))
    values: dict[str, Any] = {
        "mode": params.mode,
        "n_tokens": total,
        "n_windows": found["n_windows"],
        "n_windows_scored_exactly": len(offsets),
        "window": {"prefix_tokens": n, "suffix_tokens": m, "stride": params.stride},
        "threshold": params.threshold,
        "greedy_extracted": bool(greedy.any()),
        "n_windows_fragile": int(series.fragile.sum()),
        "n_windows_rechecked": series.rechecked,
        "coverage_share": {},
        "longest_run": {},
        "longest_run_start": {},
        "n_windows_extractable": {},
        "max_log10_pz": {},
        "spans": {},
        "top_passages": {},
    }
    for name, log10 in per_window.items():
        chosen = coverage.extractable(log10, params.threshold)
        mask = coverage.covered_tokens(offsets, chosen, total, n, m)
        start, length = coverage.longest_run(mask)
        finite = log10[np.isfinite(log10)]
        values["coverage_share"][name] = float(mask.sum() / total)
        values["longest_run"][name] = length
        values["longest_run_start"][name] = start
        values["n_windows_extractable"][name] = int(chosen.sum())
        values["max_log10_pz"][name] = (
            round(float(finite.max()), SERIES_DIGITS) if finite.size else None
        )
        values["spans"][name] = [list(span) for span in coverage.spans(mask)[:MAX_SPANS]]
        values["top_passages"][name] = [
            {
                "offset": offset,
                "prefix": _decode(sample, ids[offset : offset + n]),
                "text": _decode(sample, ids[offset + n : offset + n + m]),
                "log10_pz": round(value, SERIES_DIGITS),
            }
            for offset, value in coverage.top_windows(offsets, log10, params.top_passages, n, m)
        ]
    size = coverage.bucket_size(len(offsets), params.series_points)
    values["series"] = {
        "conditioning": EXACT,
        "offsets": offsets[::size].tolist(),
        "log10_pz": {
            s.name: _rounded(coverage.bucket_max(series.log10_pz(s.name), size))
            for s in params.scheme_list()
        },
        "greedy": coverage.bucket_max(greedy.astype(int), size).tolist(),
    }
    if size > 1:
        values["series"]["downsampled"] = _downsampled(len(offsets), size)
    screen = found.get("screen")
    if screen is not None:
        every = coverage.bucket_size(len(screen["offsets"]), params.series_points)
        values["screen"] = {
            "conditioning": SCREENED,
            "offsets": {
                "start": screen["offsets"].start,
                "stride": screen["offsets"].step * every,
            },
            "log10_pz": {
                name: _rounded(coverage.bucket_max(v, every))
                for name, v in screen["log10_pz"].items()
            },
            "n_candidates": len(screen["candidates"]),
            "margin": params.screen_margin,
        }
        if every > 1:
            values["screen"]["downsampled"] = _downsampled(len(screen["offsets"]), every)
    return values


def _downsampled(n_windows: int, size: int) -> dict[str, Any]:
    """How a stored series was thinned, said beside it."""
    return {
        "n_windows": n_windows,
        "windows_per_point": size,
        "point": "the largest log10 p_z (greedy: any verdict) of the run of windows starting "
        "at its offset; shares, runs, spans and top passages read every window",
    }


def _decode(sample: LMSample, ids: Sequence[int]) -> str:
    """The passage's text as the token view renders it (empty when no renderer is given)."""
    return "" if sample.render is None else sample.render(list(ids), [])[0]


# ---- summary ------------------------------------------------------------------------------


def summarize_coverage(values: Sequence[dict[str, Any]], params: CoverageParams) -> dict[str, Any]:
    scored = [v for v in values if not v.get("skipped")]
    names = params.verdict_names()
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_skipped": len(values) - len(scored),
        "schemes": names,
        "lead": _lead(params),
        "threshold": params.threshold,
        "mode": params.mode,
        "conditioning": SCREENED if params.mode == "screen" else EXACT,
        "window": {
            "prefix_tokens": params.prefix_tokens,
            "suffix_tokens": params.suffix_tokens,
            "stride": params.stride,
        },
        "n_windows": sum(v["n_windows"] for v in scored),
        "n_tokens": sum(v["n_tokens"] for v in scored),
        "by_scheme": {},
    }
    for name in names:
        shares = [v["coverage_share"].get(name, 0.0) for v in scored]
        covered = sum(share * v["n_tokens"] for share, v in zip(shares, scored, strict=True))
        summary["by_scheme"][name] = {
            "documents_with_extractable": sum(1 for s in shares if s > 0),
            "mean_share": sum(shares) / len(shares) if shares else None,
            "max_share": max(shares, default=None),
            "share_of_all_tokens": covered / summary["n_tokens"] if summary["n_tokens"] else None,
            "longest_run": max((v["longest_run"].get(name, 0) for v in scored), default=0),
            "windows_extractable": sum(v["n_windows_extractable"].get(name, 0) for v in scored),
        }
    lead = summary["lead"]
    ranked = sorted(scored, key=lambda v: -v["coverage_share"].get(lead, 0.0))[:MAX_STRIPS]
    summary["strips"] = [
        {
            "sample_id": v.get("sample_id"),
            "n_tokens": v["n_tokens"],
            "coverage_share": v["coverage_share"],
            "longest_run": v["longest_run"],
            "spans": v["spans"],
            "top_passages": v["top_passages"],
        }
        for v in ranked
    ]
    summary.update(_skipped(values))
    return summary


# Why a record had no window, by reason code (the codes extraction and approximate use).
SKIP_WORDS = {
    "too_short": "shorter than one window of prefix and suffix",
    "window_exceeds_context": "a window of prefix and suffix longer than the model's context",
    "not_scanned": "not scanned",
}


def skip_words(reasons: Mapping[str, int]) -> str:
    """The reasons records were skipped, in words with their counts."""
    return "; ".join(
        f"{count:,} {SKIP_WORDS.get(code, code)} ({code})"
        for code, count in sorted(reasons.items())
    )


def _skipped(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The skipped records counted by reason code, named in `unfit` (and in `not_computed`
    when no record was scanned)."""
    reasons = Counter(str(v.get("reason") or "not_scanned") for v in values if v.get("skipped"))
    if not reasons:
        return {}
    n = sum(reasons.values())
    words = f"{n:,} of {len(values):,} records were skipped: {skip_words(reasons)}"
    found: dict[str, Any] = {"skipped_reasons": dict(reasons), "unfit": words}
    if n == len(values):
        found["not_computed"] = f"no record could be scanned ({words})"
    return found
