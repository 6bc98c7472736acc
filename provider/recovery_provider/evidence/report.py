"""A run's report: the ledger record judged against its objectives, laid out as a timeline.

Pure functions over :class:`RunRecord`; the CLI, the plugin's JSON API and its HTML pages all show
what :func:`build_report` and :func:`build_trend` return. Nothing here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recovery_provider.evidence.calibration import Expected, expected_run, waited_for
from recovery_provider.evidence.incidents import Mttr, build_mttr
from recovery_provider.evidence.record import (
    ApprovalRecord,
    AttemptRecord,
    BreakerRecord,
    RunRecord,
    SlowStepRecord,
    TaskRecord,
)
from recovery_provider.plan.calibrated import Calibration

Verdict = Literal["met", "missed", "no objective", "unknown"]
FAILED_STATES = frozenset({"failed", "upstream_failed"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bar(_Model):
    """One row of the timeline: a task (one target of a fan-out) or a phase."""

    label: str
    phase: str | None
    kind: str
    state: str | None
    offset: float  # seconds from the run's first queued time (the origin of every attempt)
    length: float  # seconds
    tries: int = 0
    critical: bool = False  # on the run's actual critical path
    planned: tuple[float, float] | None = None  # phases: the estimate's window, on the same axis
    attempt: int = 1  # which attempt of the run this bar belongs to
    expected: float | None = None  # phases: seconds to expect on this deployment (calibrated from the ledger)


class AttemptView(_Model):
    """One attempt of the run on the report's time axis: the first run, or a re-run after a clear."""

    number: int
    state: str
    outcome: str | None
    offset: float  # seconds from the run's first queued time
    length: float
    failed_phases: list[str]
    not_run_phases: list[str]
    rerun: list[str]  # the task instances this attempt ran (a re-run: what was cleared)
    cleared_by: str | None = None
    cleared_at: dt.datetime | None = None
    reconstructed: bool = False


class Objective(_Model):
    target_seconds: float | None
    achieved_seconds: float | None
    verdict: Verdict


class Report(_Model):
    dag_id: str
    run_id: str
    state: str
    outcome: str | None
    dry_run: bool
    start: dt.datetime | None
    end: dt.datetime | None
    rto: Objective
    rpo: Objective
    planned_seconds: float | None
    planned_scenario: str | None
    critical_path: list[str]  # task keys, first to last
    planned_critical_path: list[str]
    phases: list[Bar]
    tasks: list[Bar]
    failures: list[str]  # "task[target]: state after N tries"
    partial_phases: list[str]
    failed_phases: list[str]
    retried: list[str]
    compensations: list[str]  # "undo task: state"
    approvals: list[ApprovalRecord]
    restores: list[str] = Field(default_factory=list)  # which backup each restore used; a fallback and why
    assumptions: list[str] = Field(default_factory=list)
    # point-in-time restores: target - last restored commit, judged against the spec's RPO
    achieved_rpo: Objective | None = None
    restore_seconds: float | None = None
    not_run_phases: list[str] = Field(default_factory=list)
    attempts: list[AttemptView] = Field(default_factory=list)  # oldest first; one for a run never re-run
    earlier_tasks: list[Bar] = Field(default_factory=list)  # tries of earlier attempts a re-run superseded
    origin: dt.datetime | None = None  # time 0 of every offset: the first attempt's queued time
    slow_steps: list[SlowStepRecord] = Field(default_factory=list)  # ran past p95 x factor of their history
    breakers: list[BreakerRecord] = Field(default_factory=list)  # circuit breakers open in this run, and why
    # what the run should have taken on this deployment: its graph with the ledger's usual timings
    expected_seconds: float | None = None
    expected_basis: str | None = None  # what the expected figure was calibrated from


class TrendPoint(_Model):
    run_id: str
    start: dt.datetime | None
    state: str
    outcome: str | None
    achieved_seconds: float | None
    rto_seconds: float | None
    rto_verdict: Verdict
    dry_run: bool
    attempts: int = 1  # 2 and more: re-run after a clear; achieved counts from the first attempt


class Trend(_Model):
    dag_id: str
    points: list[TrendPoint]  # oldest first
    rto_seconds: float | None  # the newest run's RTO
    met: int
    missed: int
    best_seconds: float | None
    worst_seconds: float | None
    latest_seconds: float | None
    change_seconds: float | None  # latest - previous achieved time (negative: faster)
    mttr: Mttr | None = None  # incidents of the DAG and their mean time to recover


def judge(target: float | None, achieved: float | None) -> Verdict:
    if target is None:
        return "no objective"
    if achieved is None:
        return "unknown"
    return "met" if achieved <= target else "missed"


def _offset(record: RunRecord, when: dt.datetime | None) -> float:
    origin = record.first_queued_at
    if when is None or origin is None:
        return 0.0
    return max(0.0, (when - origin).total_seconds())


