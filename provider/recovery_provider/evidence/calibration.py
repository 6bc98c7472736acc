"""What this deployment adds to a plan's estimate, measured in the run ledger (``--calibrate``).

Pure functions over :class:`RunRecord`. From every task instance (start, end, duration, upstream)
of the runs recorded:

- **latency** of a task: its start minus the latest end of the task instances it waited for (the
  run's start for a first task): the scheduler's loop, the queue, a worker process starting. By
  task class (``plan/calibrated.py``): ``worker``, ``scheduler`` (an EmptyOperator gate, a task
  skipped by trigger rule: no worker), ``deferred`` (a wave checkpoint paused in the triggerer).
  Any DAG's runs calibrate these: they belong to the deployment.
- **run time** beyond a task's own work: the duration of worker tasks that have no work of their
  own (resolvers, slices, policy gates, the outcome). A deferred task is taken to cost a worker
  task's run time beyond its pause (the record does not hold the pause).
- **stagger**: in a fan-out (a mapped task), how much each more instance started alongside adds to
  the span from ready to the slowest instance's end (worker processes starting together queue for
  the executor and the CPUs).
- **finish**: the run's end minus its last task's end.
- **per task** (the same DAG only): each task's latency and duration, and its span from ready to
  its slowest instance's end, medians over runs. Dry runs do not time steps (they skip the work).

Only runs with one attempt (never cleared) and task instances that succeeded on their first try
are measured: a retry's delay or a re-run's wait is not overhead. The figures are medians. The
result is a :class:`~recovery_provider.plan.calibrated.Calibration` of plain numbers that the
estimate (plan/estimate.py) and a run's report (:func:`expected_run`) take.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import RunRecord, TaskRecord
from recovery_provider.plan.calibrated import Calibration, TaskTiming
from recovery_provider.plan.simulate import Caps, Graph, Node, Run, seconds

DAG_RUNS = 20  # newest runs of the estimated DAG read
DEPLOYMENT_RUNS = 10  # newest runs of each other DAG read for the per-class figures
SCHEDULER_OPERATORS = frozenset({"EmptyOperator"})
DEFERRED_OPERATORS = frozenset({"WaveCheckpointOperator"})
MEASURED_STATES = frozenset({"success", "skipped"})


def task_class(task: TaskRecord) -> str:
    """How the deployment ran the task: worker, scheduler (no worker) or deferred."""
    if task.state == "skipped" or task.operator in SCHEDULER_OPERATORS:
        return "scheduler"
    return "deferred" if task.operator in DEFERRED_OPERATORS else "worker"


@dataclass(frozen=True)
class Measured:
    """One task instance of a run, as the calibration sees it."""

    task: TaskRecord
    task_class: str
    ready: dt.datetime
    latency: float  # seconds, ready -> start
    duration: float  # seconds, start -> end


def _clean(record: RunRecord) -> bool:
    """A run measured as it ran: one attempt, and a start and an end."""
    return record.clear_number == 0 and len(record.attempts) <= 1 and record.start is not None


def measured(record: RunRecord) -> list[Measured]:
    """Every task instance of a run that started and ended on its first try, with when it was ready."""
    if not _clean(record):
        return []
    by_id: dict[str, list[TaskRecord]] = {}
    for task in record.tasks:
        by_id.setdefault(task.task_id, []).append(task)
    upstream_of = {t.task_id: t.upstream for t in record.tasks}
    found = []
    for task in record.tasks:
        if task.start is None or task.end is None or task.state not in MEASURED_STATES or task.tries > 1:
            continue
        ready = _ready(task, by_id, upstream_of) or record.start
        assert ready is not None
        duration = task.duration if task.duration is not None else (task.end - task.start).total_seconds()
        found.append(Measured(task, task_class(task), ready, max(0.0, (task.start - ready).total_seconds()), max(0.0, duration)))
    return found


def _same_group(task: TaskRecord, upstream: str) -> bool:
    """Two tasks of one mapped task group: instance i waits only for instance i of the other."""
    return task.map_index >= 0 and task.task_id.rsplit(".", 1)[0] == upstream.rsplit(".", 1)[0]


def waited_for(upstream: Iterable[str], ran: Container[str], upstream_of: Mapping[str, Sequence[str]]) -> list[str]:
    """The upstream task ids that ran; one that did not (skipped or never run) passes on its own upstream."""
    found: list[str] = []
    todo, seen = list(upstream), set()
    while todo:
        up = todo.pop()
        if up in seen:
            continue
        seen.add(up)
        if up in ran:
            found.append(up)
        else:
            todo += upstream_of.get(up, [])
    return found


def _ready(task: TaskRecord, by_id: dict[str, list[TaskRecord]], upstream_of: dict[str, list[str]]) -> dt.datetime | None:
    """The latest end of what the task waited for."""
    ended = {task_id for task_id, found in by_id.items() if any(i.end is not None for i in found)}
    ends: list[dt.datetime] = []
    for up in waited_for(task.upstream, ended, upstream_of):
        instances = by_id[up]
        if _same_group(task, up):
            instances = [i for i in instances if i.map_index == task.map_index] or instances
        ends += [i.end for i in instances if i.end is not None]
    return max(ends, default=None)


def _median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def _no_work(item: Measured) -> bool:
    """A worker task with no work of its own: its duration is the deployment's run time per task."""
    return item.task_class == "worker" and item.task.kind in ("control", "gate")


