"""What the ledger's history teaches, on a real scheduler: a slow step raises its alert while it
runs, and a branch case that keeps failing is bypassed by its circuit breaker until reset."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recovery_provider.evidence.history import History
from recovery_provider.evidence.html import report_html
from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import RunRecord
from recovery_provider.evidence.report import build_report
from tests.support.airflow_cluster import AirflowCluster

pytestmark = pytest.mark.scheduler

SPECS = Path(__file__).resolve().parent / "specs_history"
LOADER = "# airflow DAG loader: safe mode parses only files that say 'airflow' and 'dag'\nfrom recovery_provider.loader import load_dags\nload_dags(__file__, {folder!r})\n"
SLOW, BREAKER = "sched_slow", "sched_breaker"


@pytest.fixture(scope="module")
def cluster(airflow: AirflowCluster) -> AirflowCluster:
    airflow.add_dag_file(LOADER.format(folder=str(SPECS)), name="recovery_history.py")
    for dag_id in (SLOW, BREAKER):
        airflow.api.wait_for_dag(dag_id, timeout=120)
        airflow.api.unpause(dag_id)
    return airflow


def ledger(cluster: AirflowCluster) -> Ledger:
    return Ledger(str(cluster.home / "recovery-ledger"))


def run_to_end(cluster: AirflowCluster, dag_id: str, conf: dict[str, object], expected: str) -> RunRecord:
    """Trigger, wait for the end, and for the listener to have recorded the run and folded it in."""
    run_id = cluster.api.trigger(dag_id, conf)
    assert cluster.api.wait_for_run(dag_id, run_id, timeout=180) == expected, cluster.describe_run(dag_id, run_id)
    return recorded(cluster, dag_id, run_id)


def recorded(cluster: AirflowCluster, dag_id: str, run_id: str, timeout: float = 30) -> RunRecord:
    store = ledger(cluster)
    deadline = time.monotonic() + timeout
    while True:
        record = store.find(dag_id, run_id)
        history: History = store.read_history(dag_id)
        if record is not None and any(r.run_id == run_id for r in history.runs):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_id} of {dag_id} not recorded in the ledger and its history")
        time.sleep(0.3)


def test_a_step_slower_than_its_history_raises_the_alert_while_it_runs(cluster: AirflowCluster) -> None:
    api = cluster.api
    for _ in range(2):  # 2 runs x 2 targets: the 4 samples min_samples asks for
        assert run_to_end(cluster, SLOW, {}, "success").slow_steps == []
    usual = ledger(cluster).read_history(SLOW).steps["fan.work"]
    assert sum(len(e.durations) for e in usual) == 4
    run_id = api.trigger(SLOW, {"slow": "b", "seconds": 25})
    slow_task = ("fan.each.work", 1)
    deadline = time.monotonic() + 90
    log = ""
    while "slow step: fan.each.work[1]" not in log:
        assert time.monotonic() < deadline, cluster.describe_run(SLOW, run_id) + "\n" + log[-3000:]
        time.sleep(0.5)
        log = cluster.task_log(SLOW, run_id, slow_task[0], map_index=slow_task[1])
    # the alert came while the step was still running, not after
    assert api.task_instance(SLOW, run_id, *slow_task).state == "running"
    assert "slow-step alert for fan.work: usually" in log
    assert api.wait_for_run(SLOW, run_id, timeout=120) == "success"
    record = recorded(cluster, SLOW, run_id)
    flagged = {s.task: s for s in record.slow_steps}
    assert "fan.each.work[1]" in flagged, record.slow_steps
    assert flagged["fan.each.work[1]"].seconds > 20 > flagged["fan.each.work[1]"].threshold_seconds
    page = report_html(build_report(record))
    assert 'data-task="fan.each.work[1]"' in page


def test_a_branch_case_that_keeps_failing_takes_the_fallback_until_reset(cluster: AirflowCluster) -> None:
    for _ in range(2):
        record = run_to_end(cluster, BREAKER, {"fail": True}, "failed")
        assert record.failed_phases == ["primary"] and record.breakers == []
    # two failures in the last five runs: the breaker is open, the branch takes the fallback
    record = run_to_end(cluster, BREAKER, {"fail": False}, "success")
    states = {t.task_id: t.state for t in record.tasks}
    assert (states["primary.act"], states["fallback.act_fallback"]) == ("skipped", "success")
    (breaker,) = record.breakers
    assert (breaker.name, breaker.kind, breaker.fallback) == ("primary", "branch", "fallback")
    assert "failed in 2 of the last 5 runs" in breaker.reason and "recovery breaker reset sched_breaker primary" in breaker.reason
    assert "took fallback instead" in report_html(build_report(record))
    # and on the run's note, where the on-call engineer sees it in the UI
    assert record.note == "circuit breaker open: primary -> fallback"
    assert cluster.api.dag_run(BREAKER, record.run_id).get("note") == record.note
    choose_log = cluster.task_log(BREAKER, record.run_id, "choose.choose")
    assert "circuit breaker 'primary' is open" in choose_log

    reset = subprocess.run(
        [str(Path(sys.executable).with_name("recovery")), "breaker", "reset", BREAKER, "primary",
         "--ledger", str(cluster.home / "recovery-ledger")],
        env=os.environ.copy(), capture_output=True, text=True, check=False,
    )
    assert reset.returncode == 0, reset.stdout + reset.stderr
    record = run_to_end(cluster, BREAKER, {"fail": False}, "success")
    states = {t.task_id: t.state for t in record.tasks}
    assert (states["primary.act"], states["fallback.act_fallback"], record.breakers) == ("success", "skipped", [])
