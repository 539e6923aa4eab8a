"""How the `approximate` kind computes: its own model work (generating each record's suffix,
`passes.KIND_WORK`), the per-record similarities, and the summary. Imported only by a worker."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from core.check_kinds import SubmitContext
from worker.checks.lm.approximate import ApproximateParams
from worker.checks.lm.passes import KindWork
from worker.checks.lm.samples import LMPlan, LMSample
from worker.engine.distributions import shared_histogram, wilson_interval
from worker.engine.similarity import METRIC_NAMES, matching_spans, similarity
from worker.engine.suffix_generation import generate_suffixes, row_seed

KIND = "approximate"
# Per scheme, the best and the mean over its generations (one for greedy).
BEST_METRICS = ("rouge_l", "lcs_substring", "lcs_substring_fraction", "edit_similarity", "bleu")


def plan_approximate(_params: ApproximateParams, _context: SubmitContext) -> LMPlan:
    """Nothing from the shared teacher-forced passes: the kind generates on its own."""
    return LMPlan()


def _window(
    text_ids: list[int], params: ApproximateParams, room: int
) -> tuple[list[int], list[int]] | str:
    """(prefix ids, suffix ids) of the record's window, or why it has none."""
    start = params.offset
    middle = start + params.prefix_tokens
    end = middle + params.suffix_tokens
    if len(text_ids) < end:
        return "too_short"
    if params.prefix_tokens + params.suffix_tokens > room:
        return "window_exceeds_context"
    return text_ids[start:middle], text_ids[middle:end]


def generate_approximate(work: KindWork, params: ApproximateParams) -> list[dict[str, Any]]:
    """Per record, its window and every generation under each scheme (token ids)."""
    target = work.target
    specials = target.special_prefix
    # The model's own context, not the audit's max_tokens (that truncates other kinds' texts).
    room = target.max_tokens - len(specials)
    results: list[dict[str, Any]] = []
    for record in work.records:
        text_ids = target.encode(record.text)
        window = _window(text_ids, params, room)
        if isinstance(window, str):
            results.append({"skipped": True, "reason": window, "n_text_tokens": len(text_ids)})
            continue
        prefix, suffix = window
        results.append({"prefix_ids": prefix, "suffix_ids": suffix, "generated": {}})
    open_rows = [i for i, r in enumerate(results) if not r.get("skipped")]
    tokenizer = target.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for scheme in params.scheme_list():
        draws = 1 if scheme.greedy else params.samples
        rows = [(i, k) for i in open_rows for k in range(draws)]
        seeds = None
        if not scheme.greedy:
            seeds = [
                row_seed(params.seed, work.records[i].sample_id, scheme.name, k) for i, k in rows
            ]
        generated = generate_suffixes(
            target.model,
            [specials + results[i]["prefix_ids"] for i, _ in rows],
            new_tokens=params.suffix_tokens,
            scheme=scheme,
            seeds=seeds,
            pad_id=pad if pad is not None else 0,
            batch_size=work.batch_size,
            device=target.device,
        )
        work.count_tokens(sum(len(specials + results[i]["prefix_ids"]) for i, _ in rows))
        work.count_tokens(len(rows) * params.suffix_tokens)
        for i in open_rows:
            results[i]["generated"][scheme.name] = []
        for (i, _), ids in zip(rows, generated, strict=True):
            results[i]["generated"][scheme.name].append(ids)
    return results


def _with_labels(sample: LMSample, values: dict[str, Any]) -> dict[str, Any]:
    if sample.member is not None:
        values["member"] = sample.member
    if sample.duplicates is not None:
        values["duplicates"] = sample.duplicates
    return values


