"""What every family's report part is made of: charts as embedded Plotly JSON, tables, headline
figures, the verdict sentences (findings) at the top of a report, the shared look (layout,
colours, histograms, image grids), and the ReportPart a family declares. Pure: summaries in,
figures and sentences out; no database, no torch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from worker.engine.distributions import wilson_interval


@dataclass(frozen=True)
class Chart:
    id: str
    figure_json: str  # safe inside <script type="application/json">


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Section:
    kind: str
    title: str
    charts: list[Chart]
    notes: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def safe_json(value: Any) -> str:
    """JSON that cannot close the <script> element it is embedded in, whatever it holds."""
    return _script_safe(json.dumps(value))


def figure_json(figure: go.Figure) -> str:
    return _script_safe(figure.to_json())


def _script_safe(text: str) -> str:
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def charts(prefix: str, named: list[tuple[str, go.Figure | None]]) -> list[Chart]:
    return [
        Chart(f"{prefix}-{name}", figure_json(figure))
        for name, figure in named
        if figure is not None
    ]


def format_number(value: Any, digits: int = 4) -> str:
    """A table cell: an em dash for nothing, yes/no, thousands separators, 4 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@dataclass(frozen=True)
class Headline:
    key: str  # stable across audits: what compare and trend match on
    label: str
    value: float | None
    ci95: tuple[float | None, float | None] | None
    percent: bool
    higher_is_more_memorized: bool | None
    note: str = ""

    def formatted(self, value: float | None = None) -> str:
        value = self.value if value is None else value
        if value is None:
            return "n/a"
        return f"{value:.1%}" if self.percent else f"{value:.3f}"

    @property
    def ci_text(self) -> str:
        if not self.ci95 or None in self.ci95:
            return ""
        low, high = self.ci95
        return f"95% CI {self.formatted(low)} – {self.formatted(high)}"


MEMBER_COLOR = "#c2410c"  # training data: warm
NONMEMBER_COLOR = "#0f766e"  # held-out data: cool
ALL_COLOR = "#334e68"
GREEDY_COLOR = "#111827"
GROUP_COLORS = {"members": MEMBER_COLOR, "nonmembers": NONMEMBER_COLOR, "all": ALL_COLOR}
GROUP_NAMES = {"members": "members", "nonmembers": "non-members", "all": "all records"}


# One colour per p of the (n,p) grid, light to dark: a higher p is a stricter claim.
P_COLORS = ("#93c5fd", "#60a5fa", "#3b82f6", "#1d4ed8", "#1e3a8a", "#172554")


def layout(figure: go.Figure, title: str, **axes: Any) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        font={"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
        margin={"l": 56, "r": 16, "t": 48, "b": 48},
        height=340,
        legend={"orientation": "h", "y": -0.22, "x": 0},
        hovermode="closest",
        **axes,
    )
    return figure


def image_grid_figure(
    images: list[Any], titles: list[str], columns: int, title: str, row_height: int = 150
) -> go.Figure:
    """Greyscale images (2-D lists) in a grid, each under its title: dark is high."""
    rows = math.ceil(len(images) / columns)
    figure = make_subplots(
        rows, columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.12
    )
    for i, image in enumerate(images):
        figure.add_trace(
            go.Heatmap(
                z=image,
                colorscale="Greys",
                reversescale=True,
                showscale=False,
                hovertemplate="%{z:.2f}<extra></extra>",
            ),
            row=i // columns + 1,
            col=i % columns + 1,
        )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    figure.update_annotations(font={"size": 10})
    figure = layout(figure, title)
    figure.update_layout(height=row_height * rows + 80)
    return figure


def percent_axis(title: str) -> dict[str, Any]:
    return {"title": title, "tickformat": ".0%", "rangemode": "tozero"}


def _bars(histogram: Mapping[str, Any], groups: Sequence[str]) -> list[go.Bar]:
    edges = histogram["edges"]
    centres = [(a + b) / 2 for a, b in pairwise(edges)]
    width = edges[1] - edges[0] if len(edges) > 1 else 1.0
    return [
        go.Bar(
            x=centres,
            y=histogram["counts"][group],
            width=width,
            name=GROUP_NAMES[group],
            marker={"color": GROUP_COLORS[group], "line": {"width": 0}},
            opacity=0.65 if len(groups) > 1 else 0.9,
        )
        for group in groups
    ]


def groups_in(histogram: Mapping[str, Any]) -> list[str]:
    counts = histogram.get("counts", {})
    labelled = [g for g in ("members", "nonmembers") if g in counts]
    return labelled or [g for g in ("all",) if g in counts]


def histogram_figure(
    histogram: Mapping[str, Any], title: str, x_title: str, note: str = ""
) -> go.Figure | None:
    """Overlaid counts per group on shared bins; None when nothing was finite."""
    if not histogram.get("edges"):
        return None
    groups = groups_in(histogram)
    figure = go.Figure(_bars(histogram, groups))
    figure.update_layout(barmode="overlay", bargap=0)
    if note:
        figure.add_annotation(
            text=note, xref="paper", yref="paper", x=1, y=1.02, showarrow=False, xanchor="right"
        )
    return layout(figure, title, xaxis={"title": x_title}, yaxis={"title": "records"})


