"""HTML pages of the evidence: a run's report (timeline, verdicts) and the runs of each DAG (trend).

Server-rendered with Jinja2 (autoescaped) and inline SVG: no JavaScript, so the page reads the same
in a browser, a screenshot or a saved file attached to an incident ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from recovery_provider.evidence.report import Report, Trend
from recovery_provider.spec.durations import format_duration

CHART_WIDTH = 720  # px of the time axis
ROW_HEIGHT = 18

_env = Environment(loader=PackageLoader("recovery_provider.evidence", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def seconds(value: float | None) -> str:
    return "-" if value is None else format_duration(round(value, 1)) if value >= 1 else f"{value:.1f}s"


_env.filters["seconds"] = seconds
_env.filters["urlpart"] = lambda value: quote(str(value), safe="")


def _span(report: Report) -> tuple[float, bool]:
    """Seconds the time axis covers, and whether the RTO line fits on it (a 10 m RTO must not
    squash a 20 s run into a few pixels: beyond twice the run, the RTO is stated, not drawn)."""
    span = max([b.offset + b.length for b in report.tasks + report.phases]
               + [b.planned[1] for b in report.phases if b.planned] + [report.rto.achieved_seconds or 0.0, 1.0])
    rto = report.rto.target_seconds
    if rto is not None and rto <= 2 * span:
        return max(span, rto) * 1.05, True
    return span, False


def report_html(report: Report, base: str = "") -> str:
    span, rto_on_chart = _span(report)
    scale = CHART_WIDTH / span
    rows: list[dict[str, Any]] = []
    for phase in report.phases:
        rows.append({"bar": phase, "indent": 0})
        rows += [{"bar": task, "indent": 1} for task in report.tasks if task.phase == phase.label]
    rows += [{"bar": task, "indent": 0} for task in report.tasks if task.phase is None]
    return _env.get_template("report.html").render(
        r=report, rows=rows, scale=scale, span=span, rto_on_chart=rto_on_chart, width=CHART_WIDTH,
        row_height=ROW_HEIGHT, base=base,
    )


def runs_html(trends: Sequence[Trend], base: str = "") -> str:
    charts = []
    for trend in trends:
        timed = [p for p in trend.points if p.achieved_seconds is not None]
        top = max([p.achieved_seconds or 0.0 for p in timed] + [trend.rto_seconds or 0.0, 1.0]) * 1.1
        step = CHART_WIDTH / max(len(timed) - 1, 1)
        points = [(i * step, 100 - 100 * (p.achieved_seconds or 0.0) / top, p) for i, p in enumerate(timed)]
        rto_y = 100 - 100 * trend.rto_seconds / top if trend.rto_seconds else None
        charts.append({"trend": trend, "points": points, "rto_y": rto_y})
    return _env.get_template("runs.html").render(charts=charts, width=CHART_WIDTH, base=base)
