"""Plan -> Airflow DAG: the only module that turns recovery concepts into Airflow primitives.

Shape of every generated DAG::

    preflight -> [phase TaskGroups in plan order, each ending in one gate task] -> finally -> outcome

- Each phase's entry tasks wait for the gates of its upstream phases (``none_failed``), so edges
  stay O(phases) instead of leaves x roots, and a skipped branch path lets the join run.
- The gate (``all_done``) applies the phase's failure policy and fails the phase or lets it pass,
  flagged partial. Branch and approval phases end in their decision task instead.
- Compensations run after a failed gate, in reverse step order, each only if its step succeeded.
- ``finally`` steps run whatever happened; the single ``outcome`` leaf then fails the run if any
  phase failed, so cleanup never hides a failure.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.sdk import DAG, Param, TaskGroup, TriggerRule, task_group
from airflow.sdk.bases.operator import BaseOperator

from recovery_provider.exceptions import RenderError
from recovery_provider.plan.layout import build_layout, layout_record
from recovery_provider.plan.model import PROBE_SUFFIX, UNDO_SUFFIX, Plan, PlanAction, PlanPhase, PlanStep
from recovery_provider.render import runtime
from recovery_provider.render.docs import runbook_markdown
from recovery_provider.render.operators import WaveCheckpointOperator
from recovery_provider.render.policy import mentions_target

EACH = "each"  # group id of the mapped task group inside a for_each phase
UNDO_GROUP = "undo"  # group id of the per-target compensations of a for_each phase


class _Renderer:
    def __init__(self, plan: Plan, source: str) -> None:
        self.plan = plan
        self.source = source
        self.exits: dict[str, BaseOperator] = {}
        self.after_gates: list[Any] = []  # compensations (tasks or mapped groups): finally waits for them too
        # for_each phases: what their per-target compensation group is mapped with
        self.fan_out_undo: dict[str, tuple[dict[str, dict[str, Any]], list[str], Any]] = {}
        self.classes: dict[str, type[BaseOperator]] = {}  # operator path -> class, once per DAG

    def fail(self, item: PlanStep | PlanAction, message: str) -> RenderError:
        """A render error located at the step (or action) in the spec, shown as file:line:col."""
        where = f"step '{item.id}': " if isinstance(item, PlanStep) else ""
        return RenderError(f"{where}{' '.join(message.split())}", item.path)  # one line, as every diagnostic

    # -- operators ------------------------------------------------------------------------------
    def operator_class(self, item: PlanStep | PlanAction) -> type[BaseOperator]:
        cached = self.classes.get(item.operator)
        if cached is not None:
            return cached
        module_name, _, attribute = item.operator.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except Exception as exc:  # a module that fails to import fails this step, not the loader
            raise self.fail(item, f"cannot import operator '{item.uses}' ({item.operator}): {type(exc).__name__}: {exc}") from None
        if not (isinstance(found, type) and issubclass(found, BaseOperator)):
            raise self.fail(item, f"'{item.uses}' ({item.operator}) is not an Airflow operator class")
        self.classes[item.operator] = found
        return found

    def construct(self, item: PlanStep | PlanAction, task_id: str, extra: dict[str, Any]) -> BaseOperator:
        cls = self.operator_class(item)
        kwargs = {**item.args, **extra, "task_id": task_id}
        if isinstance(kwargs.get("python_callable"), str):
            kwargs["python_callable"] = self.python_callable(item, kwargs["python_callable"])
        if not getattr(cls, "supports_dry_run", False):
            kwargs.setdefault("pre_execute", runtime.skip_in_dry_run)
        try:
            return cls(**kwargs)
        except Exception as exc:  # whatever an operator raises about its arguments is this step's problem
            raise self.fail(item, f"{cls.__name__} rejected its arguments: {type(exc).__name__}: {exc}") from None

    def python_callable(self, item: PlanStep | PlanAction, path: str) -> Callable[..., Any]:
        """`package.module:function` (or `package.module.function`) from YAML, imported and checked."""
        module_name, colon, attribute = path.partition(":")
        if not colon:
            module_name, _, attribute = path.rpartition(".")
        hint = "give python_callable as an import path such as 'my_package.tasks:restore_index'"
        if not module_name or not attribute:
            raise self.fail(item, f"python_callable '{path}' is not an import path: {hint}")
        try:
            found = getattr(importlib.import_module(module_name), attribute)
        except AttributeError:
            raise self.fail(item, f"python_callable '{path}': module '{module_name}' has no '{attribute}': {hint}") from None
        except Exception as exc:
            raise self.fail(item, f"python_callable '{path}': cannot import module '{module_name}' ({type(exc).__name__}: {exc}): {hint}") from None
        if not callable(found):
            raise self.fail(item, f"python_callable '{path}' is a {type(found).__name__}, not a function: {hint}")
        return found  # type: ignore[no-any-return]

    def step_task(self, step: PlanStep, trigger_rule: str = TriggerRule.ALL_SUCCESS,
                  overrides: dict[str, Any] | None = None, max_active: int | None = None,
                  skip_when: str | None = None) -> BaseOperator:
        extra: dict[str, Any] = {
            "retries": step.retries,
            "retry_delay": step.retry_delay,
            "execution_timeout": step.timeout,
            "task_display_name": step.display_name,
            "trigger_rule": trigger_rule,
            "pool_slots": step.pool_slots,
        }
        if overrides:
            extra.update(overrides)
        if step.description:
            extra["doc_md"] = step.description
        if step.backoff > 1:
            extra["retry_exponential_backoff"] = step.backoff
            extra["max_retry_delay"] = step.max_retry_delay
        if step.pool:
            extra["pool"] = step.pool
        if step.queue:
            extra["queue"] = step.queue
        if max_active:
            extra["max_active_tis_per_dagrun"] = max_active
        if skip_when is not None:
            extra["pre_execute"] = _skip_when_done(skip_when, dry_run_aware=getattr(self.operator_class(step), "supports_dry_run", False))
        return self.construct(step, step.id, extra)

    # -- the DAG ----------------------------------------------------------------------------------
    def dag(self) -> DAG:
        spec = self.plan.spec
        start_date = spec.start_date
        if not isinstance(start_date, dt.datetime):
            start_date = dt.datetime.combine(start_date, dt.time(), tzinfo=dt.timezone.utc)
        elif start_date.tzinfo is None:
            start_date = start_date.replace(tzinfo=dt.timezone.utc)
        with DAG(
            dag_id=spec.id,
            description=spec.description or None,
            schedule=spec.schedule,
            start_date=start_date,
            catchup=spec.catchup,
            tags=[*spec.tags, "recovery"],
            params={name: _param(p) for name, p in spec.all_params.items()},
            doc_md=runbook_markdown(self.plan),
            max_active_tasks=self.plan.max_active_tasks,
            dagrun_timeout=spec.run_timeout,
            default_args={"owner": spec.owner},
            deadline=_deadline(self.plan),
            render_template_as_native_obj=True,
            auto_register=False,  # a spec refused halfway must leave no partial DAG behind
        ) as dag:
            start = PythonOperator(
                task_id="preflight", python_callable=runtime.preflight, retries=0,
                op_kwargs={"pools": {name: pool.slots for name, pool in spec.pools.items()}},
                task_display_name="preflight", doc_md="Fails at once when a pool this DAG needs is missing or too small.",
            )
            for phase in self.plan.phases:
                upstream = [self.exits[u] for u in phase.upstream] or [start]
                self.exits[phase.id] = self.phase(phase, upstream)
            last: Sequence[BaseOperator] = [self.exits[p] for p in self.plan.leaves] + self.after_gates
            for step in self.plan.finally_steps:
                task = self.step_task(step, TriggerRule.ALL_DONE)
                task.set_upstream(list(last))
                last = [task]
            gate_ids = [task.task_id for task in self.exits.values()]
            # The plan goes in a partial (the worker's own parse, never serialized nor templated):
            # the estimate for the path taken comes from it, not from re-reading the spec from disk.
            # The layout goes in doc_json, serialized with the DAG version a run uses (templated
            # fields such as op_kwargs are cut at 4096 characters): the evidence classifies by it.
            verdict = PythonOperator(
                task_id="outcome", python_callable=functools.partial(runtime.outcome, plan=self.plan),
                op_kwargs={"gate_ids": gate_ids}, doc_json=json.dumps(layout_record(build_layout(self.plan))),
                trigger_rule=TriggerRule.ALL_DONE, retries=0, task_display_name="outcome",
                doc_md="Fails the run when any phase failed (after `finally`); flags a partial recovery.",
            )
            verdict.set_upstream(list(last) + list(self.exits.values()))
        return dag

    def phase(self, phase: PlanPhase, upstream: list[BaseOperator]) -> BaseOperator:
        with TaskGroup(group_id=phase.id, tooltip=phase.description or phase.kind):
            if phase.kind == "branch":
                return self.branch(phase, upstream)
            if phase.kind == "approval":
                return self.approval(phase, upstream)
            if phase.kind == "for_each":
                entries, work, work_ids = self.fan_out(phase)
            elif phase.kind == "waves":
                entries, work, work_ids = self.waves(phase)
            else:
                entries, work, work_ids = self.steps(phase)
            gate = PythonOperator(
                task_id="gate", python_callable=runtime.gate, trigger_rule=TriggerRule.ALL_DONE, retries=0,
                task_display_name=f"{phase.id}: {phase.on_failure.describe()}",
                op_kwargs={
                    "phase_id": phase.id,
                    "policy": phase.on_failure.model_dump(mode="json"),
                    "fan_out": phase.fan_out is not None,
                    "non_critical": [s.id for s in phase.steps if not s.critical],
                    "work_tasks": work_ids,
                },
            )
            gate.set_upstream(work)
            if phase.id in self.fan_out_undo:
                self.mapped_compensations(phase, gate, *self.fan_out_undo[phase.id])
            else:
                self.compensations(phase, gate)
        for up in upstream:  # one call per upstream gate: per-entry calls cost O(entries) hashing
            up.set_downstream(entries)
        return gate

    def steps(self, phase: PlanPhase) -> tuple[list[Any], list[Any], list[str]]:
        """Sequential or parallel steps; entries wait for upstream gates with none_failed.

        A step with `skip_if` is preceded by its probe; the step skips itself when the probe
        returned something truthy (the work is already done). A probe that fails stops the step.
        """
        entries: list[BaseOperator] = []
        work: list[BaseOperator] = []
        previous: BaseOperator | None = None
        for index, step in enumerate(phase.steps):
            first = phase.kind == "parallel" or index == 0
            after_optional = not first and not phase.steps[index - 1].critical
            # a step its probe skipped (work already done) must not skip the steps after it
            after_probed = not first and phase.steps[index - 1].skip_if is not None
            rule = (TriggerRule.NONE_FAILED if first or after_probed
                    else (TriggerRule.ALL_DONE if after_optional else TriggerRule.ALL_SUCCESS))
            probe = None
            if step.skip_if is not None:
                probe = self.construct(step.skip_if, f"{step.id}{PROBE_SUFFIX}", {
                    "trigger_rule": rule, "retries": 0, "execution_timeout": step.skip_if.timeout,
                    "task_display_name": f"{step.display_name}: already done?",
                })
                rule = TriggerRule.ALL_SUCCESS
            task = self.step_task(step, rule, skip_when=probe.task_id if probe else None)
            head = probe or task
            if probe is not None:
                task.set_upstream(probe)
                work.append(probe)
            if first:
                entries.append(head)
            elif previous is not None:
                head.set_upstream(previous)
            work.append(task)
            if phase.kind != "parallel":
                previous = task
        return entries, work, [t.task_id for t in work]

    def target_arguments(self, phase: PlanPhase) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Per step: the arguments that mention the target, and whether the step takes it by name."""
        fan = phase.fan_out
        assert fan is not None
        arg = fan.arg_name
        step_args: dict[str, dict[str, Any]] = {}
        takes_target: list[str] = []
        for step in phase.steps:
            if step.compensate is not None and phase.kind == "waves":
                raise self.fail(step, "'compensate' on a step of a waves phase is not supported yet: use for_each with max_parallel, or move the step to a sequential or parallel phase")
            # probes and compensations run per target too: their arguments get the target like the step's
            for suffix, action in ((PROBE_SUFFIX, step.skip_if), (UNDO_SUFFIX, step.compensate)):
                if action is None:
                    continue
                key = f"{step.id}{suffix}"
                action_cls = self.operator_class(action)
                step_args[key] = {k: v for k, v in action.args.items() if mentions_target(v, arg)}
                if arg not in action.args and _accepts(action_cls, arg):
                    takes_target.append(key)
            cls = self.operator_class(step)
            step_args[step.id] = {k: v for k, v in step.args.items() if mentions_target(v, arg)}
            if arg not in step.args and _accepts(cls, arg):
                takes_target.append(step.id)
            for name in [*step_args[step.id], *([arg] if step.id in takes_target else [])]:
                if name not in cls.template_fields:
                    raise self.fail(step, f"argument '{name}' receives the fan-out target, but {cls.__name__} does not template it; pass the target through a templated argument")
            if not step_args[step.id] and step.id not in takes_target:
                raise self.fail(step, f"in fan-out phase '{phase.id}' it neither takes '{arg}' nor uses {{{{ {arg} }}}} in its arguments: every target would do the same")
        return step_args, takes_target

    def resolver(self, phase: PlanPhase, step_args: dict[str, dict[str, Any]], takes_target: list[str],
                 limit: int | None = None) -> BaseOperator:
        """The task that turns the targets into one kwargs dict per target."""
        fan = phase.fan_out
        assert fan is not None
        # A partial, not op_kwargs: op_kwargs is templated, and the {{ target }} placeholders in the
        # step arguments are ours to fill per target, not Jinja's.
        resolve = functools.partial(
            runtime.resolve_targets, fan.source.model_dump(mode="json", exclude_none=True), fan.arg_name, step_args,
            takes_target, limit,
        )
        return PythonOperator(
            task_id="targets", python_callable=resolve, trigger_rule=TriggerRule.NONE_FAILED,
            retries=0, task_display_name=f"{phase.id}: targets",
        )

    def mapped_group(self, phase: PlanPhase, group_id: str, step_args: dict[str, dict[str, Any]],
                     takes_target: list[str], targets: Any, build: Callable[[Callable[[str], dict[str, Any]]], None]) -> Any:
        """A task group mapped over the targets; `build(args_of)` creates its tasks, where
        `args_of(key)` gives the per-target arguments of step (or probe/undo) `key`."""
        arg = phase.fan_out.arg_name if phase.fan_out else ""
        names = ["target", *(f"{s}__{n}" for s, args in step_args.items() for n in args),
                 *(f"{s}__{arg}" for s in takes_target)]

        def body(**mapped: Any) -> None:
            def args_of(key: str) -> dict[str, Any]:
                found = {n: mapped[f"{key}__{n}"] for n in step_args.get(key, {})}
                if key in takes_target:
                    found[arg] = mapped[f"{key}__{arg}"]
                return found

            build(args_of)

        body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in dict.fromkeys(names)]
        )
        return task_group(group_id=group_id)(body).expand_kwargs(targets)

    def mapped_steps(self, phase: PlanPhase, group_id: str, step_args: dict[str, dict[str, Any]],
                     takes_target: list[str], targets: Any) -> Any:
        """The phase's steps in order, once per target; a step's `skip_if` probe runs just before it."""
        fan = phase.fan_out
        assert fan is not None

        def build(args_of: Callable[[str], dict[str, Any]]) -> None:
            previous: BaseOperator | None = None
            previous_probed = False
            for step in phase.steps:
                # after a step its probe may skip (work already done), go on unless something failed
                rule = TriggerRule.NONE_FAILED if previous_probed else TriggerRule.ALL_SUCCESS
                probe = None
                if step.skip_if is not None:
                    probe = self.construct(step.skip_if, f"{step.id}{PROBE_SUFFIX}", {
                        **args_of(f"{step.id}{PROBE_SUFFIX}"), "retries": 0, "execution_timeout": step.skip_if.timeout,
                        "max_active_tis_per_dagrun": fan.max_parallel, "task_display_name": f"{step.display_name}: already done?",
                        "trigger_rule": rule,
                    })
                task = self.step_task(step, rule if probe is None else TriggerRule.ALL_SUCCESS,
                                      overrides=args_of(step.id), max_active=fan.max_parallel,
                                      skip_when=probe.task_id if probe else None)
                if probe is not None:
                    task.set_upstream(probe)
                if previous is not None:
                    (probe or task).set_upstream(previous)
                previous, previous_probed = task, probe is not None

        return self.mapped_group(phase, group_id, step_args, takes_target, targets, build)

    def mapped_compensations(self, phase: PlanPhase, gate: BaseOperator, step_args: dict[str, dict[str, Any]],
                             takes_target: list[str], targets: Any) -> None:
        """Per target, newest first, undo the steps that succeeded for that target when the gate fails."""
        undoable = [s for s in reversed(phase.steps) if s.compensate is not None]
        if not undoable:
            return

        def build(args_of: Callable[[str], dict[str, Any]]) -> None:
            previous: BaseOperator | None = None
            for step in undoable:
                assert step.compensate is not None
                task = self.construct(step.compensate, f"{step.id}{UNDO_SUFFIX}", {
                    **args_of(f"{step.id}{UNDO_SUFFIX}"),
                    "trigger_rule": TriggerRule.ONE_FAILED if previous is None else TriggerRule.ALL_DONE,
                    "pre_execute": _compensate_only_if(f"{phase.id}.{EACH}.{step.id}", gate.task_id, same_target=True),
                    "task_display_name": f"undo {step.display_name}", "retries": step.retries,
                    "execution_timeout": step.compensate.timeout,
                })
                if previous is None:
                    task.set_upstream(gate)
                else:
                    task.set_upstream(previous)
                previous = task

        group = self.mapped_group(phase, UNDO_GROUP, step_args, takes_target, targets, build)
        self.after_gates.append(group)

    def fan_out(self, phase: PlanPhase) -> tuple[list[Any], list[Any], list[str]]:
        """A resolver task turns the targets into kwargs; a mapped task group runs the steps per target."""
        step_args, takes_target = self.target_arguments(phase)
        resolver = self.resolver(phase, step_args, takes_target)
        group = self.mapped_steps(phase, EACH, step_args, takes_target, resolver.output)
        self.fan_out_undo[phase.id] = (step_args, takes_target, resolver.output)
        return [resolver], [group], [f"{phase.id}.{EACH}.{s.id}" for s in phase.steps]

    def waves(self, phase: PlanPhase) -> tuple[list[Any], list[Any], list[str]]:
        """Waves one after another: targets, mapped steps, health check, then a checkpoint that
        stops the rest after too many failed waves or pauses before the next wave."""
        waves = phase.waves
        assert waves is not None and phase.fan_out is not None
        step_args, takes_target = self.target_arguments(phase)
        resolver = self.resolver(phase, step_args, takes_target, limit=waves.size * waves.wave_count)
        previous: BaseOperator = resolver
        tasks_so_far: list[list[str]] = []
        work_ids: list[str] = []
        last: list[Any] = []
        for index in range(waves.wave_count):
            name = f"wave{index + 1}"
            chunk = PythonOperator(
                task_id=f"{name}_targets", python_callable=runtime.wave_slice, retries=0,
                op_kwargs={"resolver_task_id": resolver.task_id, "wave": index, "size": waves.size},
                task_display_name=f"{phase.id}: {name} targets",
            )
            chunk.set_upstream(previous)
            group = self.mapped_steps(phase, name, step_args, takes_target, chunk.output)
            wave_tasks = [f"{phase.id}.{name}.{s.id}" for s in phase.steps]
            work_ids += wave_tasks
            last = [group]
            if waves.health_check is not None:
                health = self.construct(waves.health_check, f"{name}_health", {
                    "trigger_rule": TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, "retries": 0,
                    "execution_timeout": waves.health_check.timeout, "task_display_name": f"{phase.id}: {name} health",
                })
                health.set_upstream(group)
                wave_tasks.append(health.task_id)
                last = [health]
            tasks_so_far.append(wave_tasks)
            if index < waves.wave_count - 1:
                checkpoint = WaveCheckpointOperator(
                    task_id=f"{name}_checkpoint", waves=[list(w) for w in tasks_so_far],
                    max_failed_waves=waves.max_failed_waves, pause=waves.pause, retries=0,
                    trigger_rule=TriggerRule.ALL_DONE, task_display_name=f"{phase.id}: after {name}",
                )
                checkpoint.set_upstream(last)
                previous = checkpoint
                last = [checkpoint]
        health_ids = [t for wave in tasks_so_far for t in wave if t.endswith("_health")]
        return [resolver], last, work_ids + health_ids

    def branch(self, phase: PlanPhase, upstream: list[BaseOperator]) -> BaseOperator:
        """The branch task skips every target it does not choose; their gates then skip too."""
        task = BranchPythonOperator(
            task_id="choose", python_callable=runtime.choose_branch, trigger_rule=TriggerRule.NONE_FAILED,
            retries=0, task_display_name=f"{phase.id}: choose",
            op_kwargs={
                "choices": [{"when": c.condition.text if c.condition else None, "target": c.target} for c in phase.choices],
                "entries": {},  # filled once the targets exist (see _link_branches)
            },
        )
        task.set_upstream(upstream)
        return task

    def approval(self, phase: PlanPhase, upstream: list[BaseOperator]) -> BaseOperator:
        """Reject (or a timeout that rejects) fails the task: a refused cutover must not look like success."""
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        approval = phase.approval
        assert approval is not None
        default = "Approve" if approval.on_timeout == "approve" else "Reject"
        task = ApprovalOperator(
            task_id="approve", subject=approval.subject, body=approval.body or None,
            defaults=[default] if approval.timeout else None, response_timeout=approval.timeout,
            assigned_users=[{"id": u, "name": u} for u in approval.approvers] or None,
            fail_on_reject=True, trigger_rule=TriggerRule.NONE_FAILED, retries=0,
            task_display_name=f"{phase.id}: approval",
        )
        task.set_upstream(upstream)
        return task

    def compensations(self, phase: PlanPhase, gate: BaseOperator) -> None:
        """Undo, newest first, what the phase had done when its gate fails."""
        previous: BaseOperator = gate
        for step in reversed(phase.steps):
            if step.compensate is None:
                continue
            task = self.construct(step.compensate, f"{step.id}{UNDO_SUFFIX}", {
                "trigger_rule": TriggerRule.ONE_FAILED if previous is gate else TriggerRule.ALL_DONE,
                "pre_execute": _compensate_only_if(f"{phase.id}.{step.id}", gate.task_id),
                "task_display_name": f"undo {step.display_name}",
                "retries": step.retries,
                "execution_timeout": step.compensate.timeout,
            })
            task.set_upstream(previous)
            self.after_gates.append(task)
            previous = task


