"""The layout: every task a plan's DAG has (id, kind, phase, step, mapping, trigger rule, upstream).

Built once from a Plan, free of Airflow, in the manner of astronomer-cosmos: a plain graph of
entities, then one converter (render/) turns it into Airflow tasks. The renderer, the estimator and
the evidence read this one description, so a task's id and kind are decided here and nowhere else.

Edges are Airflow's: a task of a mapped group also waits for the task whose output maps it
(``mapped_by``), as Airflow adds that edge itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from recovery_provider.plan.model import PROBE_SUFFIX, UNDO_SUFFIX, Plan, PlanPhase, PlanStep

TaskKind = Literal[
    "step", "gate", "resolver", "probe", "undo", "approval", "branch", "wave_slice", "wave_health",
    "wave_checkpoint", "preflight", "outcome", "finally",
]
# Trigger-rule intent, spelled as Airflow's TriggerRule values.
Trigger = Literal["all_success", "all_done", "none_failed", "one_failed", "none_failed_min_one_success"]

# -- task-id naming: the only place that spells the ids of the tasks the DAG factory adds ----------
PREFLIGHT = "preflight"
OUTCOME = "outcome"
LAYOUT_DOC_KEY = "recovery_layout"  # the first phase exit's doc_json: {LAYOUT_DOC_KEY: layout_record, "spec": text}
GATE = "gate"
RESOLVER = "targets"
BRANCH = "choose"
APPROVAL = "approve"
EACH = "each"  # group id of the mapped task group inside a for_each phase
UNDO_GROUP = "undo"  # group id of the per-target compensations of a for_each phase


def in_phase(phase_id: str, name: str, group: str | None = None) -> str:
    return f"{phase_id}.{group}.{name}" if group else f"{phase_id}.{name}"


def wave_name(wave: int) -> str:
    """Waves count from 1 in ids (``wave1``), as people do; `wave` is 0-based."""
    return f"wave{wave + 1}"


def probe_name(step_id: str) -> str:
    return f"{step_id}{PROBE_SUFFIX}"


def undo_name(step_id: str) -> str:
    return f"{step_id}{UNDO_SUFFIX}"


MAX_LEAVES_FOLLOWED = 4  # a fail_fast phase with more last tasks is followed through its gate
CONTROL_KINDS = frozenset({"resolver", "branch", "wave_slice", "wave_checkpoint", "preflight", "outcome"})


@dataclass(frozen=True)
class LayoutTask:
    id: str
    kind: TaskKind
    phase_id: str | None
    step_id: str | None  # the step this task runs, probes or undoes
    trigger: Trigger
    upstream: tuple[str, ...]
    group: str | None = None  # the mapped task group inside the phase (each, undo, waveN)
    mapped_by: str | None = None  # the task whose output maps this task over the targets
    targets: tuple[Any, ...] | None = None  # or the literal targets it maps over (no resolver)
    wave: int | None = None  # 0-based
    serves: str | None = None  # probe/undo: the task id of the step it probes or undoes
    # gate: Airflow's trigger rule alone judges the phase (fail_fast), so no worker runs it
    by_trigger_rule: bool = False

    @property
    def mapped(self) -> bool:
        return self.mapped_by is not None or self.targets is not None


@dataclass(frozen=True)
class PhaseLayout:
    id: str
    entries: tuple[str, ...]  # tasks that wait for the upstream phases
    exit: str  # what downstream phases wait for: the gate, or the branch/approval task
    work: tuple[str, ...]  # task ids the gate judges
    waves: tuple[tuple[str, ...], ...] = ()  # per wave: the task ids its checkpoint judges


@dataclass(frozen=True)
class Layout:
    dag_id: str
    tasks: tuple[LayoutTask, ...]  # in creation order, a topological order
    phases: tuple[PhaseLayout, ...]
    _by_id: dict[str, LayoutTask] = field(init=False, repr=False, compare=False)
    _probes: dict[str | None, str] = field(init=False, repr=False, compare=False)  # served step -> its probe

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {t.id: t for t in self.tasks})
        # one pass, not a scan per step: rendering 1,000 steps spent 47 ms finding probes
        object.__setattr__(self, "_probes", {t.serves: t.id for t in reversed(self.tasks) if t.kind == "probe"})

    def task(self, task_id: str) -> LayoutTask:
        return self._by_id[task_id]

    def get(self, task_id: str) -> LayoutTask | None:
        return self._by_id.get(task_id)

    def phase(self, phase_id: str) -> PhaseLayout:
        return next(p for p in self.phases if p.id == phase_id)

    @property
    def edges(self) -> frozenset[tuple[str, str]]:
        return frozenset((up, t.id) for t in self.tasks for up in t.upstream)

    def probe_of(self, task_id: str) -> str | None:
        return self._probes.get(task_id)

    def kinds(self) -> dict[str, str]:
        """Task id -> kind: what the evidence classifies task instances by (JSON-safe)."""
        return {t.id: t.kind for t in self.tasks}


class _Builder:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.tasks: list[LayoutTask] = []
        self.phases: list[PhaseLayout] = []
        self.exits: dict[str, str] = {}
        self.followed: dict[str, tuple[str, ...]] = {}  # what the phases after a phase wait for
        self.after_gates: list[str] = []  # compensations: `finally` waits for them too

    def add(self, task: LayoutTask) -> str:
        self.tasks.append(task)
        return task.id

    def build(self) -> Layout:
        # a worker task costs ~1 s of the RTO: preflight only when there are pools to check
        start = (self.add(LayoutTask(PREFLIGHT, "preflight", None, None, "all_success", ())),) if self.plan.spec.pools else ()
        for phase in self.plan.phases:
            upstream = tuple(dict.fromkeys(t for u in phase.upstream for t in self.followed[u])) or start
            self.exits[phase.id] = self.phase(phase, upstream)
        last = tuple(self.exits[p] for p in self.plan.leaves) + tuple(self.after_gates)
        for step in self.plan.finally_steps:
            last = (self.add(LayoutTask(step.id, "finally", None, step.id, "all_done", last)),)
        if self.plan.finally_steps or self.after_gates:
            # Airflow decides a run's state by its leaves: a `finally` step or a compensation that
            # succeeds would hide the failed phase before it, so one worker task decides instead.
            # Otherwise the leaves are gates a failure reaches (upstream_failed), and the verdict,
            # partial or not, is the listener's (evidence/verdict.py): no task on the critical path.
            self.add(LayoutTask(OUTCOME, "outcome", None, None, "all_done",
                                tuple(dict.fromkeys(last + tuple(self.exits.values())))))
        return Layout(self.plan.id, tuple(self.tasks), tuple(self.phases))

    def phase(self, phase: PlanPhase, upstream: tuple[str, ...]) -> str:
        if phase.kind in ("branch", "approval"):
            kind: TaskKind = "branch" if phase.kind == "branch" else "approval"
            exit_id = self.add(LayoutTask(in_phase(phase.id, BRANCH if kind == "branch" else APPROVAL), kind,
                                          phase.id, None, "none_failed", upstream))
            self.phases.append(PhaseLayout(phase.id, (exit_id,), exit_id, ()))
            self.followed[phase.id] = (exit_id,)
            return exit_id
        gate_id = in_phase(phase.id, GATE)
        waves: tuple[tuple[str, ...], ...] = ()
        if phase.waves is not None:
            entries, leaves, work, waves = self.waves(phase, upstream)
        elif phase.fan_out is not None and phase.fan_out.static_targets is not None:
            chain = self.chain(phase, upstream, "none_failed", group=EACH, targets=phase.fan_out.static_targets)
            entries, leaves, work = tuple(chain.entries), chain.leaves, tuple(chain.step_ids)
        elif phase.fan_out is not None:
            resolver = self.add(LayoutTask(in_phase(phase.id, RESOLVER), "resolver", phase.id, None, "none_failed", upstream))
            entries = (resolver,)
            chain = self.chain(phase, (resolver,), "all_success", group=EACH, mapped_by=resolver)
            leaves, work = chain.leaves, tuple(chain.step_ids)
        else:
            chain = self.chain(phase, upstream, "none_failed")
            entries, leaves, work = tuple(chain.entries), tuple(chain.all_ids), tuple(chain.all_ids)
        if _judged_by_trigger_rule(phase):
            self.add(LayoutTask(gate_id, "gate", phase.id, None, "none_failed_min_one_success", leaves, by_trigger_rule=True))
            # The next phases wait for what the gate waits for, with the same verdict (none_failed):
            # a gate between them would cost a scheduler loop at every phase boundary. Past a few
            # leaves they wait for the gate: leaves x entries edges, each hashing the whole DAG in
            # Airflow's set_upstream, made a spec of 100 phases of 10 steps render 3x slower.
            self.followed[phase.id] = leaves if len(leaves) <= MAX_LEAVES_FOLLOWED else (gate_id,)
        else:
            self.add(LayoutTask(gate_id, "gate", phase.id, None, "all_done", leaves))
            self.followed[phase.id] = (gate_id,)
        self.phases.append(PhaseLayout(phase.id, entries, gate_id, work, waves))
        if phase.waves is None:  # compensate in waves is refused by the renderer
            static = phase.fan_out.static_targets if phase.fan_out is not None else None
            mapped_by = entries[0] if phase.fan_out is not None and static is None else None
            self.after_gates += self.compensations(phase, gate_id, mapped_by, static)
        return gate_id

    def chain(self, phase: PlanPhase, upstream: tuple[str, ...], entry_trigger: Trigger, *, group: str | None = None,
              mapped_by: str | None = None, wave: int | None = None, targets: tuple[Any, ...] | None = None) -> _Chain:
        """The phase's steps, in order (or side by side in a parallel phase), each after its probe.

        One builder for sequential and mapped phases: after a probed step (which may skip, the work
        being done) the next goes on unless something failed; after a non-critical step it goes on
        whatever that step did.
        """
        chain = _Chain()
        previous: PlanStep | None = None
        previous_id: str | None = None
        parallel = phase.kind == "parallel"
        mapping = (mapped_by,) if mapped_by else ()
        for step in phase.steps:
            trigger: Trigger
            if previous is None or parallel:
                trigger, ups = entry_trigger, upstream
            else:
                trigger = "none_failed" if previous.skip_if is not None else ("all_done" if not previous.critical else "all_success")
                ups = (previous_id, *mapping) if previous_id else mapping
            step_task_id = in_phase(phase.id, step.id, group)
            head: str | None = None
            if step.skip_if is not None:
                head = self.add(LayoutTask(in_phase(phase.id, probe_name(step.id), group), "probe", phase.id, step.id,
                                           trigger, ups, group, mapped_by, targets, wave, serves=step_task_id))
                chain.all_ids.append(head)
                trigger, ups = "all_success", (head, *mapping)
            self.add(LayoutTask(step_task_id, "step", phase.id, step.id, trigger, ups, group, mapped_by, targets, wave))
            chain.all_ids.append(step_task_id)
            chain.step_ids.append(step_task_id)
            if previous is None or parallel:
                chain.entries.append(head or step_task_id)
            previous, previous_id = step, step_task_id
        chain.leaves = tuple(chain.step_ids if parallel else chain.step_ids[-1:])
        return chain

    def compensations(self, phase: PlanPhase, gate_id: str, mapped_by: str | None,
                      targets: tuple[Any, ...] | None = None) -> list[str]:
        """Undo, newest first, what the phase had done when its gate fails (per target in fan-outs).

        Returns what `finally` waits for: every undo task, or the last of a mapped undo group.
        """
        per_target = mapped_by is not None or targets is not None
        group = UNDO_GROUP if per_target else None
        mapping = (mapped_by,) if mapped_by else ()
        previous = gate_id
        undone: list[str] = []
        for step in reversed(phase.steps):
            if step.compensate is None:
                continue
            trigger: Trigger = "one_failed" if previous == gate_id else "all_done"
            serves = in_phase(phase.id, step.id, EACH if per_target else None)
            previous = self.add(LayoutTask(in_phase(phase.id, undo_name(step.id), group), "undo", phase.id, step.id,
                                           trigger, (previous, *mapping), group, mapped_by, targets, serves=serves))
            undone.append(previous)
        return undone[-1:] if per_target else undone

    def waves(self, phase: PlanPhase, upstream: tuple[str, ...]) -> tuple[
            tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[tuple[str, ...], ...]]:
        """Waves one after another: slice of targets, mapped steps, health check, checkpoint.

        Literal targets need neither the resolver nor the slices: each wave maps over its part."""
        assert phase.waves is not None and phase.fan_out is not None
        static, size = phase.fan_out.static_targets, phase.waves.size
        entries: tuple[str, ...] = ()
        previous: str | None = None
        if static is None:
            previous = self.add(LayoutTask(in_phase(phase.id, RESOLVER), "resolver", phase.id, None, "none_failed", upstream))
            entries = (previous,)
        per_wave: list[tuple[str, ...]] = []
        work: list[str] = []
        health_ids: list[str] = []
        last: tuple[str, ...] = ()
        for wave in range(phase.waves.wave_count):
            name = wave_name(wave)
            if static is not None:
                wave_targets = static[wave * size:(wave + 1) * size]
                if previous is None:  # the first wave waits for the upstream phases, as a resolver would
                    chain = self.chain(phase, upstream, "none_failed", group=name, wave=wave, targets=wave_targets)
                else:
                    chain = self.chain(phase, (previous,), "all_success", group=name, wave=wave, targets=wave_targets)
                entries = entries or tuple(chain.entries)
            else:
                assert previous is not None
                chunk = self.add(LayoutTask(in_phase(phase.id, f"{name}_targets"), "wave_slice", phase.id, None,
                                            "all_success", (previous,), wave=wave))
                chain = self.chain(phase, (chunk,), "all_success", group=name, mapped_by=chunk, wave=wave)
            # a non-critical step's failure fails neither its target nor its wave
            judged = [t for t, step in zip(chain.step_ids, phase.steps, strict=True) if step.critical]
            work += chain.step_ids
            last = chain.leaves
            if phase.waves.health_check is not None:
                health = self.add(LayoutTask(in_phase(phase.id, f"{name}_health"), "wave_health", phase.id, None,
                                             "none_failed_min_one_success", last, wave=wave))
                judged.append(health)
                health_ids.append(health)
                last = (health,)
            per_wave.append(tuple(judged))
            if wave < phase.waves.wave_count - 1:
                previous = self.add(LayoutTask(in_phase(phase.id, f"{name}_checkpoint"), "wave_checkpoint", phase.id,
                                               None, "all_done", last, wave=wave))
                last = (previous,)
        return entries, last, tuple(work + health_ids), tuple(per_wave)


def _judged_by_trigger_rule(phase: PlanPhase) -> bool:
    """Whether Airflow's trigger rules alone give the gate's verdict, with no worker process.

    ``none_failed_min_one_success`` on the phase's last tasks is fail_fast: any failure makes the
    gate upstream_failed (so the next phases do not run), a phase skipped whole is skipped, else
    it passes. Not for the other policies, non-critical steps or waves (they need the policy), nor
    compensations: the undo tasks must wait for every task of the phase to end, which the rule
    does not (it fails the gate at the first failure).
    """
    return (phase.on_failure.mode == "fail_fast" and phase.waves is None
            and all(step.critical and step.compensate is None for step in phase.steps))


@dataclass
class _Chain:
    entries: list[str] = field(default_factory=list)
    all_ids: list[str] = field(default_factory=list)  # probes and steps, in order
    step_ids: list[str] = field(default_factory=list)
    leaves: tuple[str, ...] = ()  # what waits for the chain waits for these


def build_layout(plan: Plan) -> Layout:
    """The tasks and edges of the DAG rendered from this plan."""
    return _Builder(plan).build()


def layout_record(layout: Layout) -> dict[str, list[Any]]:
    """Task id -> [kind, phase, mapped group, mapped by(, literal targets)]: what the evidence
    classifies a run's task instances by. The renderer stores it in the DAG (a doc_json),
    so it is serialized with the DAG version the run used and describes the DAG that ran, not a
    spec edited since."""
    return {t.id: [t.kind, t.phase_id, t.group, t.mapped_by, *([list(t.targets)] if t.targets is not None else [])]
            for t in layout.tasks}
