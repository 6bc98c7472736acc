"""One Airflow deployment (PostgreSQL metadata DB + four components) for all scheduler tests.

Why session scope: starting Airflow costs tens of seconds on two cores; tests isolate themselves
by dag_id and run_id instead. Later tests add their own DAG files with `airflow.add_dag_file(...)`
(or the `add_dag` fixture) and then `airflow.api.wait_for_dag(dag_id)`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.airflow_cluster import AirflowCluster, running_cluster

DAGS_SOURCE = Path(__file__).resolve().parent / "dags"
TIMINGS: dict[str, float] = {}  # shown at the end of the session: keeps an eye on start-up cost


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    """A started cluster whose dags folder holds copies of tests/scheduler/dags/*.py.

    Copies, not the source folder: DAG files that tests add must not land in the repository.
    Stopped (and checked for leftover processes) at session end, also when tests failed.
    """
    dags = tmp_path_factory.mktemp("airflow-dags")
    for source in sorted(DAGS_SOURCE.glob("*.py")):
        shutil.copyfile(source, dags / source.name)
    with running_cluster(dags, "airflow-meta", timings=TIMINGS) as cluster:
        yield cluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "airflow harness timings: " + ", ".join(f"{k}={v:.1f}" for k, v in TIMINGS.items())
        )


@pytest.fixture
def add_dag(airflow: AirflowCluster) -> Callable[..., Path]:
    """`add_dag(path)` or `add_dag(text, name="x.py")`: put a DAG file where the dag-processor looks."""
    return airflow.add_dag_file
