"""One call from a spec file to everything known about it: spec, plan, diagnostics, estimate.

Used by the CLI and by tests; the DAG loader uses the same steps. Never raises for bad input:
problems come back as located diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recovery_provider.exceptions import SpecError
from recovery_provider.plan.compiler import compile_plan
from recovery_provider.plan.estimate import Estimate, estimate_plan
from recovery_provider.plan.lint import lint_plan
from recovery_provider.plan.model import Plan
from recovery_provider.spec.diagnostics import Diagnostic
from recovery_provider.spec.durations import format_duration
from recovery_provider.spec.loader import LoadedSpec, load_spec, load_spec_text


@dataclass
class CheckedSpec:
    file: str
    loaded: LoadedSpec | None = None
    plan: Plan | None = None
    estimate: Estimate | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_loaded(loaded: LoadedSpec) -> CheckedSpec:
    """Compile, lint and estimate a spec that loaded; locate every finding in its file."""
    checked = CheckedSpec(loaded.file, loaded)
    plan, problems = compile_plan(loaded.spec)
    if plan is not None and not any(p.severity == "error" for p in problems):
        checked.plan = plan
        problems += lint_plan(plan)
        checked.estimate = estimate_plan(plan)
        problems += _rto_findings(checked.estimate, plan)
    checked.diagnostics = sorted(
        (loaded.locate(p) for p in problems),
        key=lambda d: (d.location.line, d.location.column) if d.location else (0, 0),
    )
    return checked


def _rto_findings(estimate: Estimate, plan: Plan) -> list[Diagnostic]:
    rto = plan.spec.objectives.rto
    if rto is None or estimate.verdict != "exceeds":
        return []
    worst = estimate.worst
    found = [Diagnostic(
        "warning", "plan-beyond-rto",
        f"the planned time {format_duration(worst.planned)} ({worst.label}) exceeds the RTO of "
        f"{format_duration(rto)}: run `recovery plan` to see the critical path and what a cap costs",
        path=("objectives", "rto"),
    )]
    for phase in plan.phases:
        window = worst.phase_windows.get(phase.id)
        if window and window[1] - window[0] > rto.total_seconds():
            found.append(Diagnostic(
                "warning", "phase-beyond-rto",
                f"phase '{phase.id}' alone is planned to take {format_duration(window[1] - window[0])}, beyond the RTO of {format_duration(rto)}",
                path=phase.path,
            ))
    return found


def check_file(path: str | Path) -> CheckedSpec:
    try:
        return check_loaded(load_spec(path))
    except SpecError as exc:
        return CheckedSpec(str(path), diagnostics=exc.diagnostics)


def check_text(text: str, file: str = "<spec>") -> CheckedSpec:
    try:
        return check_loaded(load_spec_text(text, file))
    except SpecError as exc:
        return CheckedSpec(file, diagnostics=exc.diagnostics)
