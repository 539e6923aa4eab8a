"""The reasoning kinds, declared for the registry: `kk_memorization` (METRICS.md §6),
`retention` (§7) and `wilt` (§10). They read what a causal LM (or, for `wilt`, a chat
endpoint) answers; their computation is `kk.py`, `retention.py` and `wilt.py`, run in a worker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.check_kinds import (
    CheckKind,
    CheckParams,
    Lazy,
    Metric,
    SubmitContext,
    TableColumn,
    known_names,
)
from worker.engine.reasoning.kk_puzzles import PERTURBATIONS
from worker.engine.wilt_protocol import ProtocolParams

# ---- kk_memorization ---------------------------------------------------------------------


class KKParams(CheckParams):
    perturbations: list[str] = Field(default_factory=lambda: list(PERTURBATIONS), min_length=1)
    max_new_tokens: int = Field(2048, ge=1, le=8192)
    chat_template: Literal["auto", "never"] = "auto"

    @field_validator("perturbations")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        return known_names(values, PERTURBATIONS, "perturbations")


KK_MEMORIZATION = CheckKind(
    name="kk_memorization",
    description="Knights-and-Knaves reasoning memorization (Xie et al. 2024): accuracy, "
    "consistency under six perturbations and LiMem, by perturbation, people and split.",
    params_model=KKParams,
    model_kinds=("causal_lm",),
    required_fields=("quiz", "solution_text", "n_people"),
    metrics=(
        Metric("correct_orig", None, "bool", "The original puzzle is solved (reference judge)."),
        Metric("correct_ratio", None, "ratio", "Share of the gold conditions found."),
        Metric(
            "memorized_any",
            True,
            "bool",
            "Solved as seen but not once its logic changed.",
            "Xie et al. 2024",
        ),
        Metric("limem", True, "ratio", "Acc · (1 − CR), per perturbation type.", "Xie et al. 2024"),
    ),
    compute=Lazy("worker.checks.reasoning.kk:compute"),
    summarize=Lazy("worker.checks.reasoning.kk:summarize"),
    rank_score=lambda values, _p: float(values["memorized_any"]) + 0.5 * values["correct_orig"],
    rank_description="solved only in its original form first, then solved",
    table_columns=lambda _p: [
        TableColumn("correct_orig", "original", "bool"),
        TableColumn("correct_pert.perturbed_statement", "new statement", "bool"),
        TableColumn("correct_pert.perturbed_leaf", "new leaf", "bool"),
        TableColumn("correct_ratio", "conditions found", "percent"),
    ],
)


# ---- retention ---------------------------------------------------------------------------


class RetentionParams(CheckParams):
    versions: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Earlier versions, oldest first; the audited model is the last version",
    )
    versions_from: Literal["list", "registry", "previous"] = Field(
        "list",
        description="list: `versions` as given; registry: every earlier registered version of "
        "the audited MLflow model; previous: the one registered just before it. Read at submit "
        "time into `versions`, so a policy compares each new version with the last.",
    )
    max_new_tokens: int = Field(32, ge=1, le=4096)
    comparison: Literal["auto", "exact", "webqa", "gsm8k"] = "auto"
    chat_template: Literal["auto", "never"] = "auto"


def _validate_retention(params: RetentionParams, context: SubmitContext) -> RetentionParams | None:
    if params.versions_from != "list":
        if params.versions:
            raise ValueError(f"versions_from={params.versions_from} reads the versions: list none")
        if context.model_uri is None or context.earlier_versions is None:
            return None  # a policy's checks: read when a version arrives
        earlier = context.earlier_versions(context.model_uri)
        chain = earlier[-1:] if params.versions_from == "previous" else earlier
        # The first registered version has nothing before it: its accuracy alone is reported.
        return params.model_copy(update={"versions": chain})
    if not params.versions:
        raise ValueError("versions must name at least one earlier version of the model")
    for uri in params.versions:
        if context.resolve_model is not None:
            kind = context.resolve_model(uri)
            if kind not in (None, "causal_lm"):
                raise ValueError(f"{uri} is a {kind} model; retention compares causal LMs")
    return None


RETENTION = CheckKind(
    name="retention",
    description="Factoid retention along a chain of model versions (Chen et al. 2024): "
    "exact-match accuracy per version, retention and forgetting, and where each fact was lost.",
    params_model=RetentionParams,
    model_kinds=("causal_lm",),
    required_fields=("question", "answer"),
    metrics=(
        Metric("correct", None, "bool", "The version answers the factoid (per version)."),
        Metric("transition", None, "", "retained, forgotten, recovered or never, first to last."),
    ),
    compute=Lazy("worker.checks.reasoning.retention:compute"),
    summarize=Lazy("worker.checks.reasoning.retention:summarize"),
    rank_score=lambda values, _p: 1.0 if values.get("lost_at") else 0.0,
    rank_description="forgotten factoids first",
    table_columns=lambda _p: [],
    validate=_validate_retention,
)


# ---- wilt --------------------------------------------------------------------------------


class WiltParams(CheckParams):
    max_tests: int = Field(30, ge=1, le=200)
    mulligans: int = Field(1, ge=0, le=5)
    max_turns: int = Field(35, ge=2, le=250)
    n_random: int = Field(10_000, ge=1, le=200_000)
    seed: int = Field(0, ge=0)
    eval_cpu_s: float = Field(5.0, gt=0, le=120)
    max_new_tokens: int = Field(1024, ge=16, le=16_384, description="per model turn")

    @model_validator(mode="after")
    def _room_to_guess(self) -> WiltParams:
        if self.max_turns <= self.max_tests:
            raise ValueError("max_turns must exceed max_tests, or no guess can follow the tests")
        return self

    def protocol(self) -> ProtocolParams:
        return ProtocolParams(
            max_tests=self.max_tests,
            mulligans=self.mulligans,
            max_turns=self.max_turns,
            n_random=self.n_random,
            seed=self.seed,
            eval_cpu_s=self.eval_cpu_s,
        )


WILT = CheckKind(
    name="wilt",
    description="WILT (Banatt et al. 2024): a memorization-robust inductive-logic benchmark; the "
    "model probes a hidden rule up to 30 times, then guesses it as a lambda.",
    params_model=WiltParams,
    model_kinds=("causal_lm", "chat_endpoint"),
    required_fields=("rule",),
    metrics=(
        Metric("correct", None, "bool", "The guess equals the rule on every test point."),
        Metric("points", None, "", "1000 + 100·(1 − tests/30) if correct, else the pity score."),
        Metric("tests_used", None, "", "Probes before the final guess."),
        Metric("grid_agreement", None, "ratio", "Share of the 41³ grid where the guess agrees."),
    ),
    compute=Lazy("worker.checks.reasoning.wilt:compute"),
    summarize=Lazy("worker.checks.reasoning.wilt:summarize"),
    # Failed rules first: where the model's reasoning broke down.
    rank_score=lambda values, _p: 1.0 - float(values["correct"]),
    rank_description="unsolved rules first",
    table_columns=lambda _p: [
        TableColumn("correct", "solved", "bool"),
        TableColumn("points", "points", "int"),
        TableColumn("tests_used", "tests", "int"),
        TableColumn("grid_agreement", "grid agreement", "percent"),
    ],
)
