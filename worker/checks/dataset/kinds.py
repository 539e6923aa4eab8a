"""The dataset family's check kinds, declared for the registry (light: no torch, no numpy).

`duplication`: per record, how many records of the whole corpus have the same normalised text,
and the longest span it shares with another record (Kandpal et al. 2022: a sequence's
duplicate count drives how often a model regenerates it; Lee et al. 2022: deduplicating
training data lowers memorization). Computed by `duplication.py` in a worker, through the
family's pass."""

from __future__ import annotations

from pydantic import Field

from core.check_kinds import NO_MODEL, CheckKind, CheckParams, Lazy, Metric, TableColumn

# Dataset kinds run without a model; with one (of these kinds) they read its tokenizer only.
DATASET_MODEL_KINDS = (NO_MODEL, "causal_lm", "classifier", "encoder")

LEE = (
    "Lee et al. (2022), Deduplicating Training Data Makes Language Models Better, ACL "
    "(exact substring deduplication over a suffix array)"
)
KANDPAL = (
    "Kandpal, Wallace & Raffel (2022), Deduplicating Training Data Mitigates Privacy Risks in "
    "Language Models, ICML"
)


class DuplicationParams(CheckParams):
    min_repeat_tokens: int = Field(
        50,
        ge=1,
        le=100_000,
        description="A span shared by records counts as a long repeat from this many tokens "
        "(of the corpus tokenizer): the corpus-level repeated share and each record's "
        "`long_span` use it (50: the extraction window of Carlini et al. 2021)",
    )
    top_spans: int = Field(
        20, ge=1, le=1000, description="How many of the most repeated spans the summary lists"
    )
    top_groups: int = Field(
        20,
        ge=1,
        le=1000,
        description="How many of the largest duplicate groups the summary lists, each with its "
        "count and a short (masked) example",
    )


DUPLICATION = CheckKind(
    name="duplication",
    description="Per record, how many records in the whole corpus have the same text after "
    "normalisation (NFKC, case folded, whitespace collapsed): duplicated text is what models "
    "memorize first. Runs without a model.",
    params_model=DuplicationParams,
    model_kinds=DATASET_MODEL_KINDS,
    required_fields=("text",),
    metrics=(
        Metric(
            "duplicates",
            True,
            "records",
            "Records in the corpus with this record's normalised text, itself included "
            "(1: unique).",
            KANDPAL,
        ),
        Metric("duplicate", True, "bool", "Another record has the same normalised text."),
        Metric(
            "span_tokens",
            True,
            "tokens",
            "The longest span of this record that occurs in another record, in tokens of the "
            "corpus tokenizer (the linked model's, else SmolLM2's).",
            LEE,
        ),
        Metric("span_bytes", True, "bytes", "The same span in UTF-8 bytes.", LEE),
        Metric(
            "span_count", None, "occurrences", "How often that span occurs in the corpus.", LEE
        ),
        Metric(
            "long_span",
            True,
            "bool",
            "The record shares a span of at least `min_repeat_tokens` tokens with another.",
        ),
    ),
    compute=Lazy("worker.checks.dataset.duplication:duplication_values"),
    summarize=Lazy("worker.checks.dataset.duplication:summarize_duplication"),
    model_facts=Lazy("worker.checks.dataset.duplication:duplication_facts"),
    facts_key="corpus",
    rank_score=lambda values, _p: values.get("duplicates"),
    rank_description="most duplicated first: records whose text recurs most in the corpus",
    table_columns=lambda _p: [
        TableColumn("duplicates", "copies in corpus", "int"),
        TableColumn("span_tokens", "longest shared span (tokens)", "int"),
        TableColumn("span_count", "span occurrences", "int"),
        TableColumn("duplicate", "duplicated", "bool"),
    ],
)
