"""Smoke tests that prove the harness: real scheduler semantics and real streaming replication."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import datetime

import pytest

from tests.support.airflow_cluster import AirflowCluster, AirflowHarnessError, TaskInstance
from tests.support.postgres import PostgresCluster, start_replica

DAG_ID = "harness_smoke"
POOL = "harness_smoke_pool"


def _interval(ti: TaskInstance) -> tuple[datetime, datetime]:
    assert ti.start_date is not None and ti.end_date is not None, ti
    return ti.start_date, ti.end_date


@pytest.mark.scheduler
def test_scheduler_runs_parallel_join_and_pool(airflow: AirflowCluster) -> None:
    api = airflow.api
    api.create_pool(POOL, 1)
    api.wait_for_dag(DAG_ID, timeout=90)
    api.unpause(DAG_ID)
    run_id = api.trigger(DAG_ID, {"why": "harness smoke"})

    state = api.wait_for_run(DAG_ID, run_id, timeout=150)

    assert state == "success", airflow.describe_run(DAG_ID, run_id)
    tis = api.task_instances(DAG_ID, run_id)
    by_task: dict[str, list[TaskInstance]] = {}
    for ti in tis:
        assert ti.state == "success", ti
        by_task.setdefault(ti.task_id, []).append(ti)

    (left_start, left_end), (right_start, right_end) = (
        _interval(by_task["left"][0]),
        _interval(by_task["right"][0]),
    )
    assert left_start < right_end and right_start < left_end, "left and right did not overlap"

    join_start, _ = _interval(by_task["join"][0])
    assert join_start >= max(left_end, right_end), "join started before both upstream tasks ended"

    pooled = sorted((_interval(ti) for ti in by_task["pooled"]), key=lambda iv: iv[0])
    assert [ti.map_index for ti in by_task["pooled"]] == [0, 1, 2, 3]
    assert all(ti.pool == POOL for ti in by_task["pooled"])
    for (_, earlier_end), (later_start, _) in itertools.pairwise(pooled):
        assert later_start >= earlier_end, f"mapped instances overlapped in a 1-slot pool: {pooled}"


@pytest.mark.services
def test_streaming_replica_sees_primary_writes() -> None:
    with PostgresCluster("primary") as primary:
        replica = start_replica(primary)
        try:
            assert replica.is_in_recovery() and not primary.is_in_recovery()
            primary.create_database("shop")
            primary.psql("CREATE TABLE orders (id int PRIMARY KEY, note text)", dbname="shop")
            marker = uuid.uuid4().hex
            primary.psql("INSERT INTO orders VALUES (1, %s)", [marker], dbname="shop")

            lag = replica.wait_for_replay(timeout=30)

            assert lag.lag_bytes == 0
            assert replica.psql("SELECT note FROM orders WHERE id = 1", dbname="shop") == [(marker,)]
            assert [r["state"] for r in primary.replication_status()] == ["streaming"]
        finally:
            replica.stop()
    assert not primary.running


@pytest.mark.services
def test_role_with_password_must_authenticate() -> None:
    import psycopg

    with PostgresCluster("auth") as pg:
        pg.create_role("app", "correct horse", createdb=True)
        assert pg.psql("SELECT current_user", user="app", password="correct horse") == [("app",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            pg.psql("SELECT 1", user="app", password="wrong")
        # The server got only a SCRAM verifier, never the password itself.
        time.sleep(0.2)
        assert "correct horse" not in pg.log_path.read_text()


@pytest.mark.scheduler
def test_added_dag_is_parsed_and_import_errors_are_reported(airflow: AirflowCluster) -> None:
    api = airflow.api
    suffix = uuid.uuid4().hex[:8]
    good_id = f"harness_added_{suffix}"
    airflow.add_dag_file(
        f"from airflow.sdk import DAG\n\nwith DAG(dag_id={good_id!r}, schedule=None):\n    pass\n",
        name=f"{good_id}.py",
    )
    broken = airflow.add_dag_file(
        "from airflow.sdk import DAG\nraise RuntimeError('broken on purpose')\n", name=f"broken_{suffix}.py"
    )

    assert api.wait_for_dag(good_id, timeout=60)["dag_id"] == good_id

    deadline = time.monotonic() + 60
    while not any(str(e.get("filename", "")).endswith(broken.name) for e in api.import_errors()):
        assert time.monotonic() < deadline, "the broken DAG file never showed up as an import error"
        time.sleep(0.5)
    with pytest.raises(AirflowHarnessError, match="broken on purpose"):
        api.wait_for_dag(f"never_defined_{suffix}", timeout=0)
    broken.unlink()  # keep later tests' import-error lists clean


@pytest.mark.scheduler
def test_approval_answered_through_rest(airflow: AirflowCluster) -> None:
    api = airflow.api
    dag_id = "harness_hitl"
    api.wait_for_dag(dag_id, timeout=90)
    api.unpause(dag_id)
    run_id = api.trigger(dag_id)

    api.wait_for_task_state(dag_id, run_id, "approve", {"awaiting_input"}, timeout=90)
    answer = api.answer_hitl(dag_id, run_id, "approve", ["Approve"])

    assert answer["chosen_options"] == ["Approve"]
    assert api.wait_for_run(dag_id, run_id, timeout=90) == "success", airflow.describe_run(dag_id, run_id)
    states = {ti.task_id: ti.state for ti in api.task_instances(dag_id, run_id)}
    assert states == {"approve": "success", "after_approval": "success"}
    assert api.hitl_detail(dag_id, run_id, "approve")["chosen_options"] == ["Approve"]