def attempts_of(record: RunRecord) -> list[AttemptRecord]:
    """The record's attempts; a record written before attempts were kept is one attempt."""
    if record.attempts:
        return list(record.attempts)
    return [AttemptRecord(number=record.clear_number + 1, state=record.state, outcome=record.outcome,
                          queued_at=record.queued_at, start=record.start, end=record.end,
                          failed_phases=list(record.failed_phases), partial_phases=list(record.partial_phases),
                          not_run_phases=list(record.not_run_phases), tasks=list(record.tasks))]


def _label(task: TaskRecord) -> str:
    if task.map_index < 0:
        return task.task_id
    return f"{task.task_id}[{task.target if task.target not in (None, '') else task.map_index}]"


def critical_path(tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
    """The chain of task instances that set the run's end: from the last task to finish, step back
    each time to the upstream instance that finished last (what it waited for). Skipped tasks did
    no work: the path goes through them to what they waited for."""
    upstream_of = {t.task_id: t.upstream for t in tasks}
    ran = [t for t in tasks if t.end is not None and t.state != "skipped"]
    if not ran:
        return []
    by_id: dict[str, list[TaskRecord]] = {}
    for task in ran:
        by_id.setdefault(task.task_id, []).append(task)
    end_of = {t.key: t.end for t in ran}

    current = max(ran, key=lambda t: (t.end, t.key))
    path = [current]
    seen = {current.key}
    while True:
        candidates = [u for up in waited_for(current.upstream, by_id, upstream_of) for u in by_id[up] if u.key not in seen]
        if not candidates:
            break
        current = max(candidates, key=lambda t: (end_of[t.key], t.key))
        seen.add(current.key)
        path.append(current)
    return list(reversed(path))


def _phase_bars(record: RunRecord, tasks: Iterable[TaskRecord], attempt: AttemptRecord) -> list[Bar]:
    """One bar per phase the attempt touched; the planned windows (seconds from the run start) are
    shifted onto the report's axis and drawn with the first attempt only."""
    windows: dict[str, list[TaskRecord]] = {}
    for task in tasks:
        if task.phase is not None:
            windows.setdefault(task.phase, []).append(task)
    first = attempts_of(record)[0]
    planned = record.plan.phase_windows if record.plan and attempt.number == first.number else {}
    shift = _offset(record, first.start)
    bars = []
    for phase, members in windows.items():
        ran = [t for t in members if t.start is not None and t.end is not None]
        gate = next((t for t in members if t.kind == "gate"), None)
        start = min((t.start for t in ran if t.start), default=None)
        end = max((t.end for t in ran if t.end), default=None)
        offset = _offset(record, start)
        length = (end - start).total_seconds() if start and end else 0.0
        state = "not_run" if phase in attempt.not_run_phases else gate.state if gate else None
        window = planned.get(phase)
        bars.append(Bar(label=phase, phase=phase, kind="phase", state=state, offset=offset, length=length,
                        planned=(window[0] + shift, window[1] + shift) if window else None, attempt=attempt.number))
    bars.sort(key=lambda b: (b.offset if b.length or b.state else float("inf"), b.label))
    return bars


def _task_bar(record: RunRecord, task: TaskRecord, attempt: int, critical: bool = False) -> Bar:
    return Bar(label=_label(task), phase=task.phase, kind=task.kind, state=task.state,
               offset=_offset(record, task.start),
               length=(task.end - task.start).total_seconds() if task.start and task.end else 0.0,
               tries=task.tries, critical=critical, attempt=attempt)


def _by_start(tasks: Iterable[TaskRecord]) -> list[TaskRecord]:
    latest = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(tasks, key=lambda t: (t.start is None, t.start or latest, t.key))


def _attempt_view(record: RunRecord, attempt: AttemptRecord, is_first: bool) -> AttemptView:
    begin = attempt.first_time
    return AttemptView(
        number=attempt.number, state=attempt.state, outcome=attempt.outcome, offset=_offset(record, begin),
        length=(attempt.end - begin).total_seconds() if attempt.end and begin else 0.0,
        failed_phases=list(attempt.failed_phases), not_run_phases=list(attempt.not_run_phases),
        rerun=[] if is_first else [_label(t) for t in _by_start(attempt.tasks) if t.kind != "control"],
        cleared_by=attempt.cleared.by if attempt.cleared else None,
        cleared_at=attempt.cleared.at if attempt.cleared else None, reconstructed=attempt.reconstructed,
    )


def _basis(expected: Expected) -> str:
    return (f"{expected.deployment_runs} run(s) on this deployment; {expected.timed_tasks} task(s) timed by "
            f"{expected.dag_runs} other run(s) of this DAG, the rest by this run")


def build_report(record: RunRecord, calibration: Calibration | None = None) -> Report:
    """The report of one run; with a ``calibration`` (evidence/calibration.py, from the ledger's
    other runs) also what the run should have taken on this deployment, beside the spec's plan."""
    expected = expected_run(record, calibration) if calibration is not None else None
    path = critical_path(record.tasks)
    on_path = {t.key for t in path}
    tasks = _by_start(record.tasks)
    attempts = attempts_of(record)
    decided_in = {t.key: a.number for a in attempts for t in a.tasks}  # the last attempt that ran each
    bars = [_task_bar(record, t, decided_in.get(t.key, attempts[-1].number), t.key in on_path) for t in tasks]
    final = {(t.key, t.start) for t in record.tasks}
    earlier = [_task_bar(record, t, a.number) for a in attempts[:-1] for t in _by_start(a.tasks)
               if (t.key, t.start) not in final]
    phases = [bar for a in attempts for bar in _phase_bars(record, a.tasks, a)]
    if expected is not None:
        first = attempts[0].number
        phases = [b.model_copy(update={"expected": expected.phases.get(b.label)}) if b.attempt == first else b for b in phases]
    failures = [
        f"{_label(t)}: {t.state}" + (f" after {t.tries} tries" if t.tries > 1 else "")
        for t in tasks if t.state in FAILED_STATES and t.kind not in ("gate", "control")
    ]
    plan = record.plan
    return Report(
        dag_id=record.dag_id,
        run_id=record.run_id,
        state=record.state,
        outcome=record.outcome,
        dry_run=record.dry_run,
        start=record.start,
        end=record.end,
        rto=Objective(target_seconds=record.rto_seconds, achieved_seconds=record.achieved_seconds,
                      verdict=judge(record.rto_seconds, record.achieved_seconds)),
        rpo=Objective(target_seconds=record.rpo_seconds, achieved_seconds=record.data_age_seconds,
                      verdict=judge(record.rpo_seconds, record.data_age_seconds)),
        planned_seconds=plan.planned_seconds if plan else None,
        planned_scenario=plan.scenario if plan else None,
        critical_path=[_label(t) for t in path],
        planned_critical_path=list(plan.critical_path) if plan else [],
        phases=phases,
        tasks=bars,
        failures=failures,
        partial_phases=list(record.partial_phases),
        failed_phases=list(record.failed_phases),
        retried=[f"{_label(t)}: {t.tries} tries ({t.state})" for t in tasks if t.tries > 1],
        compensations=[f"{_label(t)}: {t.state}" for t in tasks if t.kind == "undo" and t.state not in (None, "skipped")],
        approvals=list(record.approvals),
        restores=list(record.restores),
        assumptions=list(plan.assumptions) if plan else [],
        achieved_rpo=_achieved_rpo(record),
        restore_seconds=record.restore_seconds,
        not_run_phases=list(record.not_run_phases),
        attempts=[_attempt_view(record, a, i == 0) for i, a in enumerate(attempts)],
        earlier_tasks=earlier,
        origin=record.first_queued_at,
        slow_steps=list(record.slow_steps),
        breakers=list(record.breakers),
        expected_seconds=expected.seconds if expected else None,
        expected_basis=_basis(expected) if expected else None,
    )


def _achieved_rpo(record: RunRecord) -> Objective | None:
    """The RPO a point-in-time restore proved (None for runs without one)."""
    if record.achieved_rpo_seconds is None:
        return None
    return Objective(target_seconds=record.rpo_seconds, achieved_seconds=record.achieved_rpo_seconds,
                     verdict=judge(record.rpo_seconds, record.achieved_rpo_seconds))


def build_trend(dag_id: str, records: Sequence[RunRecord]) -> Trend:
    """Achieved recovery time across the runs of one DAG (drills and incidents), oldest first."""
    ordered = sorted(records, key=lambda r: (r.start or r.recorded_at, r.run_id))
    points = [
        TrendPoint(run_id=r.run_id, start=r.start, state=r.state, outcome=r.outcome,
                   achieved_seconds=r.achieved_seconds, rto_seconds=r.rto_seconds,
                   rto_verdict=judge(r.rto_seconds, r.achieved_seconds), dry_run=r.dry_run,
                   attempts=max(len(r.attempts), 1))
        for r in ordered
    ]
    timed = [p.achieved_seconds for p in points if p.achieved_seconds is not None]
    return Trend(
        dag_id=dag_id,
        points=points,
        rto_seconds=next((p.rto_seconds for p in reversed(points) if p.rto_seconds is not None), None),
        met=sum(p.rto_verdict == "met" for p in points),
        missed=sum(p.rto_verdict == "missed" for p in points),
        best_seconds=min(timed, default=None),
        worst_seconds=max(timed, default=None),
        latest_seconds=timed[-1] if timed else None,
        change_seconds=timed[-1] - timed[-2] if len(timed) > 1 else None,
        mttr=build_mttr(records),
    )
