"""The loader files as Airflow's own DagBag sees them: broken specs never cost another spec its DAG.

Airflow marks every DAG of a file with an import error stale, so the contract is checked the way
Airflow keys it: the DAG file has no import error and every good DAG; the errors file has no DAG
and one import error naming each broken spec at file:line:column.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support import broken_specs

pytestmark = pytest.mark.unit

BROKEN = broken_specs.FOLDER


def deploy(tmp_path: Path, repo: Path, specs: Path) -> Path:
    """A dags folder as a deployment has it: the pack's two loader files and a specs folder."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("recovery_dags.py", "recovery_spec_errors.py"):
        shutil.copyfile(repo / "dags" / name, dags / name)
    shutil.copytree(specs, dags / "specs")
    return dags


def bag(folder: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(folder), safe_mode=True, bundle_path=folder, bundle_name="dags-folder")


def test_broken_specs_are_the_errors_file_s_import_error_and_hide_no_dag(tmp_path: Path, repo: Path) -> None:
    dags = deploy(tmp_path, repo, repo / "dags" / "specs")
    for source in BROKEN.glob("*.yaml"):
        shutil.copyfile(source, dags / "specs" / source.name)
    found = bag(dags)
    pack = {p.stem for p in (repo / "dags" / "specs").glob("*.yaml")}
    assert set(found.dags) == pack | set(broken_specs.GOOD_IDS)
    # the DAG file: no import error, so Airflow stales none of its DAGs
    assert set(found.import_errors) == {"recovery_spec_errors.py"}
    assert {dag.relative_fileloc for dag in found.dags.values()} == {"recovery_dags.py"}
    message = found.import_errors["recovery_spec_errors.py"]
    broken_specs.assert_names_every_broken_spec(message, dags / "specs")
    assert "Traceback" not in message.split("SpecLoadErrors", 1)[1]
    # the copy did not take the original's DAG: the original has one step, the copy two
    assert [t.task_id for t in found.dags["sched_good_neighbour"].tasks if t.task_id.startswith("a.")] == ["a.s", "a.gate"]


def test_a_refused_spec_leaves_no_partly_built_dag(tmp_path: Path, repo: Path) -> None:
    """A render error halfway through a DAG must not leave Airflow an auto-registered fragment."""
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    from recovery_provider.loader import load_dags

    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("bad_fanout.yaml", "bad_callable.yaml", "bad_import.yaml"):
        shutil.copyfile(BROKEN / name, specs / name)
    namespace: dict[str, Any] = {}
    assert load_dags(str(tmp_path / "loader.py"), "specs", namespace) == {}
    assert namespace == {}
    assert not DagContext.autoregistered_dags


def test_a_clean_folder_has_no_import_error_and_fixing_a_spec_brings_its_dag(tmp_path: Path, repo: Path) -> None:
    dags = deploy(tmp_path, repo, repo / "dags" / "specs")
    shutil.copyfile(BROKEN / "broken.yaml", dags / "specs" / "broken.yaml")
    assert "sched_broken" not in bag(dags).dags
    (dags / "specs" / "broken.yaml").write_text(broken_specs.fixed_text())
    found = bag(dags)
    assert "sched_broken" in found.dags
    assert found.import_errors == {}


def test_a_missing_specs_folder_is_reported_not_raised_by_the_dag_file(tmp_path: Path, repo: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    for name in ("recovery_dags.py", "recovery_spec_errors.py"):
        shutil.copyfile(repo / "dags" / name, dags / name)
    found = bag(dags)
    assert found.dags == {}
    assert set(found.import_errors) == {"recovery_spec_errors.py"}
    assert "the recovery specs folder does not exist" in found.import_errors["recovery_spec_errors.py"]


def test_a_task_process_renders_only_its_own_dag_and_reports_nothing(tmp_path: Path, repo: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import recovery_provider.loader as loader

    monkeypatch.setattr(loader, "_running_dag_id", lambda: "sched_good_callable")
    specs = tmp_path / "specs"
    shutil.copytree(BROKEN, specs)
    namespace: dict[str, Any] = {}
    assert set(loader.load_dags(str(tmp_path / "loader.py"), "specs", namespace)) == {"sched_good_callable"}
    loader.report_spec_errors(str(tmp_path / "errors.py"), "specs")  # no DAG in that file to run: silent


def test_a_python_step_takes_its_callable_as_an_import_path() -> None:
    import posixpath

    from recovery_provider.check import check_file

    checked = check_file(BROKEN / "good_callable.yaml")
    assert checked.ok, [d.format() for d in checked.errors]
    assert checked.dag.get_task("a.parse").python_callable is posixpath.basename


def test_a_dag_airflow_cannot_serialize_is_refused_before_it_stales_the_dag_file(tmp_path: Path, repo: Path) -> None:
    """The dag-processor serializes each DAG and keys a failure to the DAG file; the loader checks first."""
    from recovery_provider.check import check_file

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "linked.yaml").write_text(
        "recovery: linked\ndefaults: {timeout: 1m}\nphases:\n  - {id: a, steps: [{id: s, uses: 'acme_ops.unserializable:LinkedOperator'}]}\n"
    )
    (error,) = check_file(specs / "linked.yaml").errors
    assert error.format().startswith(f"{specs / 'linked.yaml'}:1:11: error: Airflow refuses this DAG: SerializationError")
    dags = deploy(tmp_path, repo, specs)
    found = bag(dags)
    assert found.dags == {} and set(found.import_errors) == {"recovery_spec_errors.py"}
