"""Fan-out: which step arguments get the target, the resolver, and task groups mapped over targets."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.operator import BaseOperator

from recovery_provider.plan.layout import probe_name, undo_name
from recovery_provider.plan.model import PlanPhase
from recovery_provider.plan.targets import mentions_target
from recovery_provider.render import runtime

if TYPE_CHECKING:
    from recovery_provider.render.tasks import Operators


@dataclass
class FanOut:
    """Per step (or its probe/undo, by task name): the arguments that mention the target, and which
    take it by name. The resolver turns each target into one kwargs row holding all of them."""

    arg: str
    step_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    takes_target: list[str] = field(default_factory=list)

    def args_of(self, mapped: dict[str, Any], key: str) -> dict[str, Any]:
        found = {n: mapped[f"{key}__{n}"] for n in self.step_args.get(key, {})}
        if key in self.takes_target:
            found[self.arg] = mapped[f"{key}__{self.arg}"]
        return found


def target_arguments(ops: Operators, phase: PlanPhase) -> FanOut:
    """Which arguments of each step, probe and undo of a fan-out phase receive the target."""
    assert phase.fan_out is not None
    fan = FanOut(phase.fan_out.arg_name)
    arg = fan.arg
    for step in phase.steps:
        if step.compensate is not None and phase.kind == "waves":
            raise ops.fail(step, "'compensate' on a step of a waves phase is not supported yet: use for_each with max_parallel, or move the step to a sequential or parallel phase")
        # probes and compensations run per target too: their arguments get the target like the step's
        for key, action in ((probe_name(step.id), step.skip_if), (undo_name(step.id), step.compensate)):
            if action is None:
                continue
            fan.step_args[key] = {k: v for k, v in action.args.items() if mentions_target(v, arg)}
            if arg not in action.args and accepts(ops.operator_class(action), arg):
                fan.takes_target.append(key)
        cls = ops.operator_class(step)
        fan.step_args[step.id] = {k: v for k, v in step.args.items() if mentions_target(v, arg)}
        if arg not in step.args and accepts(cls, arg):
            fan.takes_target.append(step.id)
        for name in [*fan.step_args[step.id], *([arg] if step.id in fan.takes_target else [])]:
            if name not in cls.template_fields:
                raise ops.fail(step, f"argument '{name}' receives the fan-out target, but {cls.__name__} does not template it; pass the target through a templated argument")
        if not fan.step_args[step.id] and step.id not in fan.takes_target:
            raise ops.fail(step, f"in fan-out phase '{phase.id}' it neither takes '{arg}' nor uses {{{{ {arg} }}}} in its arguments: every target would do the same")
    return fan


def resolver_callable(phase: PlanPhase, fan: FanOut) -> Callable[..., Any]:
    """What the resolver task runs: the targets, as one kwargs dict per target."""
    assert phase.fan_out is not None
    limit = phase.waves.size * phase.waves.wave_count if phase.waves is not None else None
    # A partial, not op_kwargs: op_kwargs is templated, and the {{ target }} placeholders in the
    # step arguments are ours to fill per target, not Jinja's.
    return functools.partial(
        runtime.resolve_targets, phase.fan_out.source.model_dump(mode="json", exclude_none=True), fan.arg,
        fan.step_args, fan.takes_target, limit,
    )


def mapped_group(group_id: str, fan: FanOut, targets: Any, build: Callable[[dict[str, Any]], None]) -> Any:
    """A task group mapped over the targets; `build(mapped)` creates its tasks from one target's kwargs.

    What ``@task_group(...)(body).expand_kwargs(targets)`` builds, made directly: importing the
    decorator package imports the standard provider's python operators (~15 ms at every task start).
    """
    from airflow.sdk.definitions._internal.expandinput import ListOfDictsExpandInput, MappedArgument
    from airflow.sdk.definitions.mappedoperator import ensure_xcomarg_return_value
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    names = ["target", *(f"{s}__{n}" for s, args in fan.step_args.items() for n in args),
             *(f"{s}__{fan.arg}" for s in fan.takes_target)]
    expand_input = ListOfDictsExpandInput(targets)
    ensure_xcomarg_return_value(expand_input.value)
    with MappedTaskGroup(group_id=group_id, expand_input=expand_input, add_suffix_on_collision=True) as group:
        build({name: MappedArgument(input=expand_input, key=name) for name in dict.fromkeys(names)})
    return group


def accepts(cls: type[BaseOperator], name: str) -> bool:
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
