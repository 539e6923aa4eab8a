"""The interface every check kind declares, and a family of kinds with it.

A family (a folder under `worker/checks/`, or an outside package named in the `memaudit.checks`
entry-point group) declares its kinds here: params, metrics and table columns are plain values
the API reads; compute, summarise and the report part are named by reference ("module:name")
and imported only where they run (compute and passes in a worker, the report part in the
dashboard), so declaring a family never imports torch.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python

if TYPE_CHECKING:
    from core.dataset_profile import DatasetProfile


def check_target(target: str) -> str:
    """A reference is "module:attribute": refused when declared, not when first called."""
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return target


@cache
def resolve(target: str) -> Any:
    """What "module:attribute" names, imported once per process."""
    module, _, attribute = check_target(target).partition(":")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


class Lazy:
    """A function named by "module:attribute", imported on its first call."""

    def __init__(self, target: str) -> None:
        self.target = check_target(target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return resolve(self.target)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Lazy({self.target!r})"


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_more_memorized: bool | None  # None: descriptive, not a memorization score
    unit: str
    description: str
    citation: str = ""


@dataclass(frozen=True)
class TableColumn:
    """A per-sample value the records table shows and sorts by, in an indexed column."""

    key: str  # a dotted path into the values: `tf_match_fraction`, `log10_pz.topk40_T1`
    label: str
    format: str  # number | percent | bool | int


# In a kind's `model_kinds`: the kind runs with no model at all (`"model": null`), over the
# dataset alone; the other model kinds it lists are those it also accepts (a dataset kind then
# reads the model's tokenizer). A pass given no model sees a target of this kind.
NO_MODEL = "none"

MAX_TABLE_COLUMNS = 4  # sample_results has this many indexed sort columns


def metric_family(key: str) -> str:
    """The registry metric a per-sample key belongs to: `minkpp_0.2` -> `minkpp`,
    `log10_pz.greedy` -> `log10_pz`."""
    first = key.split(".")[0]
    return first.rsplit("_", 1)[0] if first.startswith("mink") else first


def value_at(values: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted path, or None where the path does not exist. Names hold dots of
    their own (`minkpp_0.2`, a scheme `t0.8`): a whole name is tried before it is split."""
    if not isinstance(values, Mapping):
        return None
    if key in values:
        return values[key]
    for at, char in enumerate(key):
        if char == "." and isinstance(values.get(key[:at]), Mapping):
            found = value_at(values[key[:at]], key[at + 1 :])
            if found is not None:
                return found
    return None


def known_names(values: Sequence[str], available: Sequence[str], what: str) -> list[str]:
    """The names, each once and in order, or a ValueError naming the unknown ones."""
    unknown = sorted(set(values) - set(available))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; available: {list(available)}")
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class SubmitContext:
    has_reference_model: bool
    # Checks a model URI named in params (roots, format) and gives its kind; None where
    # nothing can be checked (a policy's checks have no model yet).
    resolve_model: Callable[[str], str | None] | None = None
    # The audited model's URI, and the registry's earlier versions of it (oldest first); None
    # for a policy's checks, whose model is only known when a version arrives.
    model_uri: str | None = None
    earlier_versions: Callable[[str], list[str]] | None = None
    # Checks a dataset URI named in params (the team's uploads, its data folders); None where
    # nothing can be checked.
    resolve_dataset: Callable[[str], Any] | None = None
    # Finds an earlier audit named in params (one the caller's team can see) and says what it
    # ran and how it ended; None where nothing can be checked.
    resolve_audit: Callable[[str], Any] | None = None
    # Raises ValueError when the audited model and the reference model tokenize differently,
    # where their files tell; None where nothing can be checked.
    compare_tokenizers: Callable[[], None] | None = None


@dataclass(frozen=True)
class FitContext:
    """What a kind is shown of a policy's dataset before any model is known."""

    profile: DatasetProfile
    # The policy's thresholds on this kind's metrics, by full name (`membership.loss.auc`).
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataFit:
    """A kind's reading of a dataset: refusals (it cannot work on these records, whatever the
    model), each saying what to change; warnings (some records will not count)."""

    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class CheckParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _accept(_params: Any, _context: SubmitContext) -> None:
    return None


