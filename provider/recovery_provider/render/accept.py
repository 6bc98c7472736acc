"""A plan becomes a DAG only if Airflow's dag-processor will accept it.

The dag-processor validates, cycle-checks and serializes every DAG of a file; a DAG that fails
any of these becomes an import error of the loader file, and Airflow then marks every DAG of
that file stale. So the loader runs the same checks per spec first and refuses just that spec.

Serializing costs more than rendering (about 2 s for 1,000 steps), and the operators of the
registry always serialize (tests/spec/test_verdict.py holds that over the corpus and mutants),
so only specs that name an operator by import path, whose code we do not know, are serialized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recovery_provider.exceptions import RenderError
from recovery_provider.plan.model import Plan, PlanAction, PlanStep
from recovery_provider.spec.registry import ALIASES

if TYPE_CHECKING:
    from airflow.sdk import DAG

WHOLE_SPEC = ("recovery",)  # where a problem of the whole DAG is shown: the spec's id


def accepted_dag(plan: Plan, source: str, *, serialize: bool = True, spec_text: str | None = None) -> DAG:
    """Render `plan`, then check it as the dag-processor will; RenderError says where and why.

    `serialize=False` skips the serialization check in task processes: the DAG they run already
    passed it in the dag-processor, and a task's start should stay cheap.
    """
    from recovery_provider.render.dag import build_dag

    try:
        dag = build_dag(plan, source, spec_text)
    except RenderError:
        raise
    except Exception as exc:  # never an "internal error": say what Airflow refused, and where
        raise RenderError(f"Airflow cannot build this DAG: {type(exc).__name__}: {exc}", WHOLE_SPEC) from None
    try:
        dag.validate()  # type: ignore[no-untyped-call]
        dag.check_cycle()
        if serialize and _names_unknown_operators(plan):
            from airflow.serialization.serialized_objects import DagSerialization

            DagSerialization.to_dict(dag)
    except Exception as exc:
        raise RenderError(f"Airflow refuses this DAG: {type(exc).__name__}: {exc}", WHOLE_SPEC) from None
    return dag


def _names_unknown_operators(plan: Plan) -> bool:
    known = set(ALIASES.values())
    items: list[PlanStep | PlanAction | None] = [*plan.finally_steps]
    for phase in plan.phases:
        items += phase.steps
        items += [s.compensate for s in phase.steps] + [s.skip_if for s in phase.steps]
        items.append(phase.waves.health_check if phase.waves else None)
    return any(item is not None and item.operator not in known for item in items)
