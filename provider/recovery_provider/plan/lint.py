"""Lint a compiled plan: things that are legal but likely wrong at 3 a.m.

Each rule is a small function returning diagnostics with spec paths. Warnings do not fail
`recovery validate` unless `--strict` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import pairwise

from recovery_provider.plan.model import AIRFLOW_MAX_MAP_LENGTH, Plan, PlanPhase
from recovery_provider.spec.diagnostics import Diagnostic, Path
from recovery_provider.spec.durations import format_duration

Rule = Callable[[Plan], Iterator[Diagnostic]]
# A fan-out over more targets than this with no cap is flagged: unbounded parallelism against one
# system is how the ETL of the domain brief lost everything (500 handlers, zero output).
UNCAPPED_FAN_OUT = 16


def _warn(code: str, message: str, path: Path) -> Diagnostic:
    return Diagnostic("warning", code, message, path=path)


def approval_without_timeout(plan: Plan) -> Iterator[Diagnostic]:
    for phase in plan.phases:
        if phase.approval is not None and phase.approval.timeout is None:
            yield _warn("approval-no-timeout", f"approval '{phase.id}' has no timeout: the run waits forever if nobody answers; set approval.timeout and on_timeout", (*phase.path, "approval"))


def step_without_timeout(plan: Plan) -> Iterator[Diagnostic]:
    for step in plan.steps:
        if step.timeout is None:
            yield _warn("step-no-timeout", f"step '{step.id}' has no timeout: one hung try stalls the whole recovery; set timeout on the step or under defaults", step.path)


def beyond_rto(plan: Plan) -> Iterator[Diagnostic]:
    rto = plan.spec.objectives.rto
    if rto is None:
        return
    for step in plan.steps:
        if step.timeout is not None and step.timeout > rto:
            yield _warn("timeout-beyond-rto", f"step '{step.id}' may run {format_duration(step.timeout)}, longer than the RTO of {format_duration(rto)}", (*step.path, "timeout") if step.path else step.path)
        if step.expected_duration is not None and step.expected_duration > rto:
            yield _warn("step-beyond-rto", f"step '{step.id}' is expected to take {format_duration(step.expected_duration)}, longer than the RTO of {format_duration(rto)}", (*step.path, "expected_duration"))
    run_timeout = plan.spec.run_timeout
    if run_timeout is not None and run_timeout < rto:
        yield _warn("run-timeout-below-rto", f"run_timeout {format_duration(run_timeout)} ends runs before the RTO of {format_duration(rto)} is used up", ("run_timeout",))


def _target_count(phase: PlanPhase) -> int | None:
    if phase.fan_out is not None:
        return phase.fan_out.count if phase.fan_out.count_known else None
    return len(phase.steps) if phase.kind == "parallel" else None


def tolerance_beyond_size(plan: Plan) -> Iterator[Diagnostic]:
    for phase in plan.phases:
        policy = phase.on_failure
        if policy.mode != "tolerate":
            continue
        if phase.kind in ("branch", "approval"):
            yield _warn("policy-ignored", f"on_failure has no effect on {phase.kind} phase '{phase.id}'", (*phase.path, "on_failure"))
            continue
        size = _target_count(phase)
        if size is not None and policy.max_failures is not None and policy.max_failures >= size:
            unit = "targets" if phase.fan_out else "steps"
            yield _warn("tolerance-too-large", f"phase '{phase.id}' tolerates {policy.max_failures} failures of {size} {unit}: it can never fail; use on_failure: continue if that is meant, or a smaller tolerance", (*phase.path, "on_failure"))
        if policy.max_failure_percent is not None and policy.max_failure_percent >= 100:
            yield _warn("tolerance-too-large", f"phase '{phase.id}' tolerates {policy.max_failure_percent:g}% failures: it can never fail; use on_failure: continue if that is meant", (*phase.path, "on_failure"))


def compensation_never_runs(plan: Plan) -> Iterator[Diagnostic]:
    for phase in plan.phases:
        if phase.on_failure.mode != "continue":
            continue
        for step in phase.steps:
            if step.compensate is not None:
                yield _warn("compensation-never-runs", f"step '{step.id}' has a compensation, but phase '{phase.id}' continues on failure, so it never fails and never compensates", (*step.path, "compensate"))


def fan_out_limits(plan: Plan) -> Iterator[Diagnostic]:
    for phase in plan.phases:
        fan = phase.fan_out
        if fan is None:
            continue
        if fan.count > AIRFLOW_MAX_MAP_LENGTH and phase.kind == "for_each":
            yield _warn("fan-out-over-map-length", f"phase '{phase.id}' expects {fan.count} targets, over Airflow's [core] max_map_length of {AIRFLOW_MAX_MAP_LENGTH}: raise that setting or split the targets", (*phase.path, phase.kind))
        pooled = all(step.pool for step in phase.steps)
        if phase.kind == "for_each" and fan.max_parallel is None and not pooled and (not fan.count_known or fan.count > UNCAPPED_FAN_OUT):
            yield _warn("uncapped-fan-out", f"phase '{phase.id}' fans out over {'run-time' if not fan.count_known else fan.count} targets with no cap: set for_each.max_parallel or a pool so a shared system is not overrun", (*phase.path, "for_each"))
        for step in phase.steps:
            slots = plan.spec.pools[step.pool].slots if step.pool in plan.spec.pools else None
            if fan.max_parallel and slots is not None and fan.max_parallel * step.pool_slots > slots:
                yield _warn("cap-above-pool", f"phase '{phase.id}' allows {fan.max_parallel} targets at once, but pool '{step.pool}' fits {slots // step.pool_slots} of step '{step.id}': the pool is the real cap", (*phase.path, "for_each", "max_parallel"))


_ARCHIVE_DRILLS = frozenset({"pgbackrest.drill_markers", "pgbackrest.archive_freshness"})


def schedule_beyond_rpo(plan: Plan) -> Iterator[Diagnostic]:
    schedule, rpo = plan.spec.schedule, plan.spec.objectives.rpo
    if schedule is None or rpo is None or schedule == "@once":
        return
    if any(step.uses in _ARCHIVE_DRILLS for step in plan.steps):
        return  # a drill of continuous WAL archiving: the archive, not the schedule, bounds the data's age
    interval = _schedule_interval(schedule)
    if interval is not None and interval > rpo:
        yield _warn("schedule-beyond-rpo", f"schedule '{schedule}' runs every {format_duration(interval)}, so data can be {format_duration(interval)} old, beyond the RPO of {format_duration(rpo)}", ("schedule",))


_PRESET_CRON = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}


def _schedule_interval(schedule: str) -> timedelta | None:
    """The longest gap between two runs of a cron schedule over a sample of firings."""
    import datetime as dt

    from croniter import croniter

    cron = _PRESET_CRON.get(schedule, schedule)
    try:
        times = croniter(cron, dt.datetime(2025, 1, 1))
        fires = [times.get_next(dt.datetime) for _ in range(8)]
    except (ValueError, KeyError):
        return None
    gaps: list[timedelta] = [b - a for a, b in pairwise(fires)]
    return max(gaps)


RULES: tuple[Rule, ...] = (
    approval_without_timeout,
    step_without_timeout,
    beyond_rto,
    tolerance_beyond_size,
    compensation_never_runs,
    fan_out_limits,
    schedule_beyond_rpo,
)


def lint_plan(plan: Plan) -> list[Diagnostic]:
    return [d for rule in RULES for d in rule(plan)]
