"""HTML pages of the evidence: a run's report (timeline, verdicts) and the runs of each DAG (trend).

Server-rendered with Jinja2 (autoescaped) and inline SVG: no JavaScript, so the page reads the same
in a browser, a screenshot or a saved file attached to an incident ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape

from recovery_provider.evidence.report import Bar, Report, Trend
from recovery_provider.spec.durations import format_duration

CHART_WIDTH = 720  # px of the time axis
ROW_HEIGHT = 18

_env = Environment(loader=PackageLoader("recovery_provider.evidence", "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def seconds(value: float | None) -> str:
    return "-" if value is None else format_duration(round(value, 1)) if value >= 1 else f"{value:.1f}s"


_env.filters["seconds"] = seconds
_env.filters["stamp"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"
_env.filters["urlpart"] = lambda value: quote(str(value), safe="")


NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
LABELS = 250  # px of the label column left of the time axis
TOP = 18  # px above the rows: the attempts' names


@dataclass(frozen=True)
class Axis:
    """The timeline's scale: the run's own length (every attempt), not its objective's."""

    span: float  # seconds the axis covers
    rto_x: float | None  # px of the RTO line when it falls on the axis
    rto_off_scale: bool  # the RTO lies beyond the axis: an arrow at its right end says so
    ticks: list[tuple[float, str]]  # (px, label)

    def x(self, seconds: float) -> float:
        return LABELS + min(seconds, self.span) * CHART_WIDTH / self.span


def axis(report: Report) -> Axis:
    """The run sets the scale: its bars (every attempt) fill the width. Planned windows are drawn on
    the same scale when they end within twice the run, else cut at the edge; the RTO is drawn where
    it falls when it is within a quarter beyond the run, else marked off-scale. A 49 s run under a
    15 m RTO fills the width, with "RTO 15m ->" at its end."""
    bars = report.tasks + report.earlier_tasks + report.phases
    actual = max([b.offset + b.length for b in bars] + [a.offset + a.length for a in report.attempts]
                 + [report.rto.achieved_seconds or 0.0, 1.0])
    planned = max([b.planned[1] for b in report.phases if b.planned] + [0.0])
    span = max(actual, planned) if planned <= 2 * actual else actual
    rto = report.rto.target_seconds
    on_axis = rto is not None and rto <= 1.25 * span
    if on_axis and rto is not None:
        span = max(span, rto)
    span *= 1.05
    step = next((s for s in NICE_STEPS if span / s <= 8), NICE_STEPS[-1])
    ticks = [(LABELS + i * step * CHART_WIDTH / span, "0" if i == 0 else seconds(i * step))
             for i in range(int(span // step) + 1)]
    return Axis(span, LABELS + rto * CHART_WIDTH / span if on_axis and rto is not None else None,
                rto is not None and not on_axis, ticks)


def report_html(report: Report, base: str = "") -> str:
    scale = axis(report)
    earlier: dict[str, list[Bar]] = {}
    for bar in report.earlier_tasks:
        earlier.setdefault(bar.label, []).append(bar)
    phases: dict[str, list[Bar]] = {}
    for bar in report.phases:
        phases.setdefault(bar.label, []).append(bar)
    rows: list[dict[str, Any]] = []

    def task_row(task: Bar, indent: int) -> dict[str, Any]:
        return {"label": task.label, "kind": task.kind, "indent": indent, "bars": [*earlier.pop(task.label, []), task]}

    for label, bars in phases.items():
        rows.append({"label": label, "kind": "phase", "indent": 0, "bars": bars})
        rows += [task_row(task, 1) for task in report.tasks if task.phase == label]
    rows += [task_row(task, 0) for task in report.tasks if task.phase is None]
    rows += [{"label": label, "kind": "task", "indent": 0, "bars": bars} for label, bars in earlier.items()]
    return _env.get_template("report.html").render(
        r=report, rows=rows, axis=scale, width=CHART_WIDTH, labels=LABELS, top=TOP,
        row_height=ROW_HEIGHT, base=base, multi=len(report.attempts) > 1,
    )


def runs_html(trends: Sequence[Trend], base: str = "") -> str:
    charts = []
    for trend in trends:
        timed = [p for p in trend.points if p.achieved_seconds is not None]
        top = max([p.achieved_seconds or 0.0 for p in timed] + [trend.rto_seconds or 0.0, 1.0]) * 1.1
        step = CHART_WIDTH / max(len(timed) - 1, 1)
        points = [(i * step, 100 - 100 * (p.achieved_seconds or 0.0) / top, p) for i, p in enumerate(timed)]
        rto_y = 100 - 100 * trend.rto_seconds / top if trend.rto_seconds else None
        incidents = trend.mttr.incidents if trend.mttr else []
        mttr_top = max([i.seconds or 0.0 for i in incidents] + [1.0])
        charts.append({"trend": trend, "points": points, "rto_y": rto_y, "mttr_top": mttr_top})
    return _env.get_template("runs.html").render(charts=charts, width=CHART_WIDTH, base=base)