def _skip_when_done(probe_task_id: str, dry_run_aware: bool) -> Callable[[Any], None]:
    """pre_execute of a step with `skip_if`: skip when its probe (for the same target) found the work done."""
    def hook(context: Any) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        if not dry_run_aware:
            runtime.skip_in_dry_run(context)
        ti = context["ti"]
        found = ti.xcom_pull(task_ids=probe_task_id, map_indexes=ti.map_index) if ti.map_index >= 0 else ti.xcom_pull(task_ids=probe_task_id)
        if found:
            raise AirflowSkipException(f"already done, as {probe_task_id} found ({found!r}): nothing to do")

    return hook


def _compensate_only_if(step_task_id: str, gate_task_id: str, same_target: bool = False) -> Callable[[Any], None]:
    """pre_execute of an undo task: skip unless the phase failed and its step had succeeded (for the
    same target, in fan-outs). The gate is checked here, not only by trigger rules: the second undo
    of a chain waits with all_done, which a skipped first undo satisfies."""
    def hook(context: Any) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        runtime.skip_in_dry_run(context)
        gate_state = runtime.task_state(context, gate_task_id)
        if gate_state != "failed":
            raise AirflowSkipException(f"{gate_task_id} is {gate_state}, the phase did not fail: nothing to undo")
        map_index = context["ti"].map_index if same_target else -1
        state = runtime.task_state(context, step_task_id, map_index)
        if state != "success":
            where = f"{step_task_id}[{map_index}]" if map_index >= 0 else step_task_id
            raise AirflowSkipException(f"{where} did not succeed ({state}): nothing to undo")

    return hook


