"""Every spec of the DAG pack becomes a valid Airflow DAG through the dags/ loader file."""

from __future__ import annotations

import runpy
from pathlib import Path

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
        assert [t.task_id for t in dag.leaves] == ["outcome"]
        assert dag.get_task("preflight").upstream_task_ids == set()