def calibrate(own: Sequence[RunRecord], deployment: Sequence[RunRecord] = ()) -> Calibration:
    """The per-class figures from every run given (own and deployment), the per-task timings from
    the estimated DAG's own runs (``own``). Runs given twice count once."""
    records = list({(r.dag_id, r.run_id): r for r in [*own, *deployment]}.values())
    everything = [(r, measured(r)) for r in records]
    items = [item for _, found in everything for item in found]
    latency = {c: m for c in ("worker", "scheduler", "deferred")
               if (m := _median(i.latency for i in items if i.task_class == c)) is not None}
    worker_runtime = _median(i.duration for i in items if _no_work(i))
    runtime = {"worker": worker_runtime or 0.0, "scheduler": _median(i.duration for i in items if i.task_class == "scheduler") or 0.0,
               "deferred": worker_runtime or 0.0}
    finish = _median(f for r in records if _clean(r) and (f := _finish(r)) is not None)
    stagger = _median(x for _, found in everything for x in _staggers(found))
    timed = [r for r in own if not r.dry_run and _clean(r)]
    return Calibration(
        latency=latency, runtime=runtime, finish=finish or 0.0, stagger=stagger or 0.0, tasks=_timings(timed),
        dag_runs=len(timed), deployment_runs=sum(1 for _, found in everything if found),
    )


def _staggers(found: Sequence[Measured]) -> Iterable[float]:
    """Per fan-out of a run (a mapped task, 2 or more instances that succeeded): how much each more
    instance added to its span, beyond one instance's usual latency and duration."""
    by_task: dict[str, list[Measured]] = {}
    for item in found:
        if item.task.map_index >= 0 and item.task.state == "success":
            by_task.setdefault(item.task.task_id, []).append(item)
    for items in by_task.values():
        if len(items) > 1:
            took = [i.latency + i.duration for i in items]
            yield (max(took) - statistics.median(took)) / (len(items) - 1)


def _finish(record: RunRecord) -> float | None:
    ends = [t.end for t in record.tasks if t.end is not None]
    if record.end is None or not ends:
        return None
    return max(0.0, (record.end - max(ends)).total_seconds())


def _timings(records: Sequence[RunRecord]) -> dict[str, TaskTiming]:
    """Per task id: medians of its instances' latency and duration, and the median span per run: the
    slowest instance's time from its own ready (its own upstream target in a mapped group) to its end."""
    latency: dict[str, list[float]] = {}
    duration: dict[str, list[float]] = {}
    spans: dict[str, list[float]] = {}
    for record in records:
        per_run: dict[str, list[Measured]] = {}
        for item in measured(record):
            if item.task.state == "success":
                per_run.setdefault(item.task.task_id, []).append(item)
        for task_id, found in per_run.items():
            if len(found) < sum(1 for t in record.tasks if t.task_id == task_id):
                continue  # an instance failed or retried: the span would not be the usual one
            latency.setdefault(task_id, []).extend(i.latency for i in found)
            duration.setdefault(task_id, []).extend(i.duration for i in found)
            spans.setdefault(task_id, []).append(max(i.latency + i.duration for i in found))
    return {task_id: TaskTiming(statistics.median(latency[task_id]), statistics.median(duration[task_id]),
                                statistics.median(spans[task_id]), len(duration[task_id]))
            for task_id in spans}