def _accepts(cls: type[BaseOperator], name: str) -> bool:
    """Whether the operator takes `name` as an argument, also through a base class's __init__."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            if name in inspect.signature(init).parameters:
                return True
        except (TypeError, ValueError):
            continue
    return False


def _param(param: Any) -> Param:
    kwargs: dict[str, Any] = {"description": param.description or None}
    if param.json_type:
        kwargs["type"] = [param.json_type, "null"] if param.default is None else param.json_type
    if param.enum is not None:
        kwargs["enum"] = param.enum
    if param.title:
        kwargs["title"] = param.title
    return Param(param.default, **kwargs)


def _deadline(plan: Plan) -> Any:
    rto = plan.spec.objectives.rto
    if rto is None:
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    from recovery_provider.spec.durations import format_duration

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=rto,
        callback=AsyncCallback(runtime.rto_missed, kwargs={"dag_id": plan.id, "rto": format_duration(rto)}),
        name="rto",
    )


def _link_branches(renderer: _Renderer) -> None:
    """Tell each branch task which task ids start each of its targets."""
    for phase in renderer.plan.phases:
        if phase.kind != "branch":
            continue
        task = renderer.exits[phase.id]
        entries = {}
        for choice in phase.choices:
            roots = [t.task_id for t in task.downstream_list if t.task_id.startswith(f"{choice.target}.")]
            entries[choice.target] = roots
        task.op_kwargs["entries"] = entries  # type: ignore[attr-defined]


def build_dag(plan: Plan, source: str = "<spec>") -> DAG:
    """Render a compiled plan into an Airflow DAG; RenderError says where in the spec it failed."""
    renderer = _Renderer(plan, source)
    dag = renderer.dag()
    _link_branches(renderer)
    return dag
