"""The dataset family's check kinds, declared for the registry (light: no torch, no numpy).

`duplication`: per record, how many records of the whole corpus have the same normalised text,
and the longest span it shares with another record (Kandpal et al. 2022: a sequence's
duplicate count drives how often a model regenerates it; Lee et al. 2022: deduplicating
training data lowers memorization). Computed by `duplication.py` in a worker, through the
family's pass."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.check_kinds import (
    NO_MODEL,
    CheckKind,
    CheckParams,
    Lazy,
    Metric,
    SubmitContext,
    TableColumn,
    known_names,
)
from worker.engine.corpus.pii import PII_TYPES

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
        Metric("span_count", None, "occurrences", "How often that span occurs in the corpus.", LEE),
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


BRODER = "Broder (1997), On the resemblance and containment of documents; Lee et al. (2022)"


class NearDuplicateParams(CheckParams):
    threshold: float = Field(
        0.8, ge=0.5, le=1.0, description="Jaccard of word shingles from which two records cluster"
    )
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    shingle: int = Field(5, ge=1, le=13, description="Words per shingle")
    seed: int = Field(1, ge=0, le=2**31 - 1, description="Seeds the MinHash permutations")
    top_clusters: int = Field(
        20, ge=1, le=1000, description="How many of the largest clusters the summary lists"
    )


NEAR_DUPLICATES = CheckKind(
    name="near_duplicates",
    description="Clusters of records whose word-shingle Jaccard reaches the threshold "
    "(MinHash-LSH, bands chosen to favour recall; candidate pairs verified by their exact "
    "Jaccard): copies that exact matching misses. Runs without a model.",
    params_model=NearDuplicateParams,
    model_kinds=DATASET_MODEL_KINDS,
    required_fields=("text",),
    metrics=(
        Metric(
            "cluster_size",
            True,
            "records",
            "Records in this record's near-duplicate cluster, itself included (1: none).",
            BRODER,
        ),
        Metric("near_duplicate", True, "bool", "Another record is a near duplicate of it."),
        Metric("jaccard", None, "", "Shingle Jaccard with its closest near duplicate."),
    ),
    compute=Lazy("worker.checks.dataset.near:near_values"),
    summarize=Lazy("worker.checks.dataset.near:summarize_near"),
    model_facts=Lazy("worker.checks.dataset.near:near_facts"),
    facts_key="corpus",
    rank_score=lambda values, _p: values.get("cluster_size"),
    rank_description="largest near-duplicate clusters first",
    table_columns=lambda _p: [
        TableColumn("cluster_size", "cluster size", "int"),
        TableColumn("jaccard", "closest Jaccard", "number"),
        TableColumn("near_duplicate", "near duplicate", "bool"),
    ],
)


class PiiParams(CheckParams):
    types: list[str] = Field(
        default_factory=lambda: list(PII_TYPES),
        description="Which kinds of value to look for; `possible_secret` (high entropy alone) "
        "is reported apart and never counted as a key",
    )
    max_values_per_record: int = Field(
        100, ge=1, le=10_000, description="Values stored per record (masked, keyed hash)"
    )
    top_values: int = Field(
        20, ge=1, le=1000, description="How many of the most recurring values the summary lists"
    )

    @field_validator("types")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        return known_names(values, PII_TYPES, "types")


PRESIDIO = "Microsoft Presidio pattern recognizers; Yelp detect-secrets plugins"

PII = CheckKind(
    name="pii",
    description="Personal data and secrets in the corpus (e-mails, phones, Luhn-valid cards, "
    "checksummed IBANs, IPs, provider API keys, private keys; entropy-only findings apart), "
    "per record and by type, with how often each value recurs. Values are stored masked with "
    "a keyed hash; the raw text stays in the uploaded file. Runs without a model.",
    params_model=PiiParams,
    model_kinds=DATASET_MODEL_KINDS,
    required_fields=("text",),
    metrics=(
        Metric(
            "pii_count",
            True,
            "values",
            "Personal values and keys found in the record (entropy-only findings excluded).",
            PRESIDIO,
        ),
        Metric("has_pii", True, "bool", "The record holds at least one personal value or key."),
        Metric(
            "possible_secrets",
            None,
            "values",
            "High-entropy strings found by entropy alone: to review, not counted as keys.",
        ),
    ),
    compute=Lazy("worker.checks.dataset.pii_inventory:pii_values"),
    summarize=Lazy("worker.checks.dataset.pii_inventory:summarize_pii"),
    rank_score=lambda values, _p: values.get("pii_count"),
    rank_description="records holding the most personal values and keys first",
    table_columns=lambda _p: [
        TableColumn("pii_count", "PII values", "int"),
        TableColumn("possible_secrets", "possible secrets", "int"),
        TableColumn("has_pii", "has PII", "bool"),
    ],
)


class ContaminationParams(CheckParams):
    corpus: str = Field(
        ...,
        min_length=1,
        max_length=4096,
        description="The training corpus the audited (evaluation) dataset is checked against: "
        "dataset:<id> or path:<file>, with a `text` field",
    )
    n: int = Field(13, ge=3, le=50, description="Words per n-gram (13: GPT-3's analysis)")
    longest_span: bool = Field(
        True, description="Also find each record's longest span in the corpus (exact index)"
    )
    corpus_sha256: str | None = Field(
        None,
        pattern="^[0-9a-f]{64}$",
        description="Set by the service at submit: the corpus's bytes then; the worker reads "
        "only those bytes",
    )


def _validate_corpus(
    params: ContaminationParams, context: SubmitContext
) -> ContaminationParams | None:
    """The corpus must be readable by the team and have texts; its bytes are pinned by their
    sha256, so a `path:` file changed after submit fails the audit instead of being read."""
    if context.resolve_dataset is None:
        return None
    corpus = context.resolve_dataset(params.corpus)
    fields = getattr(corpus, "fields", None)
    if fields is not None and "text" not in fields:
        raise ValueError(f"corpus {params.corpus} has no `text` field; it has {fields}")
    return params.model_copy(update={"corpus_sha256": getattr(corpus, "sha256", None)})


GPT3 = "Brown et al. (2020), Language Models are Few-Shot Learners, appendix C"

CONTAMINATION = CheckKind(
    name="contamination",
    description="How much of an evaluation set (the audited dataset) occurs in a training "
    "corpus: per record the share of its word n-grams found in the corpus (13-grams as in "
    "GPT-3), whether any is (contaminated), and its longest span found verbatim. Runs "
    "without a model.",
    params_model=ContaminationParams,
    model_kinds=DATASET_MODEL_KINDS,
    required_fields=("text",),
    metrics=(
        Metric(
            "fraction",
            True,
            "share",
            "Share of the record's word n-grams that occur in the corpus.",
            GPT3,
        ),
        Metric("contaminated", True, "bool", "Any of its n-grams occurs in the corpus.", GPT3),
        Metric(
            "longest_match_bytes",
            True,
            "bytes",
            "The longest span of the record found verbatim in the corpus.",
        ),
    ),
    compute=Lazy("worker.checks.dataset.contamination:contamination_values"),
    summarize=Lazy("worker.checks.dataset.contamination:summarize_contamination"),
    model_facts=Lazy("worker.checks.dataset.contamination:contamination_facts"),
    facts_key="corpus",
    validate=_validate_corpus,
    rank_score=lambda values, _p: values.get("fraction"),
    rank_description="records with the largest share of n-grams found in the corpus first",
    table_columns=lambda _p: [
        TableColumn("fraction", "n-grams in corpus", "percent"),
        TableColumn("longest_match_bytes", "longest span (bytes)", "int"),
        TableColumn("contaminated", "contaminated", "bool"),
    ],
)