def load_calibration(ledger: Ledger, dag_id: str, *, exclude: str | None = None,
                     dag_runs: int = DAG_RUNS, per_dag: int = DEPLOYMENT_RUNS) -> Calibration:
    """The calibration for one DAG from the ledger: its newest runs (``exclude`` one, e.g. the run
    a report is about) and the newest runs of every other DAG, each read bounded."""
    own = [r for r in ledger.runs(dag_id, limit=dag_runs + 1) if r.run_id != exclude][:dag_runs]
    others = [r for other in ledger.dag_ids() if other != dag_id for r in ledger.runs(other, limit=per_dag)]
    return calibrate(own, others)


@dataclass(frozen=True)
class Expected:
    """What a recorded run should have taken on this deployment."""

    seconds: float
    phases: dict[str, float]  # phase -> expected seconds from its first start to its last end
    timed_tasks: int  # tasks of the run the DAG's history timed (the others: this run's own durations)
    dag_runs: int
    deployment_runs: int


def expected_run(record: RunRecord, calibration: Calibration) -> Expected | None:
    """Replay the run's own graph (its task instances and what each waited for) with what this
    deployment usually takes: each task's span from the DAG's history, else the class's overhead
    around this run's own duration of it; tasks that never ran take no time. None without tasks."""
    if not record.tasks or not calibration.latency:
        return None
    order = _topological(record.tasks)
    index = {(t.task_id, t.map_index): i for i, t in enumerate(order)}
    by_id: dict[str, list[int]] = {}
    for i, task in enumerate(order):
        by_id.setdefault(task.task_id, []).append(i)
    nodes = []
    for task in order:
        deps: list[int] = []
        for up in task.upstream:
            found = by_id.get(up, [])
            if _same_group(task, up) and (up, task.map_index) in index:
                found = [index[(up, task.map_index)]]
            deps += found
        ran = task.start is not None and task.end is not None
        own = 0.0
        if task.start is not None and task.end is not None:
            own = task.duration if task.duration is not None else (task.end - task.start).total_seconds()
        cost = calibration.seconds(task.task_id, task_class(task), own) if ran or task.state == "skipped" else 0.0
        nodes.append(Node(task.key, task.kind, task.phase, None, None, None, round(cost * 1e6), tuple(dict.fromkeys(deps)), -1, False))
    run = Run(Graph(nodes, []), Caps({}, {}, None)).run()
    windows: dict[str, tuple[int, int]] = {}
    for i, task in enumerate(order):
        if task.phase is not None and nodes[i].duration:
            low, high = windows.get(task.phase, (run.start[i], run.end[i]))
            windows[task.phase] = (min(low, run.start[i]), max(high, run.end[i]))
    return Expected(
        seconds=seconds(max(run.end, default=0)) + calibration.finish,
        phases={phase: seconds(high - low) for phase, (low, high) in windows.items()},
        timed_tasks=len({t.task_id for t in order if t.task_id in calibration.tasks}),
        dag_runs=calibration.dag_runs, deployment_runs=calibration.deployment_runs,
    )


def _topological(tasks: Sequence[TaskRecord]) -> list[TaskRecord]:
    """Task instances with every upstream task's instances first (ids unknown to the run ignored)."""
    by_id: dict[str, list[TaskRecord]] = {}
    for task in tasks:
        by_id.setdefault(task.task_id, []).append(task)
    waiting = {task_id: {u for u in found[0].upstream if u in by_id and u != task_id} for task_id, found in by_id.items()}
    downstream: dict[str, list[str]] = {}
    for task_id, ups in waiting.items():
        for up in ups:
            downstream.setdefault(up, []).append(task_id)
    ready = sorted(t for t, ups in waiting.items() if not ups)
    order: list[TaskRecord] = []
    while ready:
        task_id = ready.pop(0)
        order += sorted(by_id[task_id], key=lambda t: t.map_index)
        for child in downstream.get(task_id, []):
            waiting[child].discard(task_id)
            if not waiting[child]:
                ready.append(child)
    placed = {t.task_id for t in order}  # a cycle (never in a DAG): the rest in record order
    return order + [t for t in tasks if t.task_id not in placed]
