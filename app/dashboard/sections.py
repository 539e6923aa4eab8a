"""The parts a report section is made of: charts as embedded Plotly JSON, and small tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go


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
