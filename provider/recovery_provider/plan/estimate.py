"""How long a run of a plan takes: T_seq, the critical path, and the time with every cap honoured.

The sum of the steps (T_seq) and the longest dependency path are the two bounds of the domain's
trade-off; pools, max_parallel and Airflow's max_active_tasks decide where between them a real run
lands. So the estimate simulates the run as the scheduler would start it (greedy, in task priority
order, every cap honoured), once per combination of branch choices, then re-runs the worst
combination with one cap lifted at a time to name the caps that cost time. Durations come from
``expected_duration`` (missing ones count as 0 s). Nothing here imports Airflow.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta

from recovery_provider.exceptions import ArgumentError
from recovery_provider.plan.calibrated import Calibration
from recovery_provider.plan.layout import Layout, LayoutTask, build_layout
from recovery_provider.plan.model import AIRFLOW_MAX_ACTIVE_TASKS, DEFAULT_POOL, Plan, PlanPhase, PlanStep
from recovery_provider.plan.scenarios import active_phases, choice_sets
from recovery_provider.plan.simulate import (
    Caps,
    Demand,
    Graph,
    Node,
    Run,
    caps_of,
    critical_path,
    seconds,
    us,
)


@dataclass(frozen=True)
class ScheduledTask:
    """One task of the simulated run.

    ``target`` is the 0-based fan-out index (Airflow's map index), ``wave`` the 0-based wave index;
    labels count waves from 1 (``restart.wave1.health`` is wave 0), as people do.
    """

    label: str
    kind: str  # "step" | "gate" | "branch" | "approval" | "health" | "pause" | "finally" | "control" (calibrated)
    phase_id: str | None
    step_id: str | None
    target: int | None
    wave: int | None
    start: float
    end: float


@dataclass(frozen=True)
class Scenario:
    """One combination of branch choices and the run it leads to."""

    choices: dict[str, str]  # branch phase -> chosen target phase; {} without branches
    sequential: float  # T_seq: every task's duration added up (steps, health checks, pauses, approvals)
    critical: float  # longest dependency path with unlimited resources
    planned: float  # simulated makespan with every cap honoured
    critical_path: tuple[str, ...]  # task labels along the longest path, gates left out
    tasks: tuple[ScheduledTask, ...]  # the simulated schedule, in priority order
    phase_windows: dict[str, tuple[float, float]]  # active phase -> (first start, last end)

    @property
    def label(self) -> str:
        if not self.choices:
            return "all phases"
        if len(self.choices) == 1:
            return next(iter(self.choices.values()))
        return ", ".join(f"{branch}={target}" for branch, target in self.choices.items())


@dataclass(frozen=True)
class Bottleneck:
    """A cap that costs time in the worst scenario."""

    name: str  # "pool orders_io", "max_parallel of phase restore", "max_active_tasks (16)"
    planned_without: float  # the worst scenario's planned time with just this cap lifted
    saves: float  # worst.planned - planned_without, always > 0


@dataclass(frozen=True)
class Estimate:
    """All scenarios of a plan, the worst judged against the RTO, and what the numbers assume."""

    scenarios: tuple[Scenario, ...]
    worst: Scenario
    rto: float | None  # seconds
    verdict: str  # "meets" | "exceeds" | "no-rto"
    steps_total: int  # steps of the plan (phases + finally), once each, not per target
    steps_with_duration: int  # of those, the ones with expected_duration
    assumptions: tuple[str, ...]
    bottlenecks: tuple[Bottleneck, ...]  # largest saving first
    calibration: Calibration | None = None  # the deployment's measured overheads, when calibrated


class _Builder:
    """Simulates the layout's tasks for the phases active in one scenario.

    Steps run once per target (waves: only the waves that get targets), health checks, approvals
    and gates as in the DAG, a checkpoint between two waves as its pause. The tasks that only steer
    the run (preflight, resolvers, slices, probes, checkpoints without a pause) take no time and are
    passed through; compensations and the outcome do not run when every step succeeds. Nodes are
    created in priority order (phase order, then target, then step), which is also the order the
    simulation starts ready tasks in.

    Calibrated (``calibration``), every task that runs costs what the deployment measured: the
    steering tasks, compensations skipped by the scheduler and the outcome become nodes too.
    """

    def __init__(self, plan: Plan, layout: Layout, active: set[str], calibration: Calibration | None = None) -> None:
        self.plan = plan
        self.layout = layout
        self.active = active
        self.calibration = calibration
        self.nodes: list[Node] = []
        self.demands: dict[Demand, int] = {}
        self.ends: dict[str, tuple[int, ...]] = {}  # layout task -> the nodes a task waiting for it waits for
        self.steps = {(s.phase_id, s.id): s for s in plan.steps}

    def build(self) -> Graph:
        for (_, group), run in itertools.groupby(self.layout.tasks, key=lambda t: (t.phase_id, t.group)):
            if group is None:
                for task in run:
                    self.ends[task.id] = self.task(task)
            else:
                self.mapped(list(run))
        return Graph(self.nodes, list(self.demands))

    def step(self, task: LayoutTask) -> PlanStep:
        assert task.step_id is not None
        return self.steps[(task.phase_id, task.step_id)]

    def add(self, label: str, kind: str, deps: tuple[int, ...], duration: int = 0, *, phase: str | None = None,
            step: str | None = None, target: int | None = None, wave: int | None = None, demand: int = -1,
            hidden: bool = False) -> int:
        self.nodes.append(Node(label, kind, phase, step, target, wave, duration, deps, demand, hidden))
        return len(self.nodes) - 1

    def demand(self, step: PlanStep | None, phase: PlanPhase | None) -> int:
        """Health checks (no step) take no pool and no max_parallel slot, only a run slot."""
        if step is None:
            return self.demands.setdefault(Demand(None, 0, None), len(self.demands))
        pool = step.pool if step.pool != DEFAULT_POOL else None
        capped = phase is not None and phase.fan_out is not None and phase.fan_out.max_parallel is not None
        group = (phase.id, step.id) if capped and phase is not None else None
        return self.demands.setdefault(Demand(pool, step.pool_slots if pool else 0, group), len(self.demands))

    def cost(self, task: LayoutTask, task_class: str, work: int, *, alongside: int = 1, capacity: int | None = None) -> int:
        """Microseconds a task takes: its own work, or with a calibration what the deployment adds."""
        if self.calibration is None:
            return work
        return round(self.calibration.seconds(task.id, task_class, seconds(work), alongside=alongside, capacity=capacity) * 1e6)

    def control(self, task: LayoutTask, task_class: str = "worker") -> tuple[int, ...]:
        """A task with no work of its own: passed through, or calibrated a node of its overhead."""
        deps = self.join(self.deps(task), task.phase_id)
        if self.calibration is None:
            return deps
        return (self.add(task.id, "control", deps, self.cost(task, task_class, 0), phase=task.phase_id),)

    def capacity(self, step: PlanStep, phase: PlanPhase) -> int:
        """How many targets of a step can run at once: max_active_tasks, max_parallel, the pool."""
        caps = [self.plan.max_active_tasks]
        if phase.fan_out is not None and phase.fan_out.max_parallel:
            caps.append(phase.fan_out.max_parallel)
        pool = self.plan.spec.pools.get(step.pool) if step.pool and step.pool != DEFAULT_POOL else None
        if pool is not None:
            caps.append(max(1, pool.slots // max(step.pool_slots, 1)))
        return min(caps)

    def join(self, deps: tuple[int, ...], phase: str | None) -> tuple[int, ...]:
        """One hidden node instead of N x M edges when many tasks wait for many others."""
        if len(deps) <= 1:
            return deps
        return (self.add("join", "gate", deps, phase=phase, hidden=True),)

    def deps(self, task: LayoutTask, upstream: Iterable[str] | None = None) -> tuple[int, ...]:
        return tuple(dict.fromkeys(n for up in (task.upstream if upstream is None else upstream) for n in self.ends[up]))

    def task(self, task: LayoutTask) -> tuple[int, ...]:
        """The nodes of one unmapped task: what a task waiting for it waits for."""
        if task.phase_id is not None and task.phase_id not in self.active:
            return ()  # a skipped phase is done at once
        if task.kind in ("undo", "outcome"):  # skipped when nothing failed / the verdict: off the spec's path
            return self.control(task, "scheduler" if task.kind == "undo" else "worker") if self.calibration else ()
        phase = self.plan.phase(task.phase_id) if task.phase_id else None
        if task.kind == "finally":
            step = self.step(task)
            return (self.add(f"finally.{step.id}", "finally", self.join(self.deps(task), None),
                             self.cost(task, "worker", us(step.expected_duration)), step=step.id, demand=self.demand(step, None)),)
        if phase is None:
            return self.control(task) if self.calibration else ()  # preflight
        if phase.waves is not None and task.wave is not None and task.wave >= _waves_run(phase):
            return self.deps(task)  # a spare wave (max_targets) gets no targets and is skipped
        if task.kind == "step":  # a step of a sequential or parallel phase
            step = self.step(task)
            return (self.add(f"{phase.id}.{step.id}", "step", self.deps(task), self.cost(task, "worker", us(step.expected_duration)),
                             phase=phase.id, step=step.id, demand=self.demand(step, phase)),)
        if task.kind == "gate":
            return (self.add(f"{phase.id}.gate", "gate", self.deps(task, _leaves(self.layout, task)),
                             self.cost(task, "scheduler" if task.by_trigger_rule else "worker", 0), phase=phase.id),)
        if task.kind == "branch":
            return (self.add(phase.id, "branch", self.join(self.deps(task), phase.id), self.cost(task, "worker", 0), phase=phase.id),)
        if task.kind == "approval":
            duration = us(phase.approval.expected_duration if phase.approval else None)
            return (self.add(phase.id, "approval", self.join(self.deps(task), phase.id), self.cost(task, "worker", duration),
                             phase=phase.id),)
        if task.kind == "wave_health" and phase.waves is not None and task.wave is not None:
            check = phase.waves.health_check
            return (self.add(f"{phase.id}.wave{task.wave + 1}.health", "health", self.join(self.deps(task), phase.id),
                             self.cost(task, "worker", us(check.expected_duration if check else None)), phase=phase.id,
                             wave=task.wave, demand=self.demand(None, None)),)
        if (task.kind == "wave_checkpoint" and phase.waves is not None and task.wave is not None
                and task.wave < _waves_run(phase) - 1 and phase.waves.pause > timedelta(0)):
            return (self.add(f"{phase.id}.wave{task.wave + 1}.pause", "pause", self.join(self.deps(task), phase.id),
                             self.cost(task, "deferred", us(phase.waves.pause)), phase=phase.id, wave=task.wave),)
        return self.control(task)  # resolver, slice, probe, checkpoint: no time of their own

    def mapped(self, run: list[LayoutTask]) -> None:
        """A mapped group: its tasks once per target, target by target."""
        first = run[0]
        assert first.phase_id is not None and first.mapped
        phase = self.plan.phase(first.phase_id)
        entry = self.ends[first.mapped_by] if first.mapped_by else self.deps(first)  # or literal targets
        if phase.id not in self.active or (first.kind == "undo" and self.calibration is None):
            self.ends.update((t.id, ()) for t in run)
            return
        if first.kind == "undo":  # calibrated: the scheduler skips the whole mapped group when nothing failed
            for task in run:
                self.ends[task.id] = self.control(task, "scheduler")
            return
        assert phase.fan_out is not None
        count = phase.fan_out.count
        if first.wave is not None and phase.waves is not None:
            size = phase.waves.size
            targets = range(first.wave * size, min((first.wave + 1) * size, count)) if first.wave < _waves_run(phase) else range(0)
        else:
            targets = range(count)
        per_target: dict[str, list[int]] = {t.id: [] for t in run}
        for target in targets:
            ends: dict[str, tuple[int, ...]] = {}
            for task in run:
                inside = [ends[u] for u in task.upstream if u in ends]
                deps = tuple(n for found in inside for n in found) if inside else entry
                if task.kind == "step":
                    step = self.step(task)
                    prefix = phase.id + (f".wave{first.wave + 1}" if first.wave is not None else "")
                    duration = self.cost(task, "worker", us(step.expected_duration), alongside=len(targets),
                                         capacity=self.capacity(step, phase))
                    deps = (self.add(f"{prefix}.{step.id}[{target}]", "step", deps, duration, phase=phase.id,
                                     step=step.id, target=target, wave=first.wave, demand=self.demand(step, phase)),)
                elif self.calibration is not None:  # a probe, per target
                    deps = (self.add(f"{task.id}[{target}]", "control", deps, self.cost(task, "worker", 0),
                                     phase=phase.id, target=target, wave=first.wave),)
                ends[task.id] = deps  # a probe takes no time: what waits for it waits for its upstream
                per_target[task.id] += deps
        for task in run:
            self.ends[task.id] = tuple(per_target[task.id]) or entry


def _waves_run(phase: PlanPhase) -> int:
    """Only waves that get targets run; the layout's spare waves (max_targets) are skipped."""
    assert phase.waves is not None and phase.fan_out is not None
    return max(1, -(-phase.fan_out.count // phase.waves.size))


def _leaves(layout: Layout, gate: LayoutTask) -> list[str]:
    """What a gate waits for, less what another of them waits for: the chain's last step, or each
    parallel step (a sequential phase's gate waits for every task of it in the DAG)."""
    implied = {up for t in gate.upstream for up in layout.task(t).upstream}
    return [t for t in gate.upstream if t not in implied]


def _scenario(plan: Plan, layout: Layout, choices: dict[str, str], caps: Caps,
              calibration: Calibration | None = None) -> tuple[Scenario, Graph]:
    graph = _Builder(plan, layout, active_phases(plan, choices), calibration).build()
    run = Run(graph, caps).run()
    finish = _finish(calibration)
    critical, path = critical_path(graph)
    tasks: list[ScheduledTask] = []
    windows: dict[str, tuple[float, float]] = {}
    for index, node in enumerate(graph.nodes):
        if node.hidden:
            continue
        start, end = seconds(run.start[index]), seconds(run.end[index])
        tasks.append(ScheduledTask(node.label, node.kind, node.phase_id, node.step_id, node.target, node.wave, start, end))
        if node.phase_id is not None:
            low, high = windows.get(node.phase_id, (start, end))
            windows[node.phase_id] = (min(low, start), max(high, end))
    scenario = Scenario(
        choices=choices,
        sequential=seconds(sum(node.duration for node in graph.nodes) + finish),
        critical=seconds(critical + finish),
        planned=seconds(max(run.end, default=0) + finish),
        critical_path=path,
        tasks=tuple(tasks),
        phase_windows=windows,
    )
    return scenario, graph


def _liftable(graph: Graph, caps: Caps) -> list[tuple[str, Caps]]:
    """Each cap the scenario meets, with the caps that remain when it alone is lifted."""
    pools = dict.fromkeys(d.pool for d in graph.demands if d.pool in caps.pools)
    phases = dict.fromkeys(d.group[0] for d in graph.demands if d.group and d.group[0] in caps.max_parallel)
    found = [(f"pool {p}", replace(caps, pools={k: v for k, v in caps.pools.items() if k != p})) for p in pools if p]
    found += [(f"max_parallel of phase {p}", replace(caps, max_parallel={k: v for k, v in caps.max_parallel.items() if k != p}))
              for p in phases]
    if caps.max_active is not None:
        found.append((f"max_active_tasks ({caps.max_active})", replace(caps, max_active=None)))
    return found


def _finish(calibration: Calibration | None) -> int:
    """Microseconds from the last task's end to the run's end (0 without a calibration)."""
    return round(calibration.finish * 1e6) if calibration is not None else 0


def _bottlenecks(graph: Graph, caps: Caps, worst: Scenario, calibration: Calibration | None = None) -> tuple[Bottleneck, ...]:
    found = []
    for name, lifted in _liftable(graph, caps):
        without = seconds(max(Run(graph, lifted).run().end, default=0) + _finish(calibration))
        if worst.planned - without > 0:
            found.append(Bottleneck(name, without, worst.planned - without))
    return tuple(sorted(found, key=lambda b: -b.saves))


def _assumptions(plan: Plan, truncated: int | None) -> list[str]:
    """What the numbers take for granted, each with what would make it true or unneeded."""
    notes: list[str] = []
    for phase in plan.phases:
        fan = phase.fan_out
        if fan is None:
            if phase.approval is not None and phase.approval.expected_duration is None:
                notes.append(f"approval '{phase.id}' counts as 0 s (set approval.expected_duration)")
            continue
        plural = "" if fan.count == 1 else "s"
        hint = "waves.max_targets" if phase.waves is not None else "for_each.expected_targets"
        if not fan.count_known:
            notes.append(f"phase '{phase.id}' assumes {fan.count} target{plural} (set {hint})")
        elif fan.source.param is not None and fan.source.items is None:
            notes.append(f"phase '{phase.id}' assumes {fan.count} target{plural}: the default of param '{fan.source.param}' or {hint}")
        check = phase.waves.health_check if phase.waves else None
        if check is not None and check.expected_duration is None:
            notes.append(f"health checks of phase '{phase.id}' count as 0 s (set health_check.expected_duration)")
    missing = [s.id for s in plan.steps if s.expected_duration is None]
    if missing:
        notes.append(f"{len(missing)} of {len(plan.steps)} steps count as 0 s (no expected_duration): {', '.join(missing)}")
    pools = sorted({s.pool for s in plan.steps if s.pool and s.pool != DEFAULT_POOL})
    undeclared = [p for p in pools if p not in plan.spec.pools]
    if undeclared:
        notes.append(f"undeclared pools are taken as uncapped: {', '.join(undeclared)}")
    if len(undeclared) < len(pools):
        notes.append("pools serve this run alone (no other run or DAG holds their slots)")
    if plan.spec.max_active_tasks is None:
        notes.append(f"at most {AIRFLOW_MAX_ACTIVE_TASKS} tasks at once (Airflow's max_active_tasks default)")
    notes.append("every step succeeds on its first try, and a worker is free whenever a cap allows a task")
    if truncated is not None:
        notes.append(f"only the first {truncated} combinations of branch choices are estimated; the plan has more")
    return notes


def estimate_plan(plan: Plan, max_scenarios: int = 64, calibration: Calibration | None = None) -> Estimate:
    """Simulate every branch combination (up to max_scenarios) and judge the worst against the RTO.

    With a ``calibration`` (what the ledger measured on this deployment, evidence/calibration.py)
    every task also costs the deployment's overhead and the DAG's measured durations: the figure
    to expect on this deployment rather than the spec's own."""
    if max_scenarios < 1:
        raise ArgumentError(f"max_scenarios must be at least 1, got {max_scenarios}")
    caps = caps_of(plan)
    layout = build_layout(plan)
    runs: list[tuple[Scenario, Graph]] = []
    truncated: int | None = None
    for choices in choice_sets(plan):
        if len(runs) == max_scenarios:
            truncated = max_scenarios
            break
        runs.append(_scenario(plan, layout, choices, caps, calibration))
    worst, worst_graph = max(runs, key=lambda run: run[0].planned)
    rto = plan.spec.objectives.rto.total_seconds() if plan.spec.objectives.rto is not None else None
    verdict = "no-rto" if rto is None else ("meets" if worst.planned <= rto else "exceeds")
    return Estimate(
        scenarios=tuple(scenario for scenario, _ in runs),
        worst=worst,
        rto=rto,
        verdict=verdict,
        steps_total=len(plan.steps),
        steps_with_duration=sum(1 for s in plan.steps if s.expected_duration is not None),
        assumptions=tuple(_assumptions(plan, truncated) + (calibration.describe() if calibration else [])),
        bottlenecks=_bottlenecks(worst_graph, caps, worst, calibration),
        calibration=calibration,
    )
