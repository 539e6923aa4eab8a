"""The dataset family's report part: per kind a section (Plotly charts, tables, notes), its
headline figures and its finding, from the summary finalize stored. Every text shown here
(examples, spans, values) was stored masked through `display.Display`; nothing here reads a
record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.checks.dataset import figures
from worker.checks.report_kit import (
    CONTROL_MEMORISATION,
    CONTROL_VALIDITY,
    Finding,
    Headline,
    ReportPart,
    Section,
    Table,
    charts,
    counted,
    format_number,
    percent_interval_text,
    percent_text,
    proportion_risk,
)

ENTROPY_ONLY = "possible_secret"
KEY_TYPES = ("api_key", "private_key")  # a key in a corpus is a leak whether or not it recurs
HEAVY_SHARE = 0.05  # above this share of records a duplication finding is high risk


def _skipped_note(summary: Mapping[str, Any]) -> list[str]:
    skipped = summary.get("n_skipped")
    return [f"{skipped:,} records had no text and were skipped."] if skipped else []


# duplication


def _top_spans_table(corpus: Mapping[str, Any]) -> Table | None:
    rows = [
        [
            span.get("text") or "—",
            format_number(span.get("count")),
            format_number(span.get("n_tokens")),
            format_number(span.get("n_bytes")),
        ]
        for span in corpus.get("top_spans") or []
    ]
    header = ["span (masked)", "occurrences", "tokens", "bytes"]
    return Table("Most repeated spans", header, rows) if rows else None


def _largest_groups_table(summary: Mapping[str, Any]) -> Table | None:
    rows = [
        [format_number(group["count"]), group.get("example") or "—"]
        for group in summary.get("largest_groups") or []
    ]
    return Table("Largest duplicate groups", ["copies", "example (masked)"], rows) if rows else None


def duplication_section(summary: Mapping[str, Any]) -> Section:
    corpus = summary.get("corpus") or {}
    notes = [
        f"{format_number(summary.get('n_records'))} records, "
        f"{format_number(summary.get('n_distinct_texts'))} distinct texts after normalisation "
        "(NFKC, case folded, whitespace collapsed); deduplicating would drop "
        f"{format_number(summary.get('n_excess_copies'))} records."
    ]
    if corpus.get("repeated_bytes_share") is not None:
        notes.append(
            f"{percent_text(corpus['repeated_bytes_share'])} of the corpus's "
            f"{format_number(corpus.get('n_bytes'))} bytes lie in spans of at least "
            f"{format_number(corpus.get('min_repeat_tokens'))} tokens that occur more than once "
            f"(tokens of {corpus.get('tokenizer') or 'the corpus tokenizer'})."
        )
    notes += _skipped_note(summary)
    named = [
        ("histogram", figures.duplicate_histogram_figure(summary)),
        ("spans", figures.span_bins_figure(summary)),
    ]
    tables = [_top_spans_table(corpus), _largest_groups_table(summary)]
    return Section(
        "duplication",
        "Duplication in the corpus",
        charts("duplication", named),
        notes,
        [table for table in tables if table is not None],
    )


def duplication_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    corpus = summary.get("corpus") or {}
    found = [
        Headline(
            "duplication.duplicate_share",
            "records duplicated",
            summary.get("duplicate_share"),
            None,  # a count over the whole corpus, not an estimate
            True,
            True,
        )
    ]
    if corpus.get("repeated_bytes_share") is not None:
        found.append(
            Headline(
                "duplication.repeated_bytes_share",
                f"bytes in repeats ≥ {corpus.get('min_repeat_tokens')} tokens",
                corpus["repeated_bytes_share"],
                None,
                True,
                True,
            )
        )
    return found


def duplication_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """Duplicated training text is memorized first (Kandpal et al. 2022): any duplication is
    worth removing, heavy duplication urgently."""
    n = int(summary.get("n_records") or 0)
    duplicated = int(summary.get("n_duplicate_records") or 0)
    if not n:
        return Finding(
            "duplication",
            "Duplication could not be assessed: no record had a text.",
            "unknown",
            CONTROL_MEMORISATION,
            "Give each record its text in the `text` field.",
        )
    share = duplicated / n
    risk = "none" if not duplicated else "high" if share > HEAVY_SHARE else "medium"
    text = f"{counted(duplicated, n, 'records')} share their text with another record"
    if duplicated:
        text += f"; the largest group has {summary.get('max_copies'):,} copies"
    corpus = summary.get("corpus") or {}
    if corpus.get("repeated_bytes_share"):
        text += (
            f"; {percent_text(corpus['repeated_bytes_share'])} of the corpus's bytes lie in "
            f"spans of ≥ {corpus.get('min_repeat_tokens')} tokens that repeat"
        )
    return Finding(
        "duplication",
        text + ".",
        risk,
        CONTROL_MEMORISATION,
        "Deduplicate the corpus before training (exact, then near duplicates)."
        if duplicated
        else "Keep checking new corpus versions; look for near duplicates too.",
    )


# near_duplicates


def _lsh_note(summary: Mapping[str, Any]) -> str | None:
    corpus = summary.get("corpus") or {}
    if not corpus.get("bands"):
        return None
    probability = corpus.get("candidate_probability_at_threshold")
    return (
        f"MinHash-LSH over {corpus.get('shingle')}-word shingles: {corpus['bands']} bands × "
        f"{corpus.get('rows')} rows of {corpus.get('num_perm')} permutations, Jaccard threshold "
        f"{format_number(corpus.get('threshold', summary.get('threshold')))}; a pair at the "
        f"threshold becomes a candidate with probability {percent_text(probability)}, and each "
        f"candidate pair is kept only if its exact Jaccard reaches the threshold "
        f"({format_number(corpus.get('n_verified_pairs'))} of "
        f"{format_number(corpus.get('n_candidate_pairs'))} candidate pairs kept)."
    )


def _clusters_table(summary: Mapping[str, Any]) -> Table | None:
    rows = [
        [format_number(cluster["cluster"]), format_number(cluster["size"]), f"#{member}", example]
        for cluster in (summary.get("corpus") or {}).get("largest_clusters") or []
        for member, example in zip(cluster["members"], cluster["examples"], strict=False)
    ]
    header = ["cluster", "records", "record", "example (masked)"]
    return Table("Largest near-duplicate clusters", header, rows) if rows else None


def near_section(summary: Mapping[str, Any]) -> Section:
    notes = [
        f"{format_number(summary.get('n_near_duplicate_records'))} of "
        f"{format_number(summary.get('n_records'))} records fall in "
        f"{format_number(summary.get('n_clusters'))} near-duplicate clusters (largest: "
        f"{format_number(summary.get('max_cluster_size'))} records); keeping one record per "
        f"cluster would drop {format_number(summary.get('n_excess_records'))}."
    ]
    lsh = _lsh_note(summary)
    notes += ([lsh] if lsh else []) + _skipped_note(summary)
    table = _clusters_table(summary)
    return Section(
        "near_duplicates",
        "Near duplicates",
        charts("near_duplicates", [("clusters", figures.cluster_size_figure(summary))]),
        notes,
        [table] if table else [],
    )


def near_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    return [
        Headline(
            "near_duplicates.near_duplicate_share",
            "records near-duplicated",
            summary.get("near_duplicate_share"),
            None,
            True,
            True,
        )
    ]


def near_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """Near copies are memorized like exact ones (Lee et al. 2022), and exact matching misses
    them."""
    n = int(summary.get("n_records") or 0)
    clustered = int(summary.get("n_near_duplicate_records") or 0)
    if not n:
        return Finding(
            "near_duplicates",
            "Near duplicates could not be assessed: no record had a text.",
            "unknown",
            CONTROL_MEMORISATION,
            "Give each record its text in the `text` field.",
        )
    risk = "none" if not clustered else "high" if clustered / n > HEAVY_SHARE else "medium"
    text = (
        f"{counted(clustered, n, 'records')} have a near duplicate (shingle Jaccard ≥ "
        f"{format_number(summary.get('threshold'))})"
    )
    if clustered:
        text += (
            f", in {summary.get('n_clusters', 0):,} clusters of up to "
            f"{summary.get('max_cluster_size'):,} records"
        )
    return Finding(
        "near_duplicates",
        text + ".",
        risk,
        CONTROL_MEMORISATION,
        "Keep one record per cluster before training (MinHash deduplication)."
        if clustered
        else "Keep checking new corpus versions.",
    )


# pii


def pii_section(summary: Mapping[str, Any]) -> Section:
    by_type = summary.get("by_type") or {}
    counted_types = {t: v for t, v in by_type.items() if t != ENTROPY_ONLY}
    notes = [
        f"{format_number(summary.get('n_records_with_pii'))} of "
        f"{format_number(summary.get('n_records'))} records hold personal data or keys. Values "
        "are shown masked; recurrences are counted by a keyed hash of each value, so the same "
        "value written twice counts as one value seen twice."
    ]
    tables = []
    if counted_types:
        rows = [
            [
                kind,
                *(format_number(v[k]) for k in ("records", "occurrences", "distinct", "recurring")),
            ]
            for kind, v in counted_types.items()
        ]
        header = ["type", "records", "occurrences", "distinct values", "recurring values"]
        tables.append(Table("Personal data and keys by type", header, rows))
    recurring = [
        [item["type"], item["masked"], format_number(item["count"]), format_number(item["records"])]
        for item in summary.get("top_recurring") or []
    ]
    if recurring:
        header = ["type", "value (masked)", "occurrences", "records"]
        tables.append(Table("Most recurring values", header, recurring))
    if ENTROPY_ONLY in by_type:
        entropy = by_type[ENTROPY_ONLY]
        notes.append(
            "Possible secrets are high-entropy strings found by entropy alone, with no known key "
            "format: reported apart for review and never counted as keys or in the figures above."
        )
        row = ["possible secrets (entropy only)"]
        row += [format_number(entropy.get(k)) for k in ("records", "occurrences", "distinct")]
        tables.append(
            Table("Possible secrets", ["", "records", "occurrences", "distinct values"], [row])
        )
    if summary.get("values_truncated_records"):
        notes.append(
            f"{summary['values_truncated_records']:,} records held more values than are stored "
            "per record: their recurrences are undercounted."
        )
    notes += _skipped_note(summary)
    return Section(
        "pii",
        "Personal data and secrets",
        charts("pii", [("types", figures.pii_by_type_figure(counted_types))]),
        notes,
        tables,
    )


def pii_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    return [
        Headline("pii.pii_share", "records with PII", summary.get("pii_share"), None, True, True)
    ]


def pii_finding(summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]) -> Finding:
    """A value seen many times is the likeliest to be memorized (Carlini et al. 2021); a key is
    a leak once it is in the corpus at all."""
    n = int(summary.get("n_records") or 0)
    with_pii = int(summary.get("n_records_with_pii") or 0)
    if not n:
        return Finding(
            "pii",
            "Personal data could not be assessed: no record had a text.",
            "unknown",
            CONTROL_MEMORISATION,
            "Give each record its text in the `text` field.",
        )
    by_type = summary.get("by_type") or {}
    keys = sum(by_type.get(t, {}).get("occurrences", 0) for t in KEY_TYPES)
    most = int(summary.get("max_recurrence") or 0)
    text = f"{counted(with_pii, n, 'records')} hold personal data or keys"
    if with_pii:
        found = [t for t, v in by_type.items() if t != ENTROPY_ONLY and v.get("occurrences")]
        text += f" ({', '.join(found)})"
        top = (summary.get("top_recurring") or [{}])[0]
        if most > 1 and top:
            text += (
                f"; the most recurring value ({top['type']} {top['masked']}) occurs {most:,} times"
            )
    possible = int(summary.get("n_records_with_possible_secret") or 0)
    if possible:
        records = "record holds" if possible == 1 else "records hold"
        text += f"; {possible:,} {records} possible secrets (entropy only, to review)"
    risk = "none" if not with_pii else "high" if keys or most > 1 else "medium"
    return Finding(
        "pii",
        text + ".",
        risk,
        CONTROL_MEMORISATION,
        "Remove or replace these values before training, most recurring first; revoke any key "
        "found."
        if with_pii
        else "Review the possible secrets, then keep checking new corpus versions."
        if possible
        else "Keep checking new corpus versions.",
    )


# contamination


def contamination_section(summary: Mapping[str, Any]) -> Section:
    corpus = summary.get("corpus") or {}
    n = corpus.get("n", "n")
    share = percent_interval_text(
        summary.get("contaminated_share"), summary.get("contaminated_share_interval")
    )
    rows = [
        ["training corpus", str(corpus.get("corpus") or "—")],
        ["corpus sha256", str(corpus.get("corpus_sha256") or "—")],
        [f"distinct {n}-grams in the corpus", format_number(corpus.get("corpus_ngrams"))],
        ["evaluation records", format_number(summary.get("n_records"))],
        ["judged", format_number(summary.get("n_judged"))],
        ["contaminated", format_number(summary.get("n_contaminated"))],
        ["contaminated share", share],
        ["mean share of n-grams found", percent_text(summary.get("mean_overlap_fraction"))],
        ["mean longest span found (bytes)", format_number(summary.get("mean_longest_match_bytes"))],
        ["longest span found (bytes)", format_number(summary.get("max_longest_match_bytes"))],
    ]
    notes = [
        f"An evaluation record is contaminated when any of its word {n}-grams occurs in the "
        "training corpus (GPT-3's test); a record too short for one is contaminated when it "
        "occurs whole in the corpus."
    ]
    if summary.get("n_unjudged"):
        notes.append(f"{summary['n_unjudged']:,} records were too short to be judged.")
    notes += _skipped_note(summary)
    return Section(
        "contamination",
        "Contamination of the evaluation set",
        charts("contamination", [("overlap", figures.overlap_histogram_figure(summary))]),
        notes,
        [Table("Contamination", ["", "value"], rows)],
    )


def contamination_headlines(summary: Mapping[str, Any]) -> list[Headline]:
    interval = summary.get("contaminated_share_interval")
    return [
        Headline(
            "contamination.contaminated_share",
            "evaluation records contaminated",
            summary.get("contaminated_share"),
            tuple(interval) if interval else None,
            True,
            True,
        )
    ]


def contamination_finding(
    summary: Mapping[str, Any], _params: Any, _counts: Mapping[str, int]
) -> Finding:
    """A score on contaminated items measures recall of the training data, not the skill the
    benchmark names (GPT-3, appendix C)."""
    judged = int(summary.get("n_judged") or 0)
    found = int(summary.get("n_contaminated") or 0)
    n = (summary.get("corpus") or {}).get("n", 13)
    if not judged:
        return Finding(
            "contamination",
            "Contamination could not be assessed: no evaluation record was long enough.",
            "unknown",
            CONTROL_VALIDITY,
            "Check the `text` field of the evaluation set, or lower `n`.",
        )
    return Finding(
        "contamination",
        f"{counted(found, judged, 'evaluation records')} share a word {n}-gram with the "
        "training corpus.",
        proportion_risk(found, judged),
        CONTROL_VALIDITY,
        "Report scores on the clean records apart, or drop the contaminated ones."
        if found
        else "Repeat the check whenever the corpus or the evaluation set changes.",
    )


REPORT = ReportPart(
    sections={
        "duplication": duplication_section,
        "near_duplicates": near_section,
        "pii": pii_section,
        "contamination": contamination_section,
    },
    headlines={
        "duplication": duplication_headlines,
        "near_duplicates": near_headlines,
        "pii": pii_headlines,
        "contamination": contamination_headlines,
    },
    findings={
        "duplication": duplication_finding,
        "near_duplicates": near_finding,
        "pii": pii_finding,
        "contamination": contamination_finding,
    },
    trend={
        "duplication.duplicate_share": (0.0, 1.0),
        "duplication.repeated_bytes_share": (0.0, 1.0),
        "near_duplicates.near_duplicate_share": (0.0, 1.0),
        "pii.pii_share": (0.0, 1.0),
        "contamination.contaminated_share": (0.0, 1.0),
    },
)