# Worst first: the order findings are drawn in and what a reader scans for.
RISK_LEVELS = ("high", "medium", "low", "none", "unknown")


@dataclass(frozen=True)
class Finding:
    """One check's verdict in words: what was found (numbers from the summary), how much risk it
    carries, the control it serves and what to do next."""

    kind: str
    text: str
    risk: str  # one of RISK_LEVELS; "unknown" where the check cannot grade a risk
    control: str
    next_step: str

    def __post_init__(self) -> None:
        if self.risk not in RISK_LEVELS:
            raise ValueError(f"risk must be one of {RISK_LEVELS}, got {self.risk!r}")

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "text": self.text,
            "risk": self.risk,
            "control": self.control,
            "next_step": self.next_step,
        }


def percent_text(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def ci_text(low: float | None, high: float | None) -> str:
    """`95% CI 1.7–5.2%` for an interval of proportions."""
    if low is None or high is None:
        return "no CI"
    return f"95% CI {100 * low:.1f}–{percent_text(high)}"


def counted(successes: int, n: int, noun: str) -> str:
    """`12 of 400 training records (3.0%, 95% CI 1.7–5.2%)`: a proportion with its Wilson
    interval, computed from the counts (never from a rounded rate)."""
    if n == 0:
        return f"0 {noun}"
    low, high = wilson_interval(successes, n)
    return f"{successes:,} of {n:,} {noun} ({percent_text(successes / n)}, {ci_text(low, high)})"


def count_of(rate: float | None, n: int) -> int:
    """The count behind a stored rate of n records (rates are k/n exactly)."""
    return 0 if rate is None or not n else round(rate * n)


def proportion_risk(successes: int, n: int, line: float = 0.01) -> str:
    """high when the CI's lower bound is above `line`, medium for any hit below that, none when
    the CI's upper bound is below `line`, low otherwise (no hit, but too few records to rule
    out `line`); unknown without records."""
    if n == 0:
        return "unknown"
    low, high = wilson_interval(successes, n)
    if low is not None and low > line:
        return "high"
    if successes > 0:
        return "medium"
    return "none" if high is not None and high < line else "low"


def interval_text(value: float | None, ci: Sequence[float | None] | None, digits: int = 2) -> str:
    """`0.97 (95% CI 0.95–0.99)`, or the value alone where no interval was computed."""
    if value is None:
        return "n/a"
    if not ci or len(ci) != 2 or None in ci:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} (95% CI {ci[0]:.{digits}f}–{ci[1]:.{digits}f})"


def percent_interval_text(value: float | None, ci: Sequence[float | None] | None) -> str:
    """`4.0% (95% CI 1.2–9.0%)`."""
    if value is None:
        return "n/a"
    if not ci or len(ci) != 2 or None in ci:
        return percent_text(value)
    return f"{percent_text(value)} ({ci_text(ci[0], ci[1])})"


# The controls a finding serves, named modestly: what the check gives evidence for, not a claim
# of compliance. NIST AI RMF 1.0 subcategories: MEASURE 2.5 validity and reliability, 2.7
# security and resilience, 2.10 privacy risk; GOVERN 6.1 third-party rights (IP).
CONTROL_MEMORISATION = (
    "training-data memorisation and leakage (NIST AI RMF MEASURE 2.7 and 2.10; "
    "EU AI Act Art. 15, confidentiality attacks on high-risk systems)"
)
CONTROL_VALIDITY = "evaluation validity: reasoning rather than recall (NIST AI RMF MEASURE 2.5)"
CONTROL_UNLEARNING = (
    "removal of data on request: machine unlearning (GDPR Art. 17 erasure; "
    "NIST AI RMF MEASURE 2.10)"
)
CONTROL_REPLICATION = (
    "replication of training images: privacy and third-party rights "
    "(NIST AI RMF MEASURE 2.10, GOVERN 6.1)"
)


@dataclass(frozen=True)
class ReportPart:
    """What a family draws. Each function reads only the summary finalize stored."""

    # Per kind: its report section.
    sections: Mapping[str, Callable[[Mapping[str, Any]], Section]]
    # Per kind: the figures that answer "how much", for cards, lists, trends and compares.
    headlines: Mapping[str, Callable[[Mapping[str, Any]], list[Headline]]] = field(
        default_factory=dict
    )
    # Per kind: its finding, from (summary, params, row counts {all, true, false}).
    findings: Mapping[str, Callable[[Mapping[str, Any], Any, Mapping[str, int]], Finding]] = field(
        default_factory=dict
    )
    # Headline keys drawn across a model's versions, each with its fixed y range (or None).
    trend: Mapping[str, tuple[float, float] | None] = field(default_factory=dict)
    # Two audits' summaries and names in; (chart id, figure) overlays out.
    compare: (
        Callable[[Mapping[str, Any], Mapping[str, Any], Sequence[str]], list[tuple[str, Any]]]
        | None
    ) = None
