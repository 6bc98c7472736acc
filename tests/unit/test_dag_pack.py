"""Every spec of the DAG pack becomes a valid Airflow DAG through the dags/ loader file."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit


def test_the_dag_pack_renders_without_import_errors(repo: Path) -> None:
    runpy.run_path(str(repo / "dags/recovery_spec_errors.py"))  # raises, naming each broken spec, if any
    namespace = runpy.run_path(str(repo / "dags/recovery_dags.py"))
    dags = {name.removeprefix("recovery_dag__"): dag for name, dag in namespace.items() if name.startswith("recovery_dag__")}
    assert set(dags) == {p.stem for p in (repo / "dags/specs").glob("*.yaml")}
    for dag in dags.values():
        dag.validate()
        dag.check_cycle()
        if "outcome" in dag.task_dict:  # only where `finally` or a compensation could hide a failure
            assert [t.task_id for t in dag.leaves] == ["outcome"]
        else:  # the leaves are phase exits, which a failure anywhere before reaches
            assert {t.task_id.rsplit(".", 1)[-1] for t in dag.leaves} <= {"gate", "choose", "approve"}
        if "preflight" in dag.task_dict:  # only for specs that declare pools
            assert dag.get_task("preflight").upstream_task_ids == set()


def _pack(repo: Path) -> dict[str, object]:
    namespace = runpy.run_path(str(repo / "dags/recovery_dags.py"))
    return {name.removeprefix("recovery_dag__"): dag for name, dag in namespace.items() if name.startswith("recovery_dag__")}


def test_the_failover_restores_by_pitr_only_when_asked(repo: Path) -> None:
    """restore_method: pitr takes the pgBackRest path; the default keeps the logical restore (the demo's)."""
    from recovery_provider.render.runtime import choose_branch

    dag: Any = _pack(repo)["database_failover"]
    choose = dag.get_task("choose.choose")

    def chosen(**params: Any) -> list[str]:
        defaults = {k: dag.params[k] for k in ("failure_type", "restore_method")}
        return choose_branch(choose.op_kwargs["choices"], choose.op_kwargs["entries"], params={**defaults, **params})

    assert chosen() == ["restore.restore_newest"]
    assert chosen(restore_method="pitr") == ["restore_pitr.restore_archive"]
    assert chosen(failure_type="replica_healthy", restore_method="pitr") == ["promote.stop_writes"]
    restore = dag.get_task("restore_pitr.restore_archive")
    assert (restore.type, restore.data_dir, restore.retries) == ("latest", "{{ params.pitr_data_dir }}", 0)
    assert "restore_pitr.restore_archive__undo" in dag.task_dict  # a failed health check drops the copy
    # the join waits for each branch target's gate, or (a fail_fast gate) for what that gate waits for
    joined = dag.get_task("approve_cutover.approve").upstream_task_ids
    for phase in ("restore", "restore_pitr", "promote"):
        gate = dag.get_task(f"{phase}.gate")
        assert gate.task_id in joined or gate.upstream_task_ids <= joined, phase


def test_the_pitr_drill_takes_its_target_from_the_markers_and_always_drops_the_scratch_cluster(repo: Path) -> None:
    dag: Any = _pack(repo)["pitr_drill"]
    restore, prove = dag.get_task("restore.restore_to_t"), dag.get_task("restore.prove_rpo")
    pull = "{{ ti.xcom_pull(task_ids='markers.write_markers')['target_time'] }}"
    assert (restore.type, restore.target, prove.target) == ("time", pull, pull)
    assert "markers.write_markers" in dag.task_dict and "markers.markers_archived" in dag.task_dict
    drop = dag.get_task("drop_scratch")
    assert drop.trigger_rule.value == "all_done" and drop.data_dir == "{{ params.scratch_dir }}"
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
