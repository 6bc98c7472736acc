"""Terminal views of the evidence: one run's report, and the runs of a DAG with their trend."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from recovery_provider.evidence.html import seconds
from recovery_provider.evidence.report import Report, Trend

_STYLE = {"met": "green", "success": "green", "ok": "green", "missed": "red", "failed": "red", "upstream_failed": "red",
          "partial": "yellow", "unknown": "yellow"}


def _styled(value: str | None) -> Text:
    return Text(value or "-", style=_STYLE.get(value or "", ""))


def timeline_lines(report: Report, width: int) -> list[str]:
    """A text Gantt of the tasks: '#' the critical path, '=' other work, '.' skipped."""
    bars = [b for b in report.tasks if b.kind not in ("control",)]
    total = max([b.offset + b.length for b in bars] + [1e-9])
    label_width = min(34, max((len(b.label) for b in bars), default=5))
    lines = []
    for bar in bars:
        first = min(width - 1, int(bar.offset / total * width))
        last = min(width - 1, max(first, int((bar.offset + bar.length) / total * width) - 1))
        cells = [" "] * width
        for column in range(first, last + 1):
            cells[column] = "#" if bar.critical else ("." if bar.state == "skipped" else "=")
        lines.append(f"{bar.label[:label_width]:<{label_width}} |{''.join(cells)}| {bar.state or '-'}")
    lines.append(f"{'':<{label_width}}  0{' ' * max(width - len(seconds(total)) - 1, 1)}{seconds(total)}")
    return lines


def print_report(console: Console, report: Report) -> None:
    console.print(Text.assemble(("Recovery report ", "bold"), (report.dag_id, "bold"), f"  run {report.run_id}"))
    head = Text.assemble("state ", _styled(report.state), "  outcome ", _styled(report.outcome or "unknown"))
    if report.dry_run:
        head.append("  (dry run)")
    console.print(head)
    table = Table("objective", "target", "achieved", "verdict", box=None)
    table.add_row("RTO (recovery time)", seconds(report.rto.target_seconds), seconds(report.rto.achieved_seconds),
                  _styled(report.rto.verdict))
    table.add_row("RPO (data age)", seconds(report.rpo.target_seconds), seconds(report.rpo.achieved_seconds),
                  _styled(report.rpo.verdict))
    if report.achieved_rpo is not None:
        rpo = report.achieved_rpo
        table.add_row("RPO (point in time: T - last restored commit)", seconds(rpo.target_seconds),
                      seconds(rpo.achieved_seconds), _styled(rpo.verdict))
    if report.restore_seconds is not None:
        table.add_row("restore (pgBackRest)", "", seconds(report.restore_seconds), "")
    table.add_row("planned" + (f" ({report.planned_scenario})" if report.planned_scenario else ""),
                  seconds(report.planned_seconds), "", "")
    if report.expected_seconds is not None:
        table.add_row("expected on this deployment", seconds(report.expected_seconds), "", "")
    console.print(table)
    if report.partial_phases:
        console.print(f"[yellow]PARTIAL[/]: failures accepted in {', '.join(report.partial_phases)}")
    if report.not_run_phases:
        console.print(f"not run (a phase before them failed): {', '.join(report.not_run_phases)}", markup=False)
    if len(report.attempts) > 1:
        attempts = Table("attempt", "from", "took", "state", "failed phases", "cleared by", "re-ran", box=None)
        for a in report.attempts:
            attempts.add_row(str(a.number) + (" (rebuilt)" if a.reconstructed else ""), f"+{seconds(a.offset)}",
                             seconds(a.length), _styled(a.state), ", ".join(a.failed_phases) or "-",
                             (a.cleared_by or "?") if a.number > 1 else "-",
                             f"{len(a.rerun)} task(s)" if a.number > 1 else "(first run)")
        console.print(attempts)
        if report.attempts[-1].state == "success":
            console.print(f"[green]RECOVERED[/] on attempt {report.attempts[-1].number}; achieved "
                          f"{seconds(report.rto.achieved_seconds)} from the first attempt's queue to the final end")
    if report.expected_basis:
        console.print(f"expected: calibrated from {report.expected_basis}", markup=False, style="dim")
    calibrated = report.expected_seconds is not None
    phases = Table("phase", "state", "start", "actual", "planned", *(["expected"] if calibrated else []), box=None)
    for bar in report.phases:
        planned = seconds(bar.planned[1] - bar.planned[0]) if bar.planned else "-"
        label = bar.label + (f" (attempt {bar.attempt})" if len(report.attempts) > 1 else "")
        phases.add_row(label, _styled("not run" if bar.state == "not_run" else bar.state), f"+{seconds(bar.offset)}",
                       seconds(bar.length), planned, *([seconds(bar.expected)] if calibrated else []))
    console.print(phases)
    for line in timeline_lines(report, max(20, min(60, console.width - 50))):
        console.print(line, markup=False, highlight=False)
    console.print("critical path: " + " -> ".join(report.critical_path), markup=False)
    for title, items in (("failures", report.failures), ("retried", report.retried), ("compensations", report.compensations),
                         ("backups restored", report.restores),
                         ("slow steps (past p95 x factor of their history)", [s.describe() for s in report.slow_steps]),
                         ("circuit breakers open", [b.describe() for b in report.breakers])):
        if items:
            console.print(f"{title}:", markup=False)
            for item in items:
                console.print(f"  {item}", markup=False)
    for approval in report.approvals:
        who = approval.responded_by or "timeout (default answer)"
        console.print(f"approval {approval.task_id}: {', '.join(approval.chosen or ['(none)'])} by {who} "
                      f"at {approval.responded_at or '-'}", markup=False)


def print_trend(console: Console, trend: Trend) -> None:
    console.print(Text.assemble(("Recovery runs of ", "bold"), (trend.dag_id, "bold"),
                                f"  RTO {seconds(trend.rto_seconds)}: met {trend.met}, missed {trend.missed}"))
    table = Table("run", "started", "state", "outcome", "achieved", "RTO", box=None)
    for point in reversed(trend.points):
        table.add_row(point.run_id + (" (dry run)" if point.dry_run else ""), str(point.start or "-"),
                      _styled(point.state), _styled(point.outcome), seconds(point.achieved_seconds),
                      _styled(point.rto_verdict))
    console.print(table)
    print_mttr(console, trend)
    if trend.change_seconds is not None:
        direction = "slower" if trend.change_seconds > 0 else "faster"
        console.print(f"latest {seconds(trend.latest_seconds)}: {seconds(abs(trend.change_seconds))} {direction} "
                      f"than the run before; best {seconds(trend.best_seconds)}, worst {seconds(trend.worst_seconds)}")


def print_mttr(console: Console, trend: Trend) -> None:
    """The incidents of the DAG and their mean time to recover, with its direction."""
    mttr = trend.mttr
    if mttr is None or not mttr.incidents:
        return
    line = f"MTTR {seconds(mttr.mttr_seconds)} over {mttr.resolved} resolved incident(s)"
    if mttr.unresolved:
        line += f", {mttr.unresolved} unresolved"
    if mttr.previous_seconds is not None:
        line += (f"; recent {seconds(mttr.recent_seconds)} against {seconds(mttr.previous_seconds)} before: "
                 f"{mttr.direction}")
    console.print(line, markup=False)
    table = Table("incident", "runs", "attempts", "started", "time to recover", box=None)
    for incident in reversed(mttr.incidents):
        took = seconds(incident.seconds) if incident.resolved else f"unresolved after {seconds(incident.seconds)}"
        table.add_row(incident.key + (" (drill)" if incident.drill else ""), str(len(incident.runs)),
                      str(incident.attempts), str(incident.start or "-"), took)
    console.print(table)
