"""What the CLI shows: rich tables and a text Gantt for people, plain dicts for --json."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from recovery_provider.check import CheckedSpec
from recovery_provider.plan.estimate import Estimate, Scenario, ScheduledTask
from recovery_provider.plan.model import Plan, PlanAction, PlanPhase, PlanStep
from recovery_provider.spec.diagnostics import Diagnostic
from recovery_provider.spec.durations import format_duration as fmt

_STYLE = {"error": "bold red", "warning": "yellow"}


def print_diagnostics(console: Console, diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        where = f"{d.location}: " if d.location else ""
        console.print(Text.assemble(where, (d.severity, _STYLE[d.severity]), f": {d.message} ", (f"[{d.code}]", "dim")), soft_wrap=True)


def print_validation(console: Console, results: list[CheckedSpec], missing: list[Path], strict: bool) -> None:
    for path in missing:
        console.print(Text.assemble(f"{path}: ", ("error", _STYLE["error"]), ": no such file or folder"))
    for result in results:
        print_diagnostics(console, result.diagnostics)
    if not results and not missing:
        console.print(Text.assemble(("error", _STYLE["error"]), ": no spec files (*.yaml, *.yml) found"))
        return
    bad = [r for r in results if r.errors or (strict and r.warnings)]
    errors = sum(len(r.errors) for r in results)
    warnings = sum(len(r.warnings) for r in results)
    verdict = Text("OK", "bold green") if not bad and not missing else Text("FAILED", "bold red")
    console.print(Text.assemble(
        verdict, f"  {len(results)} spec{'s' * (len(results) != 1)}: {len(results) - len(bad)} valid, {len(bad)} invalid; "
        f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}",
    ))


def _verdict_text(estimate: Estimate) -> Text:
    if estimate.rto is None:
        return Text("no RTO set", "dim")
    margin = estimate.rto - estimate.worst.planned
    if estimate.worst.planned <= estimate.rto:
        return Text(f"meets the RTO of {fmt(estimate.rto)} ({fmt(margin)} to spare)", "bold green")
    return Text(f"EXCEEDS the RTO of {fmt(estimate.rto)} by {fmt(-margin)}", "bold red")


def _phase_summary(phase: PlanPhase) -> str:
    if phase.kind == "branch":
        return ", ".join(f"{c.target} (otherwise)" if c.condition is None else c.target for c in phase.choices)
    if phase.kind == "approval" and phase.approval is not None:
        timeout = f", timeout {fmt(phase.approval.timeout)} -> {phase.approval.on_timeout}" if phase.approval.timeout else ", no timeout"
        return f"{phase.approval.subject!r}{timeout}"
    text = ", ".join(s.id for s in phase.steps)
    if phase.fan_out is not None:
        count = f"{phase.fan_out.count}" if phase.fan_out.count_known else f"~{phase.fan_out.count}?"
        cap = f", max {phase.fan_out.max_parallel} at once" if phase.fan_out.max_parallel else ""
        text = f"{count} targets x ({text}){cap}"
        if phase.waves is not None:
            text += f", waves of {phase.waves.size} ({phase.waves.wave_count}), pause {fmt(phase.waves.pause)}"
    return text


def print_plan(console: Console, plan: Plan, estimate: Estimate, diagnostics: list[Diagnostic], width: int,
               calibrated: Estimate | None = None) -> None:
    """The plan; with ``calibrated`` (``--calibrate``) also what to expect on this deployment."""
    spec = plan.spec
    objectives = ", ".join(f"{k.upper()} {fmt(v)}" for k, v in (("rto", spec.objectives.rto), ("rpo", spec.objectives.rpo)) if v)
    console.print(Text.assemble(("Recovery ", "bold"), (plan.id, "bold cyan"), f"  {spec.description}"))
    console.print(Text(f"schedule: {spec.schedule or 'manual'}   objectives: {objectives or 'none'}", "dim"))

    worst = estimate.worst
    phases = Table(title="Phases", title_justify="left", show_lines=False)
    expected = calibrated.worst if calibrated is not None else None
    for column in ("phase", "kind", "after", "work", "on failure", "planned window", *(["expected here"] if expected else [])):
        phases.add_column(column, overflow="fold")
    for phase in plan.phases:
        policy = phase.on_failure.describe() if phase.kind not in ("branch", "approval") else ""
        windows = [_window(s, phase.id) for s in (worst, *([expected] if expected else []))]
        phases.add_row(phase.id, phase.kind, ", ".join(phase.upstream) or "-", _phase_summary(phase), policy, *windows)
    if plan.finally_steps:
        phases.add_row("finally", "always", ", ".join(plan.leaves), ", ".join(s.id for s in plan.finally_steps), "", "",
                       *([""] if expected else []))
    console.print(phases)

    numbers = Table(title="Estimate", title_justify="left")
    for column in ("path", "sequential (sum)", "critical path", "planned (caps, waves)", "speed-up", *(["expected here"] if expected else [])):
        numbers.add_column(column, justify="right" if column != "path" else "left")
    for position, scenario in enumerate(estimate.scenarios):
        speedup = f"{scenario.sequential / scenario.planned:.1f}x" if scenario.planned else "-"
        style = "bold" if scenario is worst and len(estimate.scenarios) > 1 else ""
        here = [fmt(calibrated.scenarios[position].planned)] if calibrated is not None else []
        numbers.add_row(scenario.label, fmt(scenario.sequential), fmt(scenario.critical), fmt(scenario.planned), speedup, *here,
                        style=style)
    console.print(numbers)
    console.print(Text.assemble("verdict (worst path): ", _verdict_text(estimate)))
    if calibrated is not None:
        print_calibrated(console, estimate, calibrated)
    console.print(Text.assemble(("critical path: ", "bold"), " -> ".join(fold_path(worst.critical_path)) or "-"), soft_wrap=True)
    for bottleneck in estimate.bottlenecks:
        console.print(f"  lifting {bottleneck.name} would plan {fmt(bottleneck.planned_without)} (saves {fmt(bottleneck.saves)})")
    for note in estimate.assumptions:
        console.print(Text(f"note: {note}", "dim"), soft_wrap=True)
    console.print()
    console.print(Text(f"Gantt ({worst.label})", "bold"))
    for line in gantt_lines(worst, width):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if diagnostics:
        console.print()
        print_diagnostics(console, diagnostics)


def _window(scenario: Scenario, phase_id: str) -> str:
    window = scenario.phase_windows.get(phase_id)
    return f"{fmt(window[0])} - {fmt(window[1])}" if window else "(not on this path)"


def print_calibrated(console: Console, estimate: Estimate, calibrated: Estimate) -> None:
    """'expected on this deployment: ...' beside the spec's own figure, and what the figure rests on."""
    spec, here = estimate.worst.planned, calibrated.worst.planned
    change = f", {here / spec - 1:+.0%}" if spec else ""
    shown = f"{here:.1f}s" if here < 60 else fmt(round(here))
    console.print(Text.assemble(("expected on this deployment: ", "bold"), (shown, "bold"),
                                f" (the spec's own estimate: {fmt(spec)}{change}); ", _verdict_text(calibrated)), soft_wrap=True)
    if calibrated.calibration is not None:
        for line in calibrated.calibration.describe():
            console.print(Text(f"calibration: {line}", "dim"), soft_wrap=True)


