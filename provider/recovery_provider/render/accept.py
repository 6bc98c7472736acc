"""A plan becomes a DAG only if Airflow's dag-processor will accept it.

The dag-processor validates, cycle-checks and serializes every DAG of a file; a DAG that fails
any of these becomes an import error of the loader file, and Airflow then marks every DAG of
that file stale. So the loader runs the same checks per spec first and refuses just that spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recovery_provider.exceptions import RenderError
from recovery_provider.plan.model import Plan

if TYPE_CHECKING:
    from airflow.sdk import DAG

WHOLE_SPEC = ("recovery",)  # where a problem of the whole DAG is shown: the spec's id


def accepted_dag(plan: Plan, source: str, *, serialize: bool = True) -> DAG:
    """Render `plan`, then check it as the dag-processor will; RenderError says where and why.

    `serialize=False` skips the serialization check in task processes: the DAG they run already
    passed it in the dag-processor, and a task's start should stay cheap.
    """
    from recovery_provider.render.dag import build_dag

    try:
        dag = build_dag(plan, source)
    except RenderError:
        raise
    except Exception as exc:  # never an "internal error": say what Airflow refused, and where
        raise RenderError(f"Airflow cannot build this DAG: {type(exc).__name__}: {exc}", WHOLE_SPEC) from None
    try:
        dag.validate()  # type: ignore[no-untyped-call]
        dag.check_cycle()
        if serialize:
            from airflow.serialization.serialized_objects import DagSerialization

            DagSerialization.to_dict(dag)
    except Exception as exc:
        raise RenderError(f"Airflow refuses this DAG: {type(exc).__name__}: {exc}", WHOLE_SPEC) from None
    return dag
