"""A check family from outside the project, written the way a user's package would be: its own
folder with a declaration, a pass, a compute and a report part, installed through the
`memaudit.checks` entry-point group (a dist-info beside it, as pip would leave)."""

from __future__ import annotations

from pathlib import Path

DECLARATION = """
from core.check_kinds import CheckKind, CheckParams, Family, Metric, TableColumn, Lazy


class ToyParams(CheckParams):
    lowercase: bool = False


TOY = CheckKind(
    name="{kind}",
    description="Tokens per record under the audited model's tokenizer (an outside kind).",
    params_model=ToyParams,
    model_kinds=("causal_lm",),
    required_fields=("text",),
    metrics=(Metric("n_tokens", None, "tokens", "Tokens of the record's text."),),
    compute=Lazy("{package}.compute:compute"),
    summarize=Lazy("{package}.compute:summarize"),
    rank_score=lambda values, _params: values.get("n_tokens"),
    rank_description="longest first",
    table_columns=lambda _params: [TableColumn("n_tokens", "tokens", "int")],
)

FAMILY = Family(
    name="{family}",
    kinds=(TOY,),
    shard_pass="{package}.compute:open_pass",
    report="{package}.report:REPORT",
)
"""

COMPUTE = """
from worker.checks.shard_pass import ShardPass, loaded_info


def compute(model, records, params):
    texts = [r.data["text"] for r in records]
    texts = [t.lower() for t in texts] if params.lowercase else texts
    return [{"n_tokens": len(model.encode(text))} for text in texts]


def summarize(values, _params):
    counts = [v["n_tokens"] for v in values]
    return {"n": len(counts), "mean_tokens": sum(counts) / len(counts), "max_tokens": max(counts)}


def open_pass(shard):
    model = shard.target.causal_lm()

    def run(batch):
        chunk = [shard.records[i] for i in batch]
        found = [kind.compute(model, chunk, params) for kind, params in shard.checks]
        return found, sum(row["n_tokens"] for row in found[0])

    return ShardPass(run, loaded_info(model))
"""

REPORT = """
import plotly.graph_objects as go

from worker.checks.report_kit import ReportPart, Section, charts


def toy_section(summary):
    figure = go.Figure(go.Bar(x=["mean", "max"], y=[summary["mean_tokens"], summary["max_tokens"]]))
    return Section(
        "KIND",
        "Toy tokens",
        charts("toy", [("counts", figure)]),
        [f"{summary['n']} records, at most {summary['max_tokens']} tokens."],
    )


REPORT = ReportPart(sections={"KIND": toy_section})
"""


def write_toy_folder(
    folder: Path, module: str, family: str = "toy", kind: str = "toy_tokens"
) -> None:
    """The family's folder, importable as `module` (a package under `site`, or a folder
    beside the built-in families under worker/checks/)."""
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(
        DECLARATION.format(package=module, family=family, kind=kind)
    )
    (folder / "compute.py").write_text(COMPUTE)
    (folder / "report.py").write_text(REPORT.replace("KIND", kind))


def write_toy_package(
    site: Path, package: str = "toykind", family: str = "toy", kind: str = "toy_tokens"
) -> Path:
    """The package under `site`, with a dist-info naming its family in `memaudit.checks`."""
    write_toy_folder(site / package, package, family, kind)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[memaudit.checks]\n{family} = {package}:FAMILY\n")
    return site
