"""The DAG's doc_md: the spec as a runbook an on-call engineer can read in the Airflow UI."""

from __future__ import annotations

from recovery_provider.plan.model import Plan, PlanPhase
from recovery_provider.spec.durations import format_duration


def _phase_lines(phase: PlanPhase) -> list[str]:
    head = f"**{phase.id}** ({phase.kind}"
    head += f", after {', '.join(phase.upstream)})" if phase.upstream else ")"
    lines = [f"1. {head}" + (f": {phase.description}" if phase.description else "")]
    if phase.kind == "branch":
        lines += [f"    - {'if ' + c.condition.text if c.condition else 'otherwise'} -> {c.target}" for c in phase.choices]
    elif phase.approval is not None:
        timeout = f"; after {format_duration(phase.approval.timeout)}: {phase.approval.on_timeout}" if phase.approval.timeout else ""
        lines.append(f"    - asks: *{phase.approval.subject}*{timeout}")
    else:
        if phase.fan_out is not None:
            cap = f", at most {phase.fan_out.max_parallel} at once" if phase.fan_out.max_parallel else ""
            lines.append(f"    - for each target ({phase.fan_out.arg_name}){cap}:")
        for step in phase.steps:
            extra = f" - undo: `{step.compensate.uses}`" if step.compensate else ""
            lines.append(f"    - `{step.id}` ({step.uses}){': ' + step.description if step.description else ''}{extra}")
        lines.append(f"    - on failure: {phase.on_failure.describe()}")
    return lines


def runbook_markdown(plan: Plan) -> str:
    spec = plan.spec
    objectives = ", ".join(f"{name} {format_duration(value)}" for name, value in (("RTO", spec.objectives.rto), ("RPO", spec.objectives.rpo)) if value)
    parts = [f"# {spec.id}", spec.description, f"Owner: {spec.owner}" + (f" - objectives: {objectives}" if objectives else "")]
    if spec.runbook:
        parts += ["## Runbook", spec.runbook.strip()]
    parts.append("## Phases")
    parts.append("\n".join(line for phase in plan.phases for line in _phase_lines(phase)))
    if plan.finally_steps:
        parts += ["## Always, at the end", "\n".join(f"- `{s.id}` ({s.uses})" for s in plan.finally_steps)]
    parts.append("Trigger with `dry_run: true` to walk the plan without side effects.")
    return "\n\n".join(p for p in parts if p)
