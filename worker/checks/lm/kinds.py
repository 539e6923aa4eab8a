"""The LM kinds: loss, extraction and membership, declared for the registry (params, metrics,
columns, ranks); their computation is `compute.py`, run in a worker."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

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
from core.dataset_profile import DatasetProfile, max_tokens
from worker.checks.lm.labels import read_record
from worker.engine.extraction import default_n_grid
from worker.engine.schemes import Scheme

# Upper bounds keep one request from asking for unbounded work or memory: a window longer
# than any context in use, or grids that would multiply every summary's size.
MAX_WINDOW_TOKENS = 131_072
MAX_TOKENS_FIELD = Field(
    None,
    ge=2,
    le=MAX_WINDOW_TOKENS,
    description="Truncate longer texts (flagged `truncated`); default: model context",
)


# The window fields every windowed LM kind shares (extraction, finetune, approximate, coverage).
OFFSET_FIELD = Field(0, ge=0, le=10_000_000, description="First prefix token in the text")
STRIDE_FIELD = Field(
    None,
    ge=1,
    le=MAX_WINDOW_TOKENS,
    description="Slide windows through long documents "
    "by this many tokens; the document is the reporting unit",
)
MAX_WINDOWS_FIELD = Field(64, ge=1, le=4096)


CORPUS_AUDIT_FIELD = Field(
    None,
    max_length=64,
    description="The id of a succeeded dataset audit of the training corpus with a "
    "`duplication` check: each record then carries the corpus count of its text (extraction: "
    "of its best window) and the PII types in it, and rates are grouped by measured counts",
)
CORPUS_COUNT_METRIC = Metric(
    "corpus_count",
    None,
    "occurrences",
    "Occurrences of the record's exact text (extraction: its best window, prefix and suffix) "
    "in the linked training corpus, overlapping ones included.",
    "Kandpal et al. 2022; Carlini et al. 2023",
)
CORPUS_COUNT_COLUMN = TableColumn("corpus_count", "corpus count", "int")


def validate_corpus_audit(corpus_audit: str | None, context: SubmitContext) -> None:
    """A named corpus audit must have finished with an exact index to read: refused at submit,
    not discovered by a worker."""
    if corpus_audit is None or context.resolve_audit is None:
        return
    found = context.resolve_audit(corpus_audit)  # unknown, or another team's: a 422 of its own
    if found.status != "succeeded":
        raise ValueError(
            f"corpus_audit {corpus_audit} is {found.status}: only a succeeded dataset audit "
            "can feed corpus counts"
        )
    if "duplication" not in found.check_kinds:
        raise ValueError(
            f"corpus_audit {corpus_audit} ran {found.check_kinds}, not a `duplication` check: "
            "the corpus counts come from its exact index"
        )


def _label_refusals(profile: DatasetProfile, needs: dict[str, tuple[str, ...]]) -> list[str]:
    """A threshold on a labelled group needs records in that group (`needs`: metric ->
    "true"/"false"), which only a complete pass can rule out."""
    found: list[str] = []
    if not profile.complete:
        return found
    counts = profile.members
    held = (
        f"the dataset's {profile.n_records:,} records hold {counts['true']:,} labelled true, "
        f"{counts['false']:,} false and {counts['absent']:,} unlabelled"
    )
    for metric, labels in needs.items():
        lacking = [label for label in labels if not counts[label]]
        if lacking:
            wanted = " and ".join(f"`member: {label}`" for label in labels)
            found.append(
                f"threshold {metric} needs records labelled {wanted}, but {held}: add records "
                f"labelled `member: {lacking[0]}`, or drop the threshold"
            )
    return found


# ---- loss --------------------------------------------------------------------------------


class LossParams(CheckParams):
    max_tokens: int | None = MAX_TOKENS_FIELD


LOSS = CheckKind(
    name="loss",
    description="Per-sample mean token negative log-likelihood of a causal LM.",
    params_model=LossParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(
        Metric(
            "loss",
            False,
            "nats/token",
            "Mean negative log-likelihood over scored tokens; "
            "lower means the model finds the text more familiar.",
        ),
        Metric("mean_logprob", True, "nats/token", "Mean log-probability of the true tokens."),
        Metric("n_scored", None, "tokens", "Positions with a left context."),
        Metric("n_bytes", None, "bytes", "UTF-8 length of the text."),
        Metric("truncated", None, "bool", "The text was longer than the model context."),
    ),
    check_record=read_record,
    plan=Lazy("worker.checks.lm.compute:plan_loss"),
    compute=Lazy("worker.checks.lm.compute:compute_loss"),
    summarize=Lazy("worker.checks.lm.compute:summarize_loss"),
    rank_score=lambda values, _p: values.get("mean_logprob"),
    rank_description="mean token log-probability",
    table_columns=lambda _p: [
        TableColumn("loss", "loss", "number"),
        TableColumn("n_scored", "tokens", "int"),
    ],
)


# ---- extraction --------------------------------------------------------------------------


# Processors whose output depends on the generated context cannot be folded into one pass.
CONTEXT_DEPENDENT = {
    "repetition_penalty",
    "no_repeat_ngram_size",
    "min_p",
    "typical_p",
    "epsilon_cutoff",
    "eta_cutoff",
    "encoder_repetition_penalty",
}


class SchemeParams(CheckParams):
    temperature: float = Field(1.0, ge=0, le=100, description="0 means greedy decoding")
    top_k: int = Field(
        0, ge=0, le=1_000_000, description="0 means off (HF generate samples with 50 by default)"
    )
    top_p: float = Field(1.0, gt=0, le=1, description="1 means off")

    @model_validator(mode="before")
    @classmethod
    def _reject_context_dependent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            found = sorted(CONTEXT_DEPENDENT & set(data))
            if found:
                raise ValueError(
                    f"context-dependent processors {found} cannot be computed "
                    "exactly from one pass and are rejected, never approximated"
                )
        return data

    def scheme(self) -> Scheme:
        return Scheme(self.temperature, self.top_k, self.top_p)


class ExtractionParams(CheckParams):
    prefix_tokens: int = Field(
        50, ge=1, le=MAX_WINDOW_TOKENS, description="Prefix length (Carlini et al. 2022)"
    )
    suffix_tokens: int = Field(
        50, ge=1, le=MAX_WINDOW_TOKENS, description="Suffix that must be reproduced"
    )
    offset: int = OFFSET_FIELD
    stride: int | None = STRIDE_FIELD
    max_windows: int = MAX_WINDOWS_FIELD
    schemes: list[SchemeParams] = Field(
        default_factory=lambda: [SchemeParams(temperature=0), SchemeParams(top_k=40)],
        min_length=1,
        max_length=16,
        description="Sampling schemes as served: greedy and top-k 40 at T=1",
    )
    # METRICS.md lists 0.999; the issue and validation fact 1 use 0.99: both are reported.
    p_grid: list[float] = Field(
        default_factory=lambda: [0.1, 0.5, 0.9, 0.99, 0.999], min_length=1, max_length=32
    )
    n_grid: list[int] = Field(default_factory=default_n_grid, min_length=1, max_length=64)
    corpus_audit: str | None = CORPUS_AUDIT_FIELD

    @field_validator("p_grid")
    @classmethod
    def _p_in_open_unit(cls, values: list[float]) -> list[float]:
        if any(not 0 < p < 1 for p in values):
            raise ValueError("every p must lie in (0, 1)")
        return values

    @field_validator("n_grid")
    @classmethod
    def _n_ascending(cls, values: list[int]) -> list[int]:
        if any(not 1 <= n <= 10**15 for n in values) or values != sorted(set(values)):
            raise ValueError("n_grid must be distinct integers in [1, 1e15], ascending")
        return values

    def scheme_list(self) -> tuple[Scheme, ...]:
        unique: dict[str, Scheme] = {}
        for params in self.schemes:
            unique.setdefault(params.scheme().name, params.scheme())
        return tuple(unique.values())


def _extraction_columns(params: ExtractionParams) -> list[TableColumn]:
    columns = [
        TableColumn("greedy_extracted", "greedy", "bool"),
        TableColumn("tf_match_fraction", "tf match", "percent"),
    ]
    sampled = [s.name for s in params.scheme_list() if not s.greedy]
    columns += [TableColumn(f"log10_pz.{name}", f"log10 p_z {name}", "number") for name in sampled]
    columns.append(TableColumn("match_prefix_len", "match len", "int"))
    if params.corpus_audit is not None:
        columns.insert(1, CORPUS_COUNT_COLUMN)
    return columns


def _validate_extraction(params: ExtractionParams, context: SubmitContext) -> None:
    validate_corpus_audit(params.corpus_audit, context)


def window_words(params: ExtractionParams) -> tuple[str, int]:
    """The params a record must hold in tokens, named as the policy spells them, and their sum."""
    names = "prefix_tokens+suffix_tokens"
    names = f"offset+{names}" if params.offset else names
    return names, params.offset + params.prefix_tokens + params.suffix_tokens


def fit_windows(params: ExtractionParams, context: FitContext) -> DataFit:
    """A record needs offset+prefix+suffix tokens for its first window; at most one token per
    byte (`max_tokens`), a record too short in bytes is too short for any model."""
    profile = context.profile
    names, need = window_words(params)
    short = profile.text.fewer_tokens_than(need)
    groups = {"members": ("true",), "nonmembers": ("false",)}
    needs = {m: groups[m.split(".")[1]] for m in context.metrics if m.split(".")[1] in groups}
    refusals = _label_refusals(profile, needs)
    warnings = []
    if short and short == profile.n_records:
        most = max_tokens(profile.text.longest)
        refusals.append(
            f"{names} = {need:,} tokens are needed of each record, but all {short:,} records "
            f"are shorter than that even at one token per byte (the longest has "
            f"{profile.text.longest:,} bytes, so at most {most:,} tokens): lower {names} to at "
            f"most {most:,}, or use a dataset of longer records"
        )
    elif short:
        at_least = "" if profile.complete else "at least "
        warnings.append(
            f"{at_least}{short:,} of {profile.n_records:,} records are shorter than {names} = "
            f"{need:,} tokens even at one token per byte and will be skipped; how many more "
            "are, only the model's tokenizer tells (the policy's first audit says)"
        )
    return DataFit(tuple(refusals), tuple(warnings))


def fit_windows_beside_scores(params: Any, context: FitContext) -> DataFit:
    """`fit_windows` for a kind whose windows are one part of what it reports (finetune:
    its Δℓ scores read the whole text): a dataset too short for any window is warned of, since
    that part would come back empty for every record, not refused."""
    found = fit_windows(params, context)
    names, _need = window_words(params)
    window = [r for r in found.refusals if r.startswith(f"{names} = ")]
    refusals = tuple(r for r in found.refusals if r not in window)
    warnings = tuple(f"no window's extraction is computed: {r}" for r in window)
    return DataFit(refusals, found.warnings + warnings)


EXTRACTION = CheckKind(
    name="extraction",
    description="Greedy discoverable extraction and exact (n,p)-discoverable extraction under "
    "sampling schemes, from one teacher-forced pass.",
    params_model=ExtractionParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(
        Metric(
            "greedy_extracted",
            True,
            "bool",
            "Greedy decoding from the prefix reproduces the suffix exactly.",
            "Carlini et al. 2022",
        ),
        Metric("match_prefix_len", True, "tokens", "Leading suffix tokens greedy reproduces."),
        Metric(
            "tf_match_fraction",
            True,
            "fraction",
            "Teacher-forced fraction of suffix "
            "positions where the true token is the arg-max (not Pythia's generated score).",
        ),
        Metric(
            "log10_pz",
            True,
            "log10 probability",
            "log10 of the exact probability of emitting the suffix under each scheme.",
            "Hayes et al. 2025",
        ),
        Metric(
            "n_min",
            False,
            "queries",
            "Fewest samples n with P(>= 1 exact hit) >= p.",
            "Hayes et al. 2025",
        ),
        Metric(
            "min_margin",
            None,
            "logits",
            "Smallest top-1 margin over the suffix; near 0 marks a fragile greedy match.",
        ),
        CORPUS_COUNT_METRIC,
    ),
    plan=Lazy("worker.checks.lm.compute:plan_extraction"),
    compute=Lazy("worker.checks.lm.compute:compute_extraction"),
    summarize=Lazy("worker.checks.lm.compute:summarize_extraction"),
    rank_score=lambda values, _p: max(
        (v for v in (values.get("log10_pz") or {}).values() if v is not None), default=None
    ),
    rank_description="log10 of the likeliest exact suffix emission across schemes "
    "(0: greedy decoding reproduces it)",
    table_columns=lambda p: _extraction_columns(p),
    validate=_validate_extraction,
    fit=fit_windows,
    check_record=read_record,
)


# ---- membership --------------------------------------------------------------------------


SCORE_NAMES = (
    "loss",
    "zlib",
    "lowercase",
    "mink",
    "minkpp",
    "ref",
    "recall",
    "con_recall",
    "dc_pdd",
    "pac",
    "neighbourhood",
)
# Scores that learn from held-out records (worker/checks/lm/holdout.py): prefixes, frequencies.
HOLDOUT_SCORES = ("recall", "con_recall", "dc_pdd")
# Not in the default set: PAC multiplies the teacher-forced tokens by 1 + its augmentations, the
# neighbourhood attack needs a `neighbour_model` (naming one asks for it), and the held-out
# scores hold records out of every score and run passes of their own: a default audit scores
# every record as audits before them did, so its AUROCs compare with theirs.
OPT_IN_SCORES = ("pac", "neighbourhood", *HOLDOUT_SCORES)


class MembershipParams(CheckParams):
    scores: list[str] | None = Field(
        None,
        max_length=len(SCORE_NAMES),
        description="Subset of loss, zlib, lowercase, mink, minkpp, ref, recall, con_recall, "
        "dc_pdd, pac, neighbourhood; default: all that apply except the opt-in pac (it costs "
        "1 + pac_augmentations passes), neighbourhood (only with a neighbour_model), and "
        "recall, con_recall and dc_pdd (they hold records out of every score, loss included: "
        "`shots` members and non-members, or none with a reference_corpus)",
    )
    # ---- held-out records (recall, con_recall, dc_pdd) ----
    shots: int = Field(
        3,
        ge=1,
        le=64,
        description="Held-out texts per label joined into ReCaLL's non-member prefix and "
        "Con-ReCall's member prefix (default 3, as the authors' few-shot setting)",
    )
    prefix_tokens: int = Field(
        256,
        ge=1,
        le=MAX_WINDOW_TOKENS,
        description="Token budget of each prefix: the shots' tokens are cut to it (default 256)",
    )
    holdout_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of each label's records held out (at least `shots`); DC-PDD's "
        "token frequencies count every held-out record. Held-out records are scored by no "
        "score, loss included, and named in the summary",
    )
    reference_corpus: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="dataset:<id> or path:<file> with a `text` field: prefixes (its `member: "
        "true` records for Con-ReCall's member prefix, the others for the non-member prefix) "
        "and DC-PDD's frequencies (every record) come from it, and no audited record is held out",
    )
    con_recall_gamma: float = Field(
        1.0,
        ge=0,
        le=10,
        description="Con-ReCall's weight γ of the member-prefix likelihood: "
        "(LL(x|P_nonmember) - γ·LL(x|P_member)) / LL(x); the authors sweep 0.1..1.0",
    )
    dc_pdd_cap: float = Field(
        0.01, gt=0, le=100, description="DC-PDD's cap a on each token's score (authors: 0.01)"
    )
    k: list[float] = Field(
        default_factory=lambda: [0.2],
        min_length=1,
        max_length=16,
        description="Fractions of lowest-scoring tokens for Min-K% and ++",
    )
    bootstrap: int = Field(1000, ge=0, le=20000, description="Bootstrap resamples for CIs")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    non_iid: bool = Field(
        False,
        description="Members and non-members come from different "
        "sources or periods; AUROC then partly measures that shift",
    )
    max_tokens: int | None = MAX_TOKENS_FIELD
    corpus_audit: str | None = CORPUS_AUDIT_FIELD
    # ---- calibration attacks (pac, neighbourhood): defaults are the authors' -------------
    pac_augmentations: int = Field(
        5, ge=1, le=32, description="PAC: random-swap augmentations per record (Ye et al. 2024)"
    )
    pac_alpha: float = Field(
        0.3, gt=0, le=1, description="PAC: fraction of a record's words swapped per augmentation"
    )
    pac_local: float = Field(
        0.3, gt=0, le=1, description="PAC: fraction of lowest token log-probs (local region)"
    )
    pac_far: float = Field(
        0.05, gt=0, le=1, description="PAC: fraction of highest token log-probs (far region)"
    )
    neighbour_model: str | None = Field(
        None,
        max_length=4096,
        description="neighbourhood: a masked LM (BERT-style, safetensors) under the model "
        "roots, as path:<directory>, whose word swaps make each record's neighbours",
    )
    neighbours: int = Field(
        25, ge=1, le=100, description="neighbourhood: neighbours per record (Mattern et al. 2023)"
    )

    @field_validator("scores")
    @classmethod
    def _known_scores(cls, values: list[str] | None) -> list[str] | None:
        unknown = sorted(set(values or ()) - set(SCORE_NAMES))
        if unknown:
            raise ValueError(f"unknown scores {unknown}; choose from {list(SCORE_NAMES)}")
        return values

    @field_validator("k")
    @classmethod
    def _k_fraction(cls, values: list[float]) -> list[float]:
        if any(not 0 < k <= 1 for k in values):
            raise ValueError("every k must lie in (0, 1]")
        return values

    def wanted(self, has_reference: bool) -> set[str]:
        if self.scores is not None:
            chosen = set(self.scores)
        else:
            chosen = set(SCORE_NAMES) - set(OPT_IN_SCORES)
            if self.neighbour_model is not None:
                chosen.add("neighbourhood")
            if not has_reference:
                chosen.discard("ref")
        if chosen & set(HOLDOUT_SCORES):
            chosen.add("loss")  # its AUROC on the same scored records, for comparison
        return chosen

    def prefix_scores(self) -> set[str]:
        """The chosen scores that need held-out records."""
        return set(self.scores or ()) & set(HOLDOUT_SCORES)


def _validate_membership(params: MembershipParams, context: SubmitContext) -> None:
    if params.scores and "ref" in params.scores and not context.has_reference_model:
        raise ValueError("score 'ref' needs a reference_model")
    validate_neighbour_model(params, context)
    validate_corpus_audit(params.corpus_audit, context)
    if params.reference_corpus is not None and context.resolve_dataset is not None:
        corpus = context.resolve_dataset(params.reference_corpus)  # roots, the team's uploads
        fields = getattr(corpus, "fields", None)
        if fields is not None and "text" not in fields:
            raise ValueError(
                f"reference_corpus {params.reference_corpus} has no `text` field; it has {fields}"
            )


def validate_neighbour_model(params: MembershipParams, context: SubmitContext) -> None:
    """The neighbourhood score needs a masked LM the team may read: refused at submit."""
    if params.scores and "neighbourhood" in params.scores and params.neighbour_model is None:
        raise ValueError("score 'neighbourhood' needs a neighbour_model (a masked LM)")
    uri = params.neighbour_model
    if uri is None:
        return
    if not uri.startswith("path:"):
        raise ValueError("neighbour_model must be a path:<directory> under the model roots")
    if context.resolve_model is not None:
        kind = context.resolve_model(uri)
        if kind not in (None, "masked_lm"):
            raise ValueError(f"neighbour_model is a {kind} model; give a masked LM (*ForMaskedLM)")


def _fit_membership(params: MembershipParams, context: FitContext) -> DataFit:
    """Every membership verdict metric (AUC, TPR, dataset inference) sets members against
    non-members; the held-out scores need `shots` of each label held out and one left."""
    needs = {metric: ("true", "false") for metric in context.metrics}
    refusals = _label_refusals(context.profile, needs)
    short = _holdout_shortfall(params, context.profile)
    if short:
        refusals.append(short)  # the held-out scores run only when named: refused, not warned
    return DataFit(tuple(refusals), ())


def _holdout_shortfall(params: MembershipParams, profile: DatasetProfile) -> str | None:
    """Why the held-out scores cannot run on these records, where a complete pass shows it
    (the one rule the audit applies too: holdout.holdout_shortfall)."""
    if not params.prefix_scores() or not profile.complete or params.reference_corpus:
        return None
    from worker.checks.lm.holdout import holdout_shortfall

    counts = {True: profile.members["true"], False: profile.members["false"]}
    return holdout_shortfall(counts, params.holdout_share, params.shots)


def _membership_columns(params: MembershipParams) -> list[TableColumn]:
    """The scores besides the rank score, in the registry's order. `ref` only when named: the
    columns are fixed from the params alone, and a default check without a reference model
    would otherwise show an always-empty column."""
    k = f"{params.k[0]:g}"
    chosen = params.wanted(True)
    if params.scores is None:
        chosen.discard("ref")
    keys = [
        key
        for key, name in [
            ("loss", "loss"),
            ("zlib", "zlib"),
            (f"mink_{k}", "mink"),
            ("lowercase", "lowercase"),
            ("ref", "ref"),
            (f"minkpp_{k}", "minkpp"),
            ("recall", "recall"),
            ("con_recall", "con_recall"),
            ("dc_pdd", "dc_pdd"),
            ("pac", "pac"),
            ("neighbourhood", "neighbourhood"),
        ]
        if name in chosen
    ]
    # The `loss` score is the log-likelihood (higher = more member-like): labelled as what it is.
    labels = {"loss": "ll (−loss)"}
    columns = [TableColumn(key, labels.get(key, key), "number") for key in keys]
    if params.corpus_audit is not None:
        columns.insert(1, CORPUS_COUNT_COLUMN)
    return columns


def _rank_keys(params: MembershipParams) -> list[str]:
    return [f"minkpp_{params.k[0]:g}", f"mink_{params.k[0]:g}", "zlib", "loss", "ref"]


MEMBERSHIP = CheckKind(
    name="membership",
    description="Membership inference scores (loss, zlib, lowercase, Min-K%, Min-K%++, "
    "reference calibration, ReCaLL, Con-ReCall, DC-PDD) with ROC AUC and TPR at low FPR; "
    "ReCaLL, Con-ReCall and DC-PDD learn from seeded held-out records, which no score scores.",
    params_model=MembershipParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(
        Metric("loss", True, "nats/token", "Mean token log-likelihood ll(x)."),
        Metric(
            "zlib",
            True,
            "nats/token/byte",
            "ll(x) / zlib-compressed length.",
            "Carlini et al. 2021",
        ),
        Metric("lowercase", True, "ratio", "ll(lower(x)) / ll(x).", "Carlini et al. 2021"),
        Metric(
            "mink",
            True,
            "nats/token",
            "Mean of the k-fraction lowest token log-probs.",
            "Shi et al., ICLR 2024",
        ),
        Metric(
            "minkpp",
            True,
            "std units",
            "Min-K% over (ℓ - μ) / σ with full-vocabulary μ and σ.",
            "Zhang et al., ICLR 2025",
        ),
        Metric(
            "ref",
            True,
            "nats",
            "ll_target - ll_reference (per token, or per byte when tokenizations differ).",
        ),
        Metric(
            "recall",
            True,
            "ratio",
            "ReCaLL: LL(x|P) / LL(x), P the held-out non-member prefix (`shots` texts within "
            "`prefix_tokens`).",
            "Xie et al. 2024",
        ),
        Metric(
            "con_recall",
            True,
            "ratio",
            "Con-ReCall: (LL(x|P_nonmember) - γ·LL(x|P_member)) / LL(x), prefixes from held-out "
            "records.",
            "Wang et al. 2024",
        ),
        Metric(
            "dc_pdd",
            True,
            "nats",
            "DC-PDD: mean over first token occurrences of min(p · log(1/f), a), f the held-out "
            "records' Laplace-smoothed token frequencies.",
            "Zhang et al. 2024",
        ),
        Metric(
            "held_out",
            None,
            "role",
            "The record was held out (`prefix`: a prefix shot; `frequency`: frequencies only) "
            "and scored by no score.",
        ),
        Metric(
            "pac",
            True,
            "nats",
            "Polarised augment calibration: mean polarised distance of the record's random-swap "
            "augmentations minus the record's own (the authors' PAC negated, as they rank it).",
            "Ye et al., ACL 2024",
        ),
        Metric(
            "neighbourhood",
            True,
            "nats/token",
            "Mean loss of the record's masked-LM word-swap neighbours minus the record's loss.",
            "Mattern et al., Findings of ACL 2023",
        ),
        CORPUS_COUNT_METRIC,
    ),
    plan=Lazy("worker.checks.lm.compute:plan_membership"),
    compute=Lazy("worker.checks.lm.compute:compute_membership"),
    summarize=Lazy("worker.checks.lm.compute:summarize_membership"),
    rank_score=lambda values, p: next(
        (values[key] for key in _rank_keys(p) if values.get(key) is not None), None
    ),
    rank_description="Min-K%++ at the first k (zlib, then loss, when it is not computed)",
    table_columns=lambda p: _membership_columns(p),
    validate=_validate_membership,
    fit=_fit_membership,
    check_record=read_record,
    summarize_reads_text=True,
)
