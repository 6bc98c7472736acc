"""Attempts of one run: its first run and each re-run after task instances were cleared.

Airflow keeps one row per task instance: clearing it (``clearTaskInstances``, the UI's "Clear")
moves the earlier try to ``task_instance_history``, resets the run's ``queued_at`` and
``start_date`` and counts the clear in ``clear_number``. The listener records the run each time it
ends; :func:`merge_attempts` adds the attempt that just ended to what the ledger already held, so a
re-run never overwrites the failure before it, and the recovery time counts from the first
attempt's queued time to the final end. When the ledger holds nothing of the earlier attempts
(it was written after them, or could not be), they are rebuilt from the task instance history.

Pure functions over records: nothing here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from recovery_provider.evidence.record import AttemptRecord, ClearRecord, RunRecord, TaskRecord

FAILED_STATES = frozenset({"failed", "upstream_failed"})
CLEAR_SLACK = dt.timedelta(seconds=5)  # the audit log entry is written just before the clear itself


def not_run_phases(tasks: Iterable[TaskRecord]) -> list[str]:
    """Phases whose gate failed although no task of their own did: they never ran, because a phase
    (or the preflight) upstream of them failed. They are not to be blamed for the run's failure."""
    gates: dict[str, str | None] = {}
    failed_inside: set[str] = set()
    for task in tasks:
        if task.phase is None:
            continue
        if task.kind == "gate":
            gates[task.phase] = task.state
        elif task.state == "failed":
            failed_inside.add(task.phase)
    return sorted(p for p, state in gates.items() if state in FAILED_STATES and p not in failed_inside)


def attempt_of(record: RunRecord, number: int, tasks: Sequence[TaskRecord], *,
               cleared: ClearRecord | None = None) -> AttemptRecord:
    return AttemptRecord(
        number=number, state=record.state, outcome=record.outcome, queued_at=record.queued_at,
        start=record.start, end=record.end, failed_phases=list(record.failed_phases),
        partial_phases=list(record.partial_phases), not_run_phases=list(record.not_run_phases),
        tasks=list(tasks), cleared=cleared,
    )


def _facts(task: TaskRecord) -> tuple[object, ...]:
    return task.state, task.tries, task.start, task.end


def _ran_in(task: TaskRecord, before: TaskRecord | None, since: dt.datetime | None) -> bool:
    """Did this attempt decide the task instance? New, started since the attempt was queued, or changed."""
    if before is None:
        return True
    if since is not None and task.start is not None and task.start >= since:
        return True
    return _facts(task) != _facts(before)


def _clear_before(clears: Sequence[ClearRecord], when: dt.datetime | None,
                  after: dt.datetime | None) -> ClearRecord | None:
    """The newest clear at or just before ``when`` (and after the previous attempt ended)."""
    if when is None:
        return None
    found = [c for c in clears if c.at is not None and c.at <= when + CLEAR_SLACK
             and (after is None or c.at >= after - CLEAR_SLACK)]
    return max(found, key=lambda c: c.at or when, default=None)


def _rebuilt(current: RunRecord, history: Sequence[TaskRecord]) -> AttemptRecord | None:
    """The attempts before ``current`` as one, from the task instance history (earlier tries) and
    the task instances the re-run did not touch (they ended before it was queued)."""
    latest: dict[str, TaskRecord] = {}
    for task in sorted(history, key=lambda t: t.tries):
        latest[task.key] = task
    since = current.queued_at or current.start
    for task in current.tasks:
        if task.key not in latest and task.end is not None and since is not None and task.end <= since:
            latest[task.key] = task
    if not latest:
        return None
    tasks = list(latest.values())
    starts = [t.start for t in tasks if t.start]
    ends = [t.end for t in tasks if t.end]
    failed = any(t.state in FAILED_STATES for t in tasks)
    return AttemptRecord(
        number=1, state="failed" if failed else "unknown", start=min(starts, default=None),
        end=max(ends, default=None), not_run_phases=not_run_phases(tasks),
        failed_phases=sorted({t.phase for t in tasks if t.phase and t.state == "failed" and t.kind != "gate"}),
        tasks=tasks, reconstructed=True,
    )


def merge_attempts(previous: RunRecord | None, current: RunRecord, *, history: Sequence[TaskRecord] = (),
                   clears: Sequence[ClearRecord] = ()) -> RunRecord:
    """``current`` (the run as it just ended) with every attempt: those ``previous`` (the ledger's
    record of this run, if any) kept, then this one. The same attempt ending again (a state set by
    hand after the end) replaces itself instead of adding one."""
    number = current.clear_number + 1
    if previous is None:
        earlier: list[AttemptRecord] = []
    elif previous.attempts:
        earlier = list(previous.attempts)
    else:  # recorded before attempts were kept: the whole record was one attempt
        earlier = [attempt_of(previous, previous.clear_number + 1, previous.tasks)]
    earlier = [a for a in earlier if a.number < number]
    if not earlier and number > 1:
        rebuilt = _rebuilt(current, history)
        earlier = [rebuilt] if rebuilt else []
    known: dict[str, TaskRecord] = {}
    for attempt in earlier:
        known.update((t.key, t) for t in attempt.tasks)
    since = current.queued_at if number > 1 else None
    ran = [t for t in current.tasks if not earlier or _ran_in(t, known.get(t.key), since)]
    previous_end = earlier[-1].end if earlier else None
    cleared = _clear_before(clears, current.queued_at or current.start, previous_end) if number > 1 else None
    attempts = [*earlier, attempt_of(current, number, ran, cleared=cleared)]
    first = attempts[0].first_time or current.queued_at or current.start
    achieved = (current.end - first).total_seconds() if current.end and first else current.achieved_seconds
    return current.model_copy(update={"attempts": attempts, "achieved_seconds": achieved})
