"""The `approximate` LM kind declared for the registry: approximate memorization (Ippolito et
al. 2023, "Preventing verbatim memorization in language models gives a false sense of
privacy"). The model generates each record's suffix from its prefix under each scheme, and the
generation is compared with the true suffix on token ids (`worker/engine/similarity.py`).

Its computation is `approximate_compute.py`, run in a worker; this module imports no torch.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from core.check_kinds import CheckKind, CheckParams, Lazy, Metric, TableColumn
from worker.checks.lm.kinds import MAX_WINDOW_TOKENS, OFFSET_FIELD, SchemeParams, fit_windows
from worker.checks.lm.labels import read_record
from worker.engine.schemes import Scheme

# BLEU >= 0.75 is Ippolito et al.'s criterion for approximate memorization; ROUGE-L and edit
# similarity take the same bar (a 50-token suffix with one token changed scores about 0.98 on
# both, unrelated text near 0); the longest common substring is off by default (it measures one
# run, not the whole suffix).


# Generated tokens per record, suffix_tokens x generations over all schemes (one for greedy,
# `samples` for each sampled scheme): each is generated and compared with the suffix (ROUGE-L
# and edit distance cost |g|·|s|/64 bit-parallel steps), so the product is what one record
# costs. 2**18 holds a full 131,072-token suffix greedy and sampled once, or the defaults 580
# times over.
MAX_GENERATED_TOKENS = 262_144


def _unit_field(default: float | None, what: str) -> float | None:
    return Field(default, ge=0, le=1, description=f"{what}; null turns this criterion off")


class ApproxThresholds(CheckParams):
    bleu: float | None = _unit_field(0.75, "BLEU-4, smoothed (Ippolito et al. 2023: 0.75)")
    rouge_l: float | None = _unit_field(0.75, "ROUGE-L F1 on token ids")
    edit_similarity: float | None = _unit_field(0.75, "1 - Levenshtein / max length")
    lcs_substring_fraction: float | None = _unit_field(
        None, "longest common substring as a fraction of the suffix"
    )

    def active(self) -> dict[str, float]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class ApproximateParams(CheckParams):
    prefix_tokens: int = Field(
        50, ge=1, le=MAX_WINDOW_TOKENS, description="Prefix the model is prompted with"
    )
    suffix_tokens: int = Field(
        50, ge=1, le=MAX_WINDOW_TOKENS, description="Suffix generated and compared"
    )
    offset: int = OFFSET_FIELD
    schemes: list[SchemeParams] = Field(
        default_factory=lambda: [SchemeParams(temperature=0), SchemeParams(top_k=40)],
        min_length=1,
        max_length=8,
        description="Decoding schemes: greedy and top-k 40 at T=1",
    )
    samples: int = Field(
        8, ge=1, le=256, description="Generations per record under each sampled scheme"
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seeds every record's draws, so a re-run gives the same samples",
    )
    thresholds: ApproxThresholds = Field(
        default_factory=ApproxThresholds,
        description="A record is approximately extracted under a scheme when any metric "
        "reaches its threshold",
    )

    @field_validator("thresholds")
    @classmethod
    def _some_threshold(cls, value: ApproxThresholds) -> ApproxThresholds:
        if not value.active():
            raise ValueError("at least one threshold must be set to say what counts as extracted")
        return value

    @model_validator(mode="after")
    def _bounded_work(self) -> ApproximateParams:
        generations = self.generations()
        if self.suffix_tokens * generations > MAX_GENERATED_TOKENS:
            raise ValueError(
                f"suffix_tokens x generations = {self.suffix_tokens:,} x {generations:,} = "
                f"{self.suffix_tokens * generations:,} generated tokens per record, past the "
                f"budget of {MAX_GENERATED_TOKENS:,} (generations: 1 per greedy scheme and "
                "`samples` per sampled one): lower suffix_tokens, samples or the schemes"
            )
        return self

    def generations(self) -> int:
        """Generations per record over all schemes."""
        return sum(1 if s.greedy else self.samples for s in self.scheme_list())

    def scheme_list(self) -> tuple[Scheme, ...]:
        unique: dict[str, Scheme] = {}
        for params in self.schemes:
            unique.setdefault(params.scheme().name, params.scheme())
        return tuple(unique.values())


def _columns(params: ApproximateParams) -> list[TableColumn]:
    columns = [TableColumn("approx_extracted", "approx.", "bool")]
    for scheme in params.scheme_list():
        columns += [
            TableColumn(f"bleu.{scheme.name}", f"BLEU {scheme.name}", "number"),
            TableColumn(f"rouge_l.{scheme.name}", f"ROUGE-L {scheme.name}", "number"),
        ]
    columns.append(TableColumn("verbatim_extracted", "verbatim", "bool"))
    return columns


def _rank(values: dict, _params: ApproximateParams) -> float | None:
    found = [v for v in (values.get("rouge_l") or {}).values() if v is not None]
    return max(found, default=None)


PER_SCHEME = "per scheme; a sampled scheme's best sample (its mean under `<metric>_mean`)"

APPROXIMATE = CheckKind(
    name="approximate",
    description="Approximate memorization: the suffix the model generates from each record's "
    "prefix, greedy and sampled, against the true suffix by ROUGE-L, longest common substring, "
    "edit similarity and BLEU on token ids.",
    params_model=ApproximateParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(
        Metric(
            "approx_extracted",
            True,
            "bool",
            "Some scheme's generation reaches a metric's threshold.",
            "Ippolito et al. 2023",
        ),
        Metric(
            "verbatim_extracted",
            True,
            "bool",
            "Some scheme's generation equals the suffix token for token.",
            "Carlini et al. 2022",
        ),
        Metric("rouge_l", True, "F1", f"LCS-based F1 on token ids, {PER_SCHEME}."),
        Metric("bleu", True, "score", f"BLEU-4, Chen & Cherry method-1 smoothing, {PER_SCHEME}."),
        Metric("edit_similarity", True, "fraction", f"1 - Levenshtein / max length, {PER_SCHEME}."),
        Metric(
            "lcs_substring",
            True,
            "tokens",
            f"Longest contiguous run shared with the suffix, {PER_SCHEME}.",
        ),
        Metric(
            "lcs_substring_fraction",
            True,
            "fraction",
            f"The longest common substring over the suffix length, {PER_SCHEME}.",
        ),
        Metric(
            "spans",
            None,
            "token ranges",
            "Per scheme, [start, end) ranges of the true suffix an LCS alignment with the "
            "best generation reproduces.",
        ),
    ),
    plan=Lazy("worker.checks.lm.approximate_compute:plan_approximate"),
    compute=Lazy("worker.checks.lm.approximate_compute:compute_approximate"),
    summarize=Lazy("worker.checks.lm.approximate_compute:summarize_approximate"),
    rank_score=_rank,
    rank_description="ROUGE-L of the closest generation across schemes (1: reproduced)",
    table_columns=lambda p: _columns(p),
    # A record needs offset+prefix+suffix tokens for its window, as extraction's do.
    fit=fit_windows,
    check_record=read_record,
)
