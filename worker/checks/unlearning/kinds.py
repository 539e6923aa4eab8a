"""The `unlearning` check kind: how close an unlearned classifier comes to one retrained
without the forget set (METRICS.md §5; Zhao & Triantafillou 2024).

The audited model is the unlearned one (θ_u). `original_model` (before unlearning) and
`retrained_model` (θ_r, trained from scratch without the forget set) are optional URIs, checked
against the model roots at submit time like the audited model. Records carry `split`
(`forget`, `retain` or `test`) and `label`.

Declared here for the registry; computed by `compute.py` in a worker, through the classifier
family's pass."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.check_kinds import CheckKind, CheckParams, Lazy, Metric, SubmitContext, TableColumn
from core.inspection.datasets import DatasetError, Record
from worker.checks.classifier.kinds import read_label
from worker.engine.unlearning import SPLITS

MODELS = ("unlearned", "original", "retrained")
STRATIFY_PROXIES = ("confidence", "max_conf", "neg_entropy", "bi_acc", "margin", "loss")


class UnlearningParams(CheckParams):
    original_model: str | None = Field(
        None, max_length=2048, description="The model before unlearning (path: or registry URI)"
    )
    retrained_model: str | None = Field(
        None,
        max_length=2048,
        description="θ_r, retrained from scratch without the forget set: needed for Tug-of-War",
    )
    stratify_by: str = Field(
        "confidence",
        description="Proxy (on the original model, else the unlearned one) that splits the "
        "forget set into low/mid/high memorization; `feldman_mem` reads that field",
    )
    rum_n_per_level: int = Field(
        1000, ge=1, le=1_000_000, description="Per level; fewer when the forget set is smaller"
    )

    @field_validator("stratify_by")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in (*STRATIFY_PROXIES, "feldman_mem"):
            raise ValueError(f"stratify_by must be one of {[*STRATIFY_PROXIES, 'feldman_mem']}")
        return value


def _validate(params: UnlearningParams, context: SubmitContext) -> None:
    for uri in (params.original_model, params.retrained_model):
        if uri is not None and context.resolve_model is not None:
            kind = context.resolve_model(uri)
            if kind not in (None, "classifier"):
                raise ValueError(f"{uri} is a {kind} model; unlearning compares classifiers")


def read_record(record: Record) -> str:
    """What the pass reads of each record besides the classifier's label: its split."""
    read_label(record)
    split = record.data.get("split")
    if split not in SPLITS:
        raise DatasetError(record.line_no, f"field 'split' must be one of {list(SPLITS)}")
    return split


UNLEARNING = CheckKind(
    name="unlearning",
    description="An unlearned classifier against the original and a retrained model: forget / "
    "retain / test accuracy, Tug-of-War, membership attacks on the forget set, and the forget "
    "set split by memorization level.",
    params_model=UnlearningParams,
    model_kinds=("classifier",),
    required_fields=("label", "split"),
    metrics=(
        Metric("correct", None, "bool", "The model predicts the record's label (per model)."),
        Metric("confidence", False, "probability", "p(y|x) under each model."),
        Metric("stratify_score", True, "", "mem_score of the stratifying proxy."),
    ),
    compute=Lazy("worker.checks.unlearning.compute:compute"),
    summarize=Lazy("worker.checks.unlearning.compute:summarize"),
    rank_score=lambda values, _p: values.get("stratify_score"),
    rank_description="most memorized first by the stratifying proxy",
    table_columns=lambda _p: [
        TableColumn("correct.unlearned", "unlearned correct", "bool"),
        TableColumn("correct.original", "original correct", "bool"),
        TableColumn("correct.retrained", "retrained correct", "bool"),
        TableColumn("stratify_score", "memorization", "number"),
    ],
    validate=_validate,
    check_record=read_record,
)
