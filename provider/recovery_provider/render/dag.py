"""Layout -> Airflow DAG: the one converter from the plan's layout to Airflow primitives.

The layout (plan/layout.py) decides every task, its id, kind, trigger rule and upstream; this
module only builds each task's operator and wires the edges the layout lists. Shape::

    [preflight] -> [phase TaskGroups in plan order, each ending in one gate task] -> [finally -> outcome]

- Each phase's entry tasks wait for the gates of its upstream phases (``none_failed``), so edges
  stay O(phases) instead of leaves x roots, and a skipped branch path lets the join run.
- The gate (``all_done``) applies the phase's failure policy and fails the phase or lets it pass,
  flagged partial; a fail_fast phase's gate is an EmptyOperator judged by its trigger rule alone
  (no worker). Branch and approval phases end in their decision task instead.
- ``preflight`` (pools present and large enough) only when the spec declares pools.
- Compensations run after a failed gate, in reverse step order, each only if its step succeeded.
- ``finally`` steps run whatever happened; the single ``outcome`` leaf then fails the run if any
  phase failed, so cleanup never hides a failure. Without ``finally`` or compensations there is no
  outcome task: a failure reaches the leaf gates, and the listener records the verdict.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TaskGroup, TriggerRule
from airflow.sdk.bases.operator import BaseOperator

from recovery_provider.plan.layout import (
    LAYOUT_DOC_KEY,
    RESOLVER,
    LayoutTask,
    build_layout,
    in_phase,
    layout_record,
)
from recovery_provider.plan.model import Plan, PlanPhase, PlanStep
from recovery_provider.plan.targets import target_kwargs
from recovery_provider.render import runtime
from recovery_provider.render.docs import runbook_markdown
from recovery_provider.render.fanout import (
    FanOut,
    mapped_group,
    resolver_callable,
    target_arguments,
)
from recovery_provider.render.hooks import compensate_only_if
from recovery_provider.render.operators import ChooseBranchOperator, ControlOperator, WaveCheckpointOperator
from recovery_provider.render.tasks import Operators


class _Renderer(Operators):
    def __init__(self, plan: Plan, source: str, spec_text: str | None) -> None:
        super().__init__(plan.spec.alerts)
        self.plan = plan
        self.source = source
        self.spec_text = spec_text  # None: the runs' records will have no estimate
        self.layout = build_layout(plan)
        self.tasks: dict[str, BaseOperator] = {}
        self.fan_outs: dict[str, FanOut] = {}  # for_each/waves phase -> what its resolver maps
        self.steps: dict[tuple[str | None, str], PlanStep] = {(s.phase_id, s.id): s for s in plan.steps}

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
            # layout order is a topological order, and each phase's tasks come together
            for phase_id, run in itertools.groupby(self.layout.tasks, key=lambda t: t.phase_id):
                if phase_id is None:
                    for task in run:
                        self.add(task, self.top_level(task))
                else:
                    self.phase(self.plan.phase(phase_id), list(run))
        self.link_branches()
        # What the listener records the run by (evidence/verdict.py), serialized with the DAG version
        # a run uses, so the record describes the DAG that ran, not a spec edited since: the layout
        # and the spec's text. doc_json, because templated fields are cut at 4096 characters.
        carrier = self.tasks[self.layout.phases[0].exit]
        carrier.doc_json = json.dumps({LAYOUT_DOC_KEY: layout_record(self.layout), "spec": self.spec_text})
        return dag

    def add(self, task: LayoutTask, operator: BaseOperator) -> None:
        """Record the operator and wire the edges the layout lists (Airflow adds the mapping one)."""
        self.tasks[task.id] = operator
        upstream = [self.tasks[u] for u in task.upstream if u != task.mapped_by]
        if upstream:
            operator.set_upstream(upstream)

    def top_level(self, task: LayoutTask) -> BaseOperator:
        if task.kind == "preflight":
            return _control_task(
                task_id=task.id, python_callable=runtime.preflight, retries=0,
                op_kwargs={"pools": {name: pool.slots for name, pool in self.plan.spec.pools.items()}},
                task_display_name="preflight", doc_md="Fails at once when a pool this DAG needs is missing or too small.",
            )
        if task.kind == "outcome":
            return _control_task(
                task_id=task.id, python_callable=runtime.outcome,
                op_kwargs={"gate_ids": [p.exit for p in self.layout.phases]},
                trigger_rule=TriggerRule.ALL_DONE, retries=0, task_display_name="outcome",
                doc_md="Fails the run when any phase failed, after `finally` and the compensations ran.",
            )
        assert task.kind == "finally" and task.step_id is not None
        return self.step_task(self.steps[(None, task.step_id)], task.id, TriggerRule(task.trigger))

    def phase(self, phase: PlanPhase, tasks: list[LayoutTask]) -> None:
        with TaskGroup(group_id=phase.id, tooltip=phase.description or phase.kind):
            for group, run in itertools.groupby(tasks, key=lambda t: t.group):
                members = list(run)
                if group is None:
                    for task in members:
                        self.add(task, self.phase_task(phase, task, {}))
                else:
                    self.mapped(phase, group, members)

    def mapped(self, phase: PlanPhase, group: str, members: list[LayoutTask]) -> None:
        """One task group mapped over the targets the first member's `mapped_by` task gives, or
        over its literal targets (their kwargs rows made here, as the resolver makes them)."""
        if phase.id not in self.fan_outs:
            self.fan_outs[phase.id] = target_arguments(self, phase)
        fan = self.fan_outs[phase.id]
        first = members[0]
        if first.mapped_by is not None:
            targets: Any = self.tasks[first.mapped_by].output
        else:
            assert first.targets is not None
            targets = [target_kwargs(t, fan.arg, fan.step_args, fan.takes_target) for t in first.targets]

        def build(mapped: dict[str, Any]) -> None:
            for task in members:
                self.add(task, self.phase_task(phase, task, fan.args_of(mapped, _name(task))))

        mapped_group(group, fan, targets, build)

    def phase_task(self, phase: PlanPhase, task: LayoutTask, args: dict[str, Any]) -> BaseOperator:
        """The operator of one task of a phase; `args` are its per-target arguments when mapped."""
        name, trigger = _name(task), TriggerRule(task.trigger)
        fan = phase.fan_out
        max_active = fan.max_parallel if fan is not None and task.mapped else None
        if task.kind in ("step", "probe", "undo"):
            assert task.step_id is not None
            step = self.steps[(phase.id, task.step_id)]
            if task.kind == "step":
                return self.step_task(step, name, trigger, overrides=args, max_active=max_active,
                                      skip_when=self.layout.probe_of(task.id))
            if task.kind == "probe":
                assert step.skip_if is not None
                return self.construct(step.skip_if, name, {
                    **args, "trigger_rule": trigger, "retries": 0, "execution_timeout": step.skip_if.timeout,
                    "task_display_name": f"{step.display_name}: already done?",
                    **({"max_active_tis_per_dagrun": max_active} if max_active else {}),
                })
            assert step.compensate is not None and task.serves is not None
            return self.construct(step.compensate, name, {
                **args, "trigger_rule": trigger,
                "pre_execute": compensate_only_if(task.serves, self.layout.phase(phase.id).exit, same_target=task.mapped),
                "task_display_name": f"undo {step.display_name}", "retries": step.retries,
                "execution_timeout": step.compensate.timeout,
            })
        if task.kind == "gate" and task.by_trigger_rule:
            # Airflow's scheduler marks an EmptyOperator done itself: no worker, no second lost
            return EmptyOperator(task_id=name, trigger_rule=trigger, task_display_name=f"{phase.id}: fail_fast",
                                 doc_md="Fails (upstream_failed) when any task of the phase failed.")
        if task.kind == "gate":
            return _control_task(
                task_id=name, python_callable=runtime.gate, trigger_rule=trigger, retries=0,
                task_display_name=f"{phase.id}: {phase.on_failure.describe()}",
                op_kwargs={
                    "phase_id": phase.id,
                    "policy": phase.on_failure.model_dump(mode="json"),
                    "fan_out": fan is not None,
                    "non_critical": [s.id for s in phase.steps if not s.critical],
                    "work_tasks": list(self.layout.phase(phase.id).work),
                },
            )
        if task.kind == "resolver":
            self.fan_outs.setdefault(phase.id, target_arguments(self, phase))
            return _control_task(
                task_id=name, python_callable=resolver_callable(phase, self.fan_outs[phase.id]), trigger_rule=trigger,
                retries=0, task_display_name=f"{phase.id}: targets",
            )
        return self.wave_task(phase, task) if task.wave is not None else self.decision(phase, task)

    def wave_task(self, phase: PlanPhase, task: LayoutTask) -> BaseOperator:
        """A wave's slice of the targets, its health check, or the checkpoint after it."""
        waves = phase.waves
        assert waves is not None and task.wave is not None
        name, trigger, wave = _name(task), TriggerRule(task.trigger), f"wave{task.wave + 1}"
        if task.kind == "wave_slice":
            return _control_task(
                task_id=name, python_callable=runtime.wave_slice, retries=0, trigger_rule=trigger,
                op_kwargs={"resolver_task_id": in_phase(phase.id, RESOLVER), "wave": task.wave, "size": waves.size},
                task_display_name=f"{phase.id}: {wave} targets",
            )
        if task.kind == "wave_health":
            assert waves.health_check is not None
            return self.construct(waves.health_check, name, {
                "trigger_rule": trigger, "retries": 0, "execution_timeout": waves.health_check.timeout,
                "task_display_name": f"{phase.id}: {wave} health",
            })
        assert task.kind == "wave_checkpoint"
        return WaveCheckpointOperator(
            task_id=name, waves=[list(w) for w in self.layout.phase(phase.id).waves[:task.wave + 1]],
            max_failed_waves=waves.max_failed_waves, pause=waves.pause, retries=0,
            trigger_rule=trigger, task_display_name=f"{phase.id}: after {wave}",
        )

    def decision(self, phase: PlanPhase, task: LayoutTask) -> BaseOperator:
        """A branch skips every target it does not choose (their gates then skip too); a rejected
        approval (or a timeout that rejects) fails: a refused cutover must not look like success."""
        if task.kind == "branch":
            return _control_task(
                branch=True,
                task_id=_name(task), python_callable=runtime.choose_branch, trigger_rule=TriggerRule(task.trigger),
                retries=0, task_display_name=f"{phase.id}: choose",
                op_kwargs={
                    "choices": [{"when": c.condition.text if c.condition else None, "target": c.target,
                                 **({"breaker": c.breaker.model_dump()} if c.breaker else {})} for c in phase.choices],
                    "entries": {},  # filled once the targets exist (see link_branches)
                },
            )
        from airflow.providers.standard.operators.hitl import ApprovalOperator

        approval = phase.approval
        assert task.kind == "approval" and approval is not None
        default = "Approve" if approval.on_timeout == "approve" else "Reject"
        return ApprovalOperator(
            task_id=_name(task), subject=approval.subject, body=approval.body or None,
            defaults=[default] if approval.timeout else None, response_timeout=approval.timeout,
            assigned_users=[{"id": u, "name": u} for u in approval.approvers] or None,
            fail_on_reject=True, trigger_rule=TriggerRule(task.trigger), retries=0,
            task_display_name=f"{phase.id}: approval",
        )

    def link_branches(self) -> None:
        """Tell each branch task which task ids start each of its targets."""
        for phase in self.plan.phases:
            if phase.kind == "branch":
                task = self.tasks[self.layout.phase(phase.id).exit]
                task.op_kwargs["entries"] = {  # type: ignore[attr-defined]
                    c.target: list(self.layout.phase(c.target).entries) for c in phase.choices
                }


def _name(task: LayoutTask) -> str:
    """The id inside its task group(s): Airflow prefixes the groups' ids."""
    return task.id.rsplit(".", 1)[-1]


def _param(param: Any) -> Param:
    kwargs: dict[str, Any] = {"description": param.description or None}
    if param.json_type:
        kwargs["type"] = [param.json_type, "null"] if param.default is None else param.json_type
    if param.enum is not None:
        kwargs["enum"] = param.enum
    if param.title:
        kwargs["title"] = param.title
    return Param(param.default, **kwargs)


def _control_task(branch: bool = False, **kwargs: Any) -> BaseOperator:
    """A control task: calls a render/runtime.py function with the task's context."""
    return (ChooseBranchOperator if branch else ControlOperator)(**kwargs)


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


def build_dag(plan: Plan, source: str = "<spec>", spec_text: str | None = None) -> DAG:
    """Render a compiled plan into an Airflow DAG; RenderError says where in the spec it failed.

    `spec_text` is the spec file's text the plan was compiled from, kept in the DAG for the evidence
    of its runs (the estimate for the path a run took).
    """
    return _Renderer(plan, source, spec_text).dag()
