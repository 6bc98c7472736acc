"""The layout is the DAG: for every corpus and pack spec, the rendered DAG's task ids, kinds and
edges equal the layout's, and the estimator and the evidence read that same layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from recovery_provider.check import check_file
from recovery_provider.evidence.collect import recorded_layout, task_kind
from recovery_provider.plan.layout import Layout, build_layout, layout_record

pytestmark = pytest.mark.spec

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CORPUS = sorted([*HERE.glob("valid/*.yaml"), *HERE.glob("warnings/*.yaml"), *(REPO / "dags" / "specs").glob("*.yaml")])


def airflow_kind(task: Any) -> str:
    """A task's kind read off Airflow's own objects (operator class, callable, hooks), not its id."""
    import functools

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from recovery_provider.render import runtime
    from recovery_provider.render.operators import (
        ChooseBranchOperator,
        ControlOperator,
        WaveCheckpointOperator,
    )

    if isinstance(task, ApprovalOperator):
        return "approval"
    if isinstance(task, ChooseBranchOperator):
        return "branch"
    if isinstance(task, WaveCheckpointOperator):
        return "wave_checkpoint"
    if isinstance(task, ControlOperator):
        func = task.python_callable
        func = func.func if isinstance(func, functools.partial) else func
        known = {runtime.gate: "gate", runtime.preflight: "preflight", runtime.outcome: "outcome",
                 runtime.wave_slice: "wave_slice", runtime.resolve_targets: "resolver"}
        if func in known:
            return known[func]
    if isinstance(task, EmptyOperator) and task.task_display_name.endswith(": fail_fast"):
        return "gate"  # judged by its trigger rule alone
    hook = getattr(getattr(task, "_pre_execute_hook", None), "__qualname__", "")
    if "compensate_only_if" in hook:
        return "undo"
    if task.task_group is None or task.task_group.group_id is None:
        return "finally"
    name = task.task_display_name
    if name.endswith(": already done?"):
        return "probe"
    if re.search(r": wave\d+ health$", name):
        return "wave_health"
    return "step"


def shape(dag: Any) -> tuple[dict[str, str], set[tuple[str, str]]]:
    kinds = {t.task_id: airflow_kind(t) for t in dag.tasks}
    edges = {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}
    return kinds, edges


@pytest.mark.parametrize("spec", CORPUS, ids=lambda p: p.stem)
def test_the_dag_is_its_layout(spec: Path) -> None:
    checked = check_file(str(spec))
    assert checked.plan is not None and checked.dag is not None, [d.format() for d in checked.errors]
    layout: Layout = build_layout(checked.plan)
    kinds, edges = shape(checked.dag)
    assert kinds == layout.kinds()
    assert edges == set(layout.edges)
    mapped = {t.task_id for t in checked.dag.tasks if t.get_closest_mapped_task_group() is not None}
    assert mapped == {t.id for t in layout.tasks if t.mapped}
    rules = {t.task_id: str(t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule) for t in checked.dag.tasks}
    assert rules == {t.id: t.trigger for t in layout.tasks}


@pytest.mark.parametrize("spec", CORPUS, ids=lambda p: p.stem)
def test_the_evidence_reads_the_layout_serialized_with_the_dag(spec: Path) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    checked = check_file(str(spec))
    assert checked.plan is not None and checked.dag is not None
    stored = DagSerialization.from_dict(DagSerialization.to_dict(checked.dag))  # as the scheduler holds the run's DAG
    layout = build_layout(checked.plan)
    assert recorded_layout(stored) == layout_record(layout)
    kinds = {t.task_id: task_kind(t.task_id, recorded_layout(stored))[1] for t in stored.tasks}
    steps = {f"{s.phase_id}.{s.id}" for p in checked.plan.phases for s in p.steps if p.fan_out is None}
    assert all(kinds[s] == "step" for s in steps)


@pytest.mark.parametrize("spec", CORPUS, ids=lambda p: p.stem)
def test_the_estimator_simulates_the_layout(spec: Path) -> None:
    checked = check_file(str(spec), render=False)
    assert checked.plan is not None and checked.estimate is not None
    layout = build_layout(checked.plan)
    steps = {(t.phase_id, t.step_id) for t in layout.tasks if t.kind in ("step", "finally")}
    for scenario in checked.estimate.scenarios:
        simulated = {(t.phase_id, t.step_id) for t in scenario.tasks if t.kind in ("step", "finally")}
        assert simulated <= steps
        gates = {t.label for t in scenario.tasks if t.kind == "gate"}
        assert gates <= {t.id for t in layout.tasks if t.kind == "gate"}
