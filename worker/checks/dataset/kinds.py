"""The dataset family's check kinds, declared for the registry (light: no torch, no numpy).

`duplication`: per record, how many records of the whole corpus have the same normalised text
(Kandpal et al. 2022: a sequence's duplicate count drives how often a model regenerates it;
Lee et al. 2022: deduplicating training data lowers memorization). Computed by `compute.py`
in a worker, through the family's pass."""

from __future__ import annotations

from pydantic import Field

from core.check_kinds import NO_MODEL, CheckKind, CheckParams, Lazy, Metric, TableColumn

# Dataset kinds run without a model; with one (of these kinds) they read its tokenizer only.
DATASET_MODEL_KINDS = (NO_MODEL, "causal_lm", "classifier", "encoder")

KANDPAL = (
    "Kandpal, Wallace & Raffel (2022), Deduplicating Training Data Mitigates Privacy Risks in "
    "Language Models, ICML"
)


class DuplicationParams(CheckParams):
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
    ),
    compute=Lazy("worker.checks.dataset.compute:duplication_values"),
    summarize=Lazy("worker.checks.dataset.compute:summarize_duplication"),
    rank_score=lambda values, _p: values.get("duplicates"),
    rank_description="most duplicated first: records whose text recurs most in the corpus",
    table_columns=lambda _p: [
        TableColumn("duplicates", "copies in corpus", "int"),
        TableColumn("duplicate", "duplicated", "bool"),
    ],
)