def calibrated_json(calibrated: Estimate | None) -> dict[str, Any] | None:
    """The calibrated estimate for --json: its scenarios and the figures it used."""
    if calibrated is None or calibrated.calibration is None:
        return None
    found = plan_json_estimate(calibrated)
    found["calibration"] = asdict(calibrated.calibration)
    return found


def wide_console(**kwargs: Any) -> Console:
    """A console that does not squeeze tables into 80 columns when stdout is a pipe or a file."""
    console = Console(highlight=False, **kwargs)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=120, **kwargs)
    return console


def fold_path(labels: Iterable[str], keep: int = 3) -> list[str]:
    """Fold long runs of one phase (waves, big chains) into 'first ... last (N tasks)'."""
    runs: list[list[str]] = []
    for label in labels:
        if runs and runs[-1][0].split(".")[0] == label.split(".")[0]:
            runs[-1].append(label)
        else:
            runs.append([label])
    folded: list[str] = []
    for run in runs:
        folded += run if len(run) <= keep else [f"{run[0]} ... {run[-1]} ({len(run)} tasks)"]
    return folded


def gantt_lines(scenario: Scenario, width: int) -> list[str]:
    """One row per phase and per step (targets and waves folded into the step's row)."""
    total = max(scenario.planned, 1e-9)
    rows: dict[str, list[ScheduledTask]] = {}
    for task in scenario.tasks:
        if task.kind in ("gate",):
            continue
        phase = task.phase_id or "finally"
        rows.setdefault(phase, []).append(task)
        if task.step_id and task.phase_id:
            rows.setdefault(f"  {task.step_id}", []).append(task)
        elif task.kind in ("health", "pause"):
            rows.setdefault(f"  ({task.kind})", []).append(task)
    label_width = min(28, max((len(k) for k in rows), default=5))
    lines = []
    for name, tasks in rows.items():
        cells = [" "] * width
        for task in tasks:
            first = int(task.start / total * width)
            last = max(first, int(task.end / total * width) - (1 if task.end > task.start else 0))
            char = "░" if task.kind in ("pause", "approval") else "█"
            for column in range(min(first, width - 1), min(last, width - 1) + 1):
                if cells[column] != "█":
                    cells[column] = char
        start, end = min(t.start for t in tasks), max(t.end for t in tasks)
        lines.append(f"{name[:label_width]:<{label_width}} |{''.join(cells)}| {fmt(start)}-{fmt(end)}")
    lines.append(f"{'':<{label_width}}  0{' ' * (width - len(fmt(total)) - 1)}{fmt(total)}")
    return lines