@dataclass(frozen=True)
class CheckKind:
    name: str
    description: str
    params_model: type[CheckParams]
    model_kinds: tuple[str, ...]
    required_fields: tuple[str, ...]
    metrics: tuple[Metric, ...]
    # Per batch: the family's pass calls compute with what it prepared (LMSamples after the
    # shared teacher-forced passes, a classifier context and labelled records, ...), the
    # params, and gets one dict of values per record.
    compute: Callable[..., list[dict[str, Any]]]
    # A summary may say, in plain words, which records the model could not score (`unfit`:
    # finalize copies it onto the audit's policy) and why its verdict metrics are missing
    # (`not_computed`: the reason an `unknown` verdict gives).
    summarize: Callable[[Sequence[dict[str, Any]], Any], dict[str, Any]]
    # Orders records "most memorized first" (higher = more); stored in an indexed column so a
    # million-row table sorts in the database. None sorts last.
    rank_score: Callable[[Mapping[str, Any], Any], float | None]
    rank_description: str
    # The values the records table shows, most useful first; `columns` keeps those that fit
    # the indexed sort columns.
    table_columns: Callable[[Any], list[TableColumn]]
    # Raises ValueError when params cannot work with this request (e.g. no reference model);
    # may return the params completed from the request (a retention chain read from the
    # registry), which are then what the audit stores and runs.
    validate: Callable[[Any, SubmitContext], Any] = _accept
    # Whether the kind can work on a policy's dataset (`core/policy_fit.py`): what a worker
    # would find wrong with the records, known before a model version arrives. Fields in
    # `required_fields` are checked record by record for every kind already.
    fit: Callable[[Any, FitContext], DataFit] | None = None
    # How a worker reads each record for this kind (`core.inspection.datasets.Record`),
    # raising DatasetError where it would fail the audit: the policy's dataset pass runs it.
    check_record: Callable[[Any], object] | None = None
    # What the family's pass must prepare for this kind (the LM family's passes), if anything.
    plan: Callable[[Any, SubmitContext], Any] | None = None
    # Facts about what the pass read as a whole (the model itself; a dataset kind's corpus),
    # not any record: computed once per shard and put in the summary under `facts_key` at
    # finalize.
    model_facts: Callable[[Any, Any], dict[str, Any]] | None = None
    facts_key: str = "model"
    # The summary needs each row's `detail` too (e.g. the activations behind `diversity`).
    summarize_reads_detail: bool = False
    # The summary needs each record's text too, under "text" (the membership kind's blind
    # baseline): finalize reads them from the audited dataset.
    summarize_reads_text: bool = False
    # The sample ids whose stored detail the summary shows (the most memorized images);
    # finalize attaches those details under "exemplars", reading no other row's detail.
    exemplars: Callable[[Mapping[str, Any]], list[str]] | None = None

    @property
    def runs_without_model(self) -> bool:
        return NO_MODEL in self.model_kinds

    def score_of(self, values: Mapping[str, Any], params: Any) -> float | None:
        score = self.rank_score(values, params)
        return float(score) if score is not None and math.isfinite(score) else None

    def columns(self, params: Any) -> list[TableColumn]:
        """The records table's columns: at most MAX_TABLE_COLUMNS, each an indexed sort key."""
        return self.table_columns(params)[:MAX_TABLE_COLUMNS]

    def sort_slot(self, params: Any, key: str) -> int | None:
        """Which `sort_<n>` column holds this table column (1-based); None if none does."""
        keys = [column.key for column in self.columns(params)]
        return keys.index(key) + 1 if key in keys else None

    def sort_values(self, values: Mapping[str, Any], params: Any) -> list[float | None]:
        """The table columns' values as floats (booleans as 0 and 1), padded to the maximum."""
        found: list[float | None] = []
        for column in self.columns(params):
            value = value_at(values, column.key)
            number = float(value) if isinstance(value, int | float) else None
            found.append(number if number is not None and math.isfinite(number) else None)
        return found + [None] * (MAX_TABLE_COLUMNS - len(found))

    def metric_description(self, name: str) -> str:
        """The registry's description of a per-sample key (`minkpp_0.2` is `minkpp`'s)."""
        family = metric_family(name)
        return next((m.description for m in self.metrics if m.name == family), "")

    def parse_params(self, raw: Mapping[str, Any]) -> CheckParams:
        return self.params_model.model_validate(dict(raw))

    def sortable_metric(self, name: str) -> bool:
        """Per-sample fields that order_by accepts: numeric metrics, `mink_0.2`, `n_min.x.y`."""
        return metric_family(name) in {m.name for m in self.metrics if m.unit != "bool"}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "description": self.description,
            "params_schema": self.params_model.model_json_schema(),
            # Params without a default (the training images of a diffusion check) are listed
            # as required instead.
            "defaults": to_jsonable_python(
                {
                    name: field.get_default(call_default_factory=True)
                    for name, field in self.params_model.model_fields.items()
                    if not field.is_required()
                }
            ),
            "required_params": [
                name
                for name, field in self.params_model.model_fields.items()
                if field.is_required()
            ],
            "model_kinds": list(self.model_kinds),
            "runs_without_model": self.runs_without_model,
            "required_fields": list(self.required_fields),
            "metrics": [m.__dict__ for m in self.metrics],
        }


@dataclass(frozen=True)
class Family:
    """A family of check kinds that share a pass over the model and a report part.

    `shard_pass` names the function a worker calls to open the pass over one shard (see
    `worker/checks/shard_pass.py`); families naming the same function share one pass.
    `report` names the family's ReportPart (`worker/checks/report_kit.py`): pure Plotly.
    """

    name: str
    kinds: tuple[CheckKind, ...]
    shard_pass: str
    report: str | None = None
    description: str = ""
    # Where the family's kinds are listed (`GET /v1/checks`, the registry's order): lower first.
    position: int = 100
    # Where it came from: "worker.checks.<name>", or the entry point's distribution.
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_target(self.shard_pass)
        if self.report is not None:
            check_target(self.report)


class UnknownCheck(KeyError):
    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"unknown check kind {name!r}; available: {', '.join(sorted(available))}")

    def __str__(self) -> str:
        return str(self.args[0])


class Catalog(Protocol):
    """What submission needs of the registry (`worker/checks/registry.py`), handed in by the
    caller so the core imports neither the API nor the worker."""

    def get_check(self, name: str) -> CheckKind: ...
