"""Spec -> Plan: resolve references, dependencies and inherited settings; report what does not fit.

Errors found here are whole-spec problems (a branch to a phase that does not exist, a cycle, an
undeclared pool) and carry the spec path of the offending value, which the loader's source map
turns into file:line:column.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from recovery_provider.plan.model import (
    DEFAULT_POOL,
    PROBE_SUFFIX,
    RESERVED_IN_PHASE,
    RESERVED_TOP_LEVEL,
    UNDO_SUFFIX,
    BranchChoice,
    FanOutPlan,
    Plan,
    PlanAction,
    PlanPhase,
    PlanStep,
    WavesPlan,
)
from recovery_provider.plan.targets import literal_targets
from recovery_provider.spec.diagnostics import Diagnostic, Path
from recovery_provider.spec.models import DRY_RUN, Phase, RecoverySpec
from recovery_provider.spec.phase_kinds import FanOut, Waves
from recovery_provider.spec.registry import resolve_uses
from recovery_provider.spec.steps import Action, Step

_RESERVED_HELP = "preflight, outcome, gate, *__probe, *__undo"


def _reserved_step_id(step_id: str, in_phase: bool) -> bool:
    if step_id in RESERVED_TOP_LEVEL:
        return True
    return in_phase and (step_id in RESERVED_IN_PHASE or step_id.endswith((PROBE_SUFFIX, UNDO_SUFFIX)))


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f", did you mean '{close[0]}'?" if close else ""


@dataclass
class _Compiler:
    spec: RecoverySpec
    diagnostics: list[Diagnostic] = field(default_factory=list)
    upstream: dict[str, tuple[str, ...]] = field(default_factory=dict)
    chosen_by: dict[str, str] = field(default_factory=dict)
    step_phase: dict[str, str | None] = field(default_factory=dict)

    def error(self, code: str, message: str, path: Path) -> None:
        self.diagnostics.append(Diagnostic("error", code, message, path=path))

    # -- identities -------------------------------------------------------------------------
    def check_params(self) -> None:
        declared = self.spec.params.get(DRY_RUN)
        if declared is not None and declared.json_type not in (None, "boolean"):
            self.error("dry-run-not-boolean", "'dry_run' is the built-in dry-run switch and must be a boolean (true or false)", ("params", DRY_RUN))

    def check_ids(self) -> None:
        seen_phases: dict[str, int] = {}
        for index, phase in enumerate(self.spec.phases):
            if phase.id in seen_phases:
                self.error("duplicate-id", f"phase id '{phase.id}' is used twice (first at phases[{seen_phases[phase.id]}]): ids must be unique", ("phases", index, "id"))
            seen_phases.setdefault(phase.id, index)
        for index, phase in enumerate(self.spec.phases):
            if phase.id in RESERVED_TOP_LEVEL:
                self.error("reserved-id", f"phase id '{phase.id}' is the name of a task every generated DAG has: rename the phase (e.g. '{phase.id}_checks')", ("phases", index, "id"))
        for path, phase_id, step in self._steps_with_paths():
            if phase_id is None and any(step.id == p.id for p in self.spec.phases):
                self.error("reserved-id", f"finally step '{step.id}' has the id of a phase: rename one of them", (*path, "id"))
            if _reserved_step_id(step.id, in_phase=phase_id is not None):
                self.error("reserved-id", f"step id '{step.id}' clashes with a task the DAG factory adds ({_RESERVED_HELP}): rename the step", (*path, "id"))
            if step.id in self.step_phase:
                self.error("duplicate-id", f"step id '{step.id}' is used twice: step ids must be unique across the spec", (*path, "id"))
            self.step_phase.setdefault(step.id, phase_id)

    def _steps_with_paths(self) -> list[tuple[Path, str | None, Step]]:
        found: list[tuple[Path, str | None, Step]] = []
        for index, phase in enumerate(self.spec.phases):
            key = "parallel" if phase.parallel is not None else "steps"
            found += [(("phases", index, key, j), phase.id, s) for j, s in enumerate(phase.all_steps)]
        found += [(("finally", j), None, s) for j, s in enumerate(self.spec.finally_)]
        return found

    # -- dependencies -----------------------------------------------------------------------
    def resolve_branch_targets(self) -> None:
        phase_ids = [p.id for p in self.spec.phases]
        for index, phase in enumerate(self.spec.phases):
            for j, case in enumerate(phase.branch or []):
                target = case.then if case.otherwise is None else case.otherwise
                key = "then" if case.otherwise is None else "otherwise"
                path = ("phases", index, "branch", j, key)
                assert target is not None
                if target not in phase_ids:
                    self.error("unknown-phase", f"branch '{phase.id}' goes to phase '{target}', which does not exist{_suggest(target, phase_ids)}", path)
                elif target == phase.id:
                    self.error("branch-to-self", f"branch '{phase.id}' cannot choose itself", path)
                elif self.chosen_by.get(target, phase.id) != phase.id:
                    self.error("shared-branch-target", f"phase '{target}' is already a target of branch '{self.chosen_by[target]}': a phase belongs to one branch", path)
                else:
                    self.chosen_by[target] = phase.id

    def resolve_upstream(self) -> None:
        phase_ids = {p.id for p in self.spec.phases}
        for index, phase in enumerate(self.spec.phases):
            branch = self.chosen_by.get(phase.id)
            if phase.after is not None:
                for k, name in enumerate(phase.after):
                    if name not in phase_ids:
                        self.error("unknown-phase", f"phase '{phase.id}' runs after '{name}', which does not exist{_suggest(name, phase_ids)}", ("phases", index, "after", k))
                    elif name == phase.id:
                        self.error("self-dependency", f"phase '{phase.id}' cannot run after itself", ("phases", index, "after", k))
                if branch is not None and branch not in phase.after:
                    self.error("branch-target-after", f"phase '{phase.id}' is a target of branch '{branch}' but does not run after it: remove 'after' or include '{branch}'", ("phases", index, "after"))
                self.upstream[phase.id] = tuple(n for n in phase.after if n in phase_ids and n != phase.id)
            elif branch is not None:
                self.upstream[phase.id] = (branch,)
            elif index == 0:
                self.upstream[phase.id] = ()
            else:
                self.upstream[phase.id] = self._default_upstream(index)

    def _default_upstream(self, index: int) -> tuple[str, ...]:
        """The phase before; or, right after a branch's paths, every dangling end of them (the join)."""
        previous = self.spec.phases[index - 1].id
        earlier = [p.id for p in self.spec.phases[:index]]
        for branch in reversed([p.id for p in self.spec.phases[:index] if p.branch]):
            paths = self._branch_paths(branch, earlier)
            if len(paths.get(previous, ())) == 1:
                on_a_path = [p for p in earlier if len(paths.get(p, ())) == 1]
                waited_for = {u for p in earlier for u in self.upstream.get(p, ())}
                return tuple(p for p in on_a_path if p not in waited_for)
        return (previous,)

    def _branch_paths(self, branch: str, phases: list[str]) -> dict[str, frozenset[str]]:
        """For each phase, the targets of `branch` it is or descends from."""
        paths: dict[str, frozenset[str]] = {}
        for phase in phases:
            if self.chosen_by.get(phase) == branch:
                paths[phase] = frozenset({phase})
            else:
                paths[phase] = frozenset().union(*(paths.get(u, frozenset()) for u in self.upstream.get(phase, ())))
        return paths

    def topological_order(self) -> list[str] | None:
        order: list[str] = []
        indegree = {p: len(set(ups)) for p, ups in self.upstream.items()}
        ready = [p.id for p in self.spec.phases if indegree.get(p.id) == 0]
        downstream = self.downstream()
        while ready:
            current = ready.pop(0)
            order.append(current)
            for child in downstream.get(current, ()):
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        if len(order) < len(self.upstream):
            cycle = self._find_cycle(set(self.upstream) - set(order))
            index = next(i for i, p in enumerate(self.spec.phases) if p.id == cycle[0])
            self.error("cycle", f"phases wait for each other in a cycle: {' -> '.join(cycle)}; break it by changing an 'after'", ("phases", index, "after"))
            return None
        return order

    def _find_cycle(self, stuck: set[str]) -> list[str]:
        start = next(p.id for p in self.spec.phases if p.id in stuck)
        chain = [start]
        while True:
            nxt = next(u for u in self.upstream[chain[-1]] if u in stuck)
            if nxt in chain:
                return [*chain[chain.index(nxt):], nxt][::-1]
            chain.append(nxt)

    def downstream(self) -> dict[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {p.id: [] for p in self.spec.phases}
        for phase, ups in self.upstream.items():
            for up in dict.fromkeys(ups):
                children[up].append(phase)
        return {k: tuple(v) for k, v in children.items()}

    def ancestors(self, phase_id: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.upstream.get(phase_id, ()))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack += self.upstream.get(current, ())
        return seen

    def check_unreachable(self) -> None:
        for index, phase in enumerate(self.spec.phases):
            for up in self.upstream.get(phase.id, ()):
                branch = next((p for p in self.spec.phases if p.id == up and p.branch), None)
                if branch is not None and self.chosen_by.get(phase.id) != branch.id:
                    self.error("unreachable-phase", f"phase '{phase.id}' runs after branch '{branch.id}' but is none of its targets, so it would always be skipped: make it a case of the branch or run it after the branch's targets", ("phases", index))

    # -- references from values -------------------------------------------------------------
    def check_step_reference(self, step_id: str, phase: Phase, path: Path, what: str) -> None:
        if step_id not in self.step_phase:
            self.error("unknown-step", f"{what} refer to step '{step_id}', which does not exist{_suggest(step_id, self.step_phase)}", path)
            return
        owner = self.step_phase[step_id]
        if owner is None or owner not in self.ancestors(phase.id):
            where = f"phase '{owner}'" if owner else "'finally'"
            self.error("step-not-upstream", f"{what} refer to step '{step_id}', but it runs in {where}, which does not finish before phase '{phase.id}'", path)

    def fan_out(self, phase: Phase, index: int, fan: FanOut | Waves) -> FanOutPlan:
        key = "for_each" if isinstance(fan, FanOut) else "waves"
        path = ("phases", index, key, "over")
        source = fan.over
        # What estimates assume: the user's hint, else the static list or the param's default;
        # for waves max_targets is only the upper bound the layout needs, the last resort.
        hint = fan.expected_targets if isinstance(fan, FanOut) else None
        bound = fan.max_targets if isinstance(fan, Waves) else None
        count, known = (hint, True) if hint is not None else ((bound, True) if bound is not None else (1, False))
        if source.items is not None:
            count, known = len(source.items), True
        elif source.param is not None:
            param = self.spec.all_params.get(source.param)
            if param is None:
                self.error("unknown-param", f"targets come from param '{source.param}', which is not declared under params{_suggest(source.param, self.spec.all_params)}", (*path, "param"))
            elif param.json_type not in (None, "array"):
                self.error("param-not-list", f"targets come from param '{source.param}', which is of type {param.json_type}: declare it with type: array", (*path, "param"))
            elif hint is None and isinstance(param.default, list):
                count, known = len(param.default), True
        elif source.step is not None:
            self.check_step_reference(source.step, phase, (*path, "step"), f"the targets of phase '{phase.id}'")
        if isinstance(fan, Waves) and source.items is None and fan.max_targets is None:
            self.error("waves-need-max-targets", f"waves of phase '{phase.id}' take their targets at run time: set max_targets, the most targets a run may bring (the waves are laid out when the DAG is built)", ("phases", index, "waves"))
        return FanOutPlan(source, fan.as_, count, known, fan.max_parallel if isinstance(fan, FanOut) else None)

    def choices(self, phase: Phase, index: int) -> tuple[BranchChoice, ...]:
        found: list[BranchChoice] = []
        params = self.spec.all_params
        for j, case in enumerate(phase.branch or []):
            condition = case.condition
            path: Path = ("phases", index, "branch", j, "when" if condition else "otherwise")
            if condition is not None:
                for name in sorted(condition.params - set(params)):
                    self.error("unknown-param", f"branch '{phase.id}' tests params.{name}, which is not declared under params{_suggest(name, params)}", path)
                for step_id in sorted(condition.steps):
                    self.check_step_reference(step_id, phase, path, f"the conditions of branch '{phase.id}'")
            target = case.then if condition is not None else case.otherwise
            assert target is not None
            found.append(BranchChoice(condition, target, path, case.circuit_breaker))
        fallbacks = [c for c in found if c.condition is None]
        if not fallbacks:
            self.error("branch-no-fallback", f"branch '{phase.id}' has no fallback: add a last case {{otherwise: <phase>}}, the path for an unknown state (a probe can fail too)", ("phases", index, "branch"))
        for extra in fallbacks[1:]:
            self.error("branch-two-fallbacks", f"branch '{phase.id}' has more than one 'otherwise': keep one", extra.path)
        return tuple(found)

    # -- settings ---------------------------------------------------------------------------
    def action(self, action: Action | None, path: Path) -> PlanAction | None:
        if action is None:
            return None
        return PlanAction(resolve_uses(action.uses), action.uses, dict(action.with_), action.timeout, action.expected_duration, path)

    def step(self, step: Step, phase: Phase | None, path: Path) -> PlanStep:
        defaults = self.spec.defaults
        pool = step.pool or (phase.pool if phase else None) or defaults.pool
        if pool is not None and pool != DEFAULT_POOL:
            declared = self.spec.pools.get(pool)
            where = (*path, "pool") if step.pool else (("phases", path[1], "pool") if phase and phase.pool else ("defaults", "pool"))
            if declared is None:
                self.error("undefined-pool", f"step '{step.id}' uses pool '{pool}', which is not declared under pools (Airflow would never schedule it){_suggest(pool, self.spec.pools)}", where)
            elif step.pool_slots > declared.slots:
                self.error("pool-too-small", f"step '{step.id}' takes {step.pool_slots} slots of pool '{pool}', which has {declared.slots}: it could never start", (*path, "pool_slots"))

        # Own setting, else the spec's default (written out: this runs once per step at parse time).
        retries = step.retries if step.retries is not None else defaults.retries
        retry_delay = step.retry_delay if step.retry_delay is not None else defaults.retry_delay
        backoff = step.backoff if step.backoff is not None else defaults.backoff
        max_retry_delay = step.max_retry_delay if step.max_retry_delay is not None else defaults.max_retry_delay
        timeout = step.timeout if step.timeout is not None else defaults.timeout
        return PlanStep(
            id=step.id,
            phase_id=phase.id if phase else None,
            operator=resolve_uses(step.uses),
            uses=step.uses,
            args=dict(step.with_),
            display_name=step.name or step.id.replace("_", " "),
            description=step.description,
            retries=int(retries or 0),
            retry_delay=retry_delay if isinstance(retry_delay, timedelta) else timedelta(0),
            backoff=float(backoff or 1.0),
            max_retry_delay=max_retry_delay,
            timeout=timeout,
            pool=pool,
            pool_slots=step.pool_slots,
            queue=step.queue or (phase.queue if phase else None) or defaults.queue,
            expected_duration=step.expected_duration,
            critical=step.critical,
            compensate=self.action(step.compensate, (*path, "compensate")),
            skip_if=self.action(step.skip_if, (*path, "skip_if")),
            path=path,
            retry_on=tuple(step.retry_on),
            no_retry_on=tuple(step.no_retry_on),
            breaker=step.circuit_breaker,
        )

    def phase(self, phase: Phase, index: int) -> PlanPhase:
        key = "parallel" if phase.parallel is not None else "steps"
        steps = tuple(self.step(s, phase, ("phases", index, key, j)) for j, s in enumerate(phase.all_steps))
        fan = phase.for_each or phase.waves
        fan_plan = self.fan_out(phase, index, fan) if fan is not None else None
        if fan_plan is not None and phase.id not in self.chosen_by:  # a branch chooses a resolver, not a mapped group
            arguments = [s.args for s in steps] + [a.args for s in steps for a in (s.skip_if, s.compensate) if a is not None]
            static = literal_targets(fan_plan.source.items, fan_plan.arg_name, arguments)
            fan_plan = dataclasses.replace(fan_plan, static_targets=static)
        waves = None
        if phase.waves is not None and fan_plan is not None:
            waves = WavesPlan(
                phase.waves.size,
                phase.waves.pause,
                self.action(phase.waves.health_check, ("phases", index, "waves", "health_check")),
                phase.waves.max_failed_waves,
                max(1, math.ceil((phase.waves.max_targets or fan_plan.count) / phase.waves.size)),
            )
        return PlanPhase(
            id=phase.id,
            kind=phase.kind,
            description=phase.description,
            upstream=self.upstream.get(phase.id, ()),
            on_failure=phase.on_failure,
            steps=steps,
            path=("phases", index),
            fan_out=fan_plan,
            waves=waves,
            choices=self.choices(phase, index) if phase.branch else (),
            approval=phase.approval,
            chosen_by=self.chosen_by.get(phase.id),
        )


def compile_plan(spec: RecoverySpec) -> tuple[Plan | None, list[Diagnostic]]:
    """Compile a spec; the plan is None when errors make it meaningless."""
    compiler = _Compiler(spec)
    compiler.check_params()
    compiler.check_ids()
    if any(d.code == "duplicate-id" and d.path[0] == "phases" and d.path[-1] == "id" and len(d.path) == 3 for d in compiler.diagnostics):
        return None, compiler.diagnostics  # dependencies between ambiguous phases would be nonsense
    compiler.resolve_branch_targets()
    compiler.resolve_upstream()
    order = compiler.topological_order()
    if order is None:
        return None, compiler.diagnostics
    compiler.check_unreachable()
    by_id = {p.id: (i, p) for i, p in reversed(list(enumerate(spec.phases)))}
    phases = tuple(compiler.phase(by_id[pid][1], by_id[pid][0]) for pid in order)
    finally_steps = tuple(compiler.step(s, None, ("finally", j)) for j, s in enumerate(spec.finally_))
    return Plan(spec, phases, finally_steps, compiler.downstream()), compiler.diagnostics