def _scenario_json(s: Scenario) -> dict[str, Any]:
    return {
        "label": s.label, "choices": s.choices, "sequential_seconds": s.sequential,
        "critical_seconds": s.critical, "planned_seconds": s.planned,
        "critical_path": list(s.critical_path),
        "phase_windows": {k: {"start": a, "end": b} for k, (a, b) in s.phase_windows.items()},
    }


def plan_json_estimate(estimate: Estimate) -> dict[str, Any]:
    return {
        "rto_seconds": estimate.rto,
        "verdict": estimate.verdict,
        "worst": _scenario_json(estimate.worst),
        "scenarios": [_scenario_json(s) for s in estimate.scenarios],
        "bottlenecks": [{"name": b.name, "planned_without_seconds": b.planned_without, "saves_seconds": b.saves} for b in estimate.bottlenecks],
        "assumptions": list(estimate.assumptions),
    }


def plan_json(plan: Plan, estimate: Estimate, diagnostics: list[Diagnostic]) -> dict[str, Any]:
    return {
        "recovery": plan.id,
        **plan_json_estimate(estimate),
        "steps_total": estimate.steps_total,
        "steps_with_duration": estimate.steps_with_duration,
        "phases": [{"id": p.id, "kind": p.kind, "after": list(p.upstream), "steps": [s.id for s in p.steps]} for p in plan.phases],
        "diagnostics": [d.to_json() for d in diagnostics],
    }


def _action(action: PlanAction | None) -> dict[str, Any] | None:
    if action is None:
        return None
    found = {"uses": action.uses, "operator": action.operator, "with": action.args}
    if action.timeout is not None:
        found["timeout"] = fmt(action.timeout)
    return found


def _step(step: PlanStep) -> dict[str, Any]:
    resolved: dict[str, Any] = {
        "id": step.id, "uses": step.uses, "operator": step.operator, "with": step.args, "name": step.display_name,
        "retries": step.retries, "retry_delay": fmt(step.retry_delay), "backoff": step.backoff,
        "max_retry_delay": fmt(step.max_retry_delay) if step.max_retry_delay else None,
        "timeout": fmt(step.timeout) if step.timeout else None, "pool": step.pool, "pool_slots": step.pool_slots,
        "queue": step.queue, "expected_duration": fmt(step.expected_duration) if step.expected_duration else None,
        "critical": step.critical, "compensate": _action(step.compensate), "skip_if": _action(step.skip_if),
    }
    if step.description:
        resolved["description"] = step.description
    return resolved


def resolved_spec(plan: Plan) -> dict[str, Any]:
    """The spec as the factory will run it: defaults applied, inherited settings and `after` explicit."""
    spec = plan.spec.model_dump(mode="json", by_alias=True, exclude={"phases", "finally_", "defaults"})
    spec["params"] = {name: p.model_dump(mode="json", exclude_none=True) | {"type": p.json_type} for name, p in plan.spec.all_params.items()}
    phases = []
    for original in plan.spec.phases:
        phase = plan.phase(original.id)
        entry: dict[str, Any] = {"id": phase.id, "kind": phase.kind, "after": list(phase.upstream)}
        if phase.description:
            entry["description"] = phase.description
        if phase.kind not in ("branch", "approval"):
            entry["on_failure"] = phase.on_failure.describe()
        if original.for_each is not None:
            entry["for_each"] = original.for_each.model_dump(mode="json", by_alias=True, exclude_none=True)
        if original.waves is not None:
            entry["waves"] = original.waves.model_dump(mode="json", by_alias=True, exclude_none=True)
        if phase.choices:
            entry["branch"] = [{"when": c.condition.text, "then": c.target} if c.condition else {"otherwise": c.target} for c in phase.choices]
        if phase.approval is not None:
            entry["approval"] = phase.approval.model_dump(mode="json", exclude_none=True)
        if phase.steps:
            entry["steps"] = [_step(s) for s in phase.steps]
        phases.append(entry)
    spec["phases"] = phases
    spec["finally"] = [_step(s) for s in plan.finally_steps]
    return spec