def record_values(found: dict[str, Any], params: ApproximateParams) -> dict[str, Any]:
    """Per scheme: each metric's best and mean over the generations, whether any generation is
    verbatim or reaches a threshold, and the spans of the generation closest by ROUGE-L."""
    suffix = found["suffix_ids"]
    thresholds = params.thresholds.active()
    values: dict[str, Any] = {metric: {} for metric in BEST_METRICS}
    values.update({f"{metric}_mean": {} for metric in BEST_METRICS})
    values.update({"approx": {}, "verbatim": {}, "spans": {}, "best_generation": {}})
    for name, generations in found["generated"].items():
        scores = [similarity(ids, suffix) for ids in generations]
        for metric in BEST_METRICS:
            values[metric][name] = max(s[metric] for s in scores)
            values[f"{metric}_mean"][name] = fmean(s[metric] for s in scores)
        values["verbatim"][name] = any(s["verbatim"] for s in scores)
        values["approx"][name] = any(
            values[metric][name] >= bar for metric, bar in thresholds.items()
        )
        closest = max(range(len(scores)), key=lambda k: (scores[k]["rouge_l"], -k))
        values["spans"][name] = matching_spans(generations[closest], suffix)
        values["best_generation"][name] = generations[closest]
    values["approx_extracted"] = any(values["approx"].values())
    values["verbatim_extracted"] = any(values["verbatim"].values())
    values["n_suffix_tokens"] = len(suffix)
    values["offset"] = params.offset
    return values


def _detail(sample: LMSample, found: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The true suffix token by token with, per scheme, the spans its closest generation
    reproduces and that generation as text: the records view highlights them."""
    detail: dict[str, Any] = {"offset": values["offset"], "spans": values["spans"]}
    if sample.render is not None:
        detail["prefix"], detail["tokens"] = sample.render(found["prefix_ids"], found["suffix_ids"])
        detail["generated"] = {
            name: "".join(sample.render([], ids)[1])
            for name, ids in values["best_generation"].items()
        }
    return detail


def compute_approximate(
    samples: Sequence[LMSample], params: ApproximateParams
) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        found = sample.extras[KIND]
        if found.get("skipped"):
            rows.append(_with_labels(sample, dict(found)))
            continue
        values = record_values(found, params)
        values["detail"] = _detail(sample, found, values)
        del values["best_generation"]
        rows.append(_with_labels(sample, values))
    return rows


def _rate(flags: Sequence[bool]) -> dict[str, Any]:
    count = sum(1 for f in flags if f)
    return {
        "count": count,
        "rate": count / len(flags) if flags else None,
        "ci95": wilson_interval(count, len(flags)),
    }


def _rates(scored: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Approximate beside verbatim extraction, per scheme and over all schemes, on the same
    records."""
    return {
        "n": len(scored),
        "approx": {n: _rate([v["approx"][n] for v in scored]) for n in names},
        "verbatim": {n: _rate([v["verbatim"][n] for v in scored]) for n in names},
        "approx_any": _rate([v["approx_extracted"] for v in scored]),
        "verbatim_any": _rate([v["verbatim_extracted"] for v in scored]),
    }


def summarize_approximate(
    values: Sequence[dict[str, Any]], params: ApproximateParams
) -> dict[str, Any]:
    names = [s.name for s in params.scheme_list()]
    scored = [v for v in values if not v.get("skipped")]
    summary: dict[str, Any] = {
        "n_samples": len(values),
        "n_skipped": len(values) - len(scored),
        "schemes": names,
        "samples_per_sampled_scheme": params.samples,
        "suffix_tokens": params.suffix_tokens,
        "thresholds": params.thresholds.active(),
        "bleu_smoothing": "Chen & Cherry 2014 method 1 (epsilon 0.1), n-grams up to 4",
        "all": _rates(scored, names),
        "histograms": {
            metric: shared_histogram({n: [v[metric][n] for v in scored] for n in names})
            for metric in METRIC_NAMES
        },
    }
    if any(v.get("member") is not None for v in scored):
        for group, label in (("members", True), ("nonmembers", False)):
            summary[group] = _rates([v for v in scored if v.get("member") is label], names)
    skipped = [v for v in values if v.get("skipped")]
    if skipped:
        reasons = sorted({v["reason"] for v in skipped})
        words = f"{len(skipped):,} of {len(values):,} records had no window ({', '.join(reasons)})"
        summary["unfit"] = (
            f"{words}: offset+prefix_tokens+suffix_tokens must fit in the record and the model's "
            "context; they were skipped"
        )
        if not scored:
            summary["not_computed"] = words
    return summary
