"""Templates and formatting filters (security headers: app.security_headers, every response)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import plotly
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from core.models import real_value

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
STATIC_DIR = FRONTEND / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"

# The downloadable report runs its inline plotly.js when opened from disk; served, it is an
# attachment, and if a browser rendered it anyway nothing in it could run.
EXPORT_CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float) and real_value(value) is None:  # a sort key's "no value"
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2e}"


def percent(value: Any) -> str:
    return "—" if value is None else f"{value:.1%}"


TEMPLATES = Jinja2Templates(directory=str(FRONTEND / "templates"))
TEMPLATES.env.filters["number"] = number
TEMPLATES.env.filters["percent"] = percent


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    context.setdefault("signed_in", True)
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def render_export(context: dict[str, Any]) -> str:
    """The self-contained report.html: plotly.js, styles and scripts inline, no request out."""
    template = TEMPLATES.env.get_template("export.html")
    return template.render(
        **context,
        inline_css=(STATIC_DIR / "memaudit.css").read_text(),
        inline_js=(STATIC_DIR / "charts.js").read_text(),
        plotly_js=PLOTLY_JS.read_text(),
    )
