"""The registry of check kinds: one entry per kind, with its params, metrics and functions.

The API validates `params` here, `/v1/checks` documents from here, the dashboard labels charts
from here, and the worker computes from here: one source of truth per metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from worker.engine.loss import sample_loss, summarize_loss
from worker.engine.token_stats import TokenStats


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_more_memorized: bool | None  # None: descriptive, not a memorization score
    unit: str
    description: str
    citation: str = ""


@dataclass(frozen=True)
class LMSample:
    """One record as an LM check sees it, after the shared teacher-forced pass."""

    sample_id: str
    text: str
    member: bool | None
    duplicates: int | None
    stats: TokenStats


class CheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class CheckKind:
    name: str
    description: str
    params_model: type[CheckParams]
    model_kinds: tuple[str, ...]
    required_fields: tuple[str, ...]
    metrics: tuple[Metric, ...]
    compute: Callable[[Sequence[LMSample], Any], list[dict[str, Any]]]
    summarize: Callable[[Sequence[dict[str, Any]], Any], dict[str, Any]]

    def parse_params(self, raw: Mapping[str, Any]) -> CheckParams:
        return self.params_model.model_validate(dict(raw))

    def numeric_metric_names(self) -> set[str]:
        return {m.name for m in self.metrics if m.unit != "bool"}

    def describe(self) -> dict[str, Any]:
        schema = self.params_model.model_json_schema()
        defaults = self.params_model().model_dump(mode="json")
        return {
            "kind": self.name,
            "description": self.description,
            "params_schema": schema,
            "defaults": defaults,
            "model_kinds": list(self.model_kinds),
            "required_fields": list(self.required_fields),
            "metrics": [m.__dict__ for m in self.metrics],
        }


class UnknownCheck(KeyError):
    def __init__(self, name: str) -> None:
        self.name = name
        available = ", ".join(sorted(CHECKS))
        super().__init__(f"unknown check kind {name!r}; available: {available}")

    def __str__(self) -> str:
        return str(self.args[0])


# ---- loss --------------------------------------------------------------------------------


class LossParams(CheckParams):
    max_tokens: int | None = Field(
        None,
        ge=2,
        description="Truncate longer texts (flagged `truncated`); default: model context",
    )


def _with_labels(sample: LMSample, values: dict[str, Any]) -> dict[str, Any]:
    if sample.member is not None:
        values["member"] = sample.member
    if sample.duplicates is not None:
        values["duplicates"] = sample.duplicates
    return values


def _compute_loss(samples: Sequence[LMSample], _params: LossParams) -> list[dict[str, Any]]:
    return [_with_labels(s, sample_loss(s.stats, len(s.text.encode("utf-8")))) for s in samples]


def _summarize_loss(values: Sequence[dict[str, Any]], _params: LossParams) -> dict[str, Any]:
    return summarize_loss(values)


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
    compute=_compute_loss,
    summarize=_summarize_loss,
)

CHECKS: Mapping[str, CheckKind] = MappingProxyType({check.name: check for check in (LOSS,)})


def get_check(name: str) -> CheckKind:
    try:
        return CHECKS[name]
    except KeyError:
        raise UnknownCheck(name) from None
