"""What every family's report part is made of: charts as embedded Plotly JSON, tables, headline
figures, the shared look (layout, colours, histograms, image grids), and the ReportPart a
family declares. Pure: summaries in, figures out; no database, no torch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots


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


@dataclass(frozen=True)
class ReportPart:
    """What a family draws. Each function reads only the summary finalize stored."""

    # Per kind: its report section.
    sections: Mapping[str, Callable[[Mapping[str, Any]], Section]]
    # Per kind: the figures that answer "how much", for cards, lists, trends and compares.
    headlines: Mapping[str, Callable[[Mapping[str, Any]], list[Headline]]] = field(
        default_factory=dict
    )
    # Headline keys drawn across a model's versions, each with its fixed y range (or None).
    trend: Mapping[str, tuple[float, float] | None] = field(default_factory=dict)
    # Two audits' summaries and names in; (chart id, figure) overlays out.
    compare: (
        Callable[[Mapping[str, Any], Mapping[str, Any], Sequence[str]], list[tuple[str, Any]]]
        | None
    ) = None
