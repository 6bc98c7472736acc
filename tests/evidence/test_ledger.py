"""The run ledger on a real scheduler: what it recorded equals what Airflow's task instances say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import RunRecord
from tests.evidence.conftest import LEDGER_BUCKET, PG_PASSWORD, EvidenceRuns
from tests.support.airflow_cluster import parse_dt
from tests.support.s3 import CREDENTIALS

pytestmark = pytest.mark.scheduler


def record_of(runs: EvidenceRuns, dag_id: str, run_id: str) -> RunRecord:
    return Ledger(runs.ledger).read(dag_id, run_id)


def test_each_task_instance_is_recorded_with_its_times_tries_and_state(evidence_runs: EvidenceRuns) -> None:
    api = evidence_runs.cluster.api
    record = record_of(evidence_runs, "evidence_drill", evidence_runs.drill_run)
    tis = {(t.task_id, t.map_index): t for t in api.task_instances("evidence_drill", evidence_runs.drill_run)}
    recorded = {(t.task_id, t.map_index): t for t in record.tasks}
    assert set(recorded) == set(tis)
    for key, ti in tis.items():
        task = recorded[key]
        assert task.state == ti.state, key
        assert task.start == ti.start_date and task.end == ti.end_date, key
        assert task.tries == ti.try_number, key
    assert recorded[("cutover.switch", -1)].tries == 2  # failed once, retried
    loads = sorted((t.map_index, t.target, t.state) for t in record.tasks if t.task_id == "restore.each.load")
    assert loads == [(0, "orders", "success"), (1, "billing", "success"), (2, "bad", "failed")]


def test_the_run_times_outcome_and_plan_are_recorded(evidence_runs: EvidenceRuns) -> None:
    run = evidence_runs.cluster.api.dag_run("evidence_drill", evidence_runs.drill_run)
    record = record_of(evidence_runs, "evidence_drill", evidence_runs.drill_run)
    queued, start, end = parse_dt(run["queued_at"]), parse_dt(run["start_date"]), parse_dt(run["end_date"])
    assert isinstance(queued, datetime) and isinstance(start, datetime) and isinstance(end, datetime)
    assert record.state == "success" and record.start == start and record.end == end
    # the recovery time counts from when the run was asked for (queued) to its end
    assert record.achieved_seconds == pytest.approx((end - queued).total_seconds())
    assert [(a.number, a.state) for a in record.attempts] == [(1, "success")]
    # tolerate 1 over three targets with one failing: success, flagged partial
    assert record.outcome == "partial" and record.partial_phases == ["restore"] and record.failed_phases == []
    assert record.plan is not None
    assert (record.plan.rto_seconds, record.plan.rpo_seconds) == (600, 3600)
    assert record.plan.planned_seconds >= 3  # backup (3 s) then restore (1 s)
    assert set(record.plan.phase_windows) >= {"backup", "restore", "approve", "cutover"}


def test_the_approval_records_who_answered_what(evidence_runs: EvidenceRuns) -> None:
    record = record_of(evidence_runs, "evidence_drill", evidence_runs.drill_run)
    [approval] = record.approvals
    assert approval.task_id == "approve.approve"
    assert approval.subject == "Cut over to the restored cluster?"
    assert approval.chosen == ["Approve"]
    assert approval.responded_by == evidence_runs.cluster.admin_user
    assert approval.asked_at and approval.responded_at and approval.responded_at >= approval.asked_at


def test_a_run_stopped_by_hand_is_recorded_as_far_as_it_went(evidence_runs: EvidenceRuns) -> None:
    record = record_of(evidence_runs, "evidence_drill", evidence_runs.stopped_run)
    states = {t.task_id: t.state for t in record.tasks}
    # judged as far as it went: the approval it was stopped at is the phase that failed
    assert (record.state, record.outcome, record.failed_phases) == ("failed", "failed", ["approve"])
    assert record.note == "FAILED in phase(s) approve" and record.plan is not None
    assert states["backup.dump"] == "success" and states["approve.approve"] not in ("success", None)
    [approval] = record.approvals
    assert approval.responded_by is None and approval.chosen is None


def test_data_age_is_the_age_of_the_backup_the_check_relied_on(evidence_runs: EvidenceRuns) -> None:
    store = Path(evidence_runs.location.removeprefix("file://")) / "evidence_src"
    manifests = list(store.glob("*/manifest.json"))
    assert len(manifests) == 2  # one per drill run
    finished = max(datetime.fromisoformat(json.loads(m.read_text())["finished_at"]) for m in manifests)
    for run_id in evidence_runs.check_runs:
        record = record_of(evidence_runs, "evidence_check", run_id)
        assert record.start is not None and record.recovery_point == finished
        assert record.data_age_seconds == pytest.approx((record.start - finished).total_seconds())
        assert 0 < record.data_age_seconds < 3600


def ledger_objects(runs: EvidenceRuns) -> dict[str, str]:
    """Every object under the ledger prefix, read straight from the bucket: key -> text."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=runs.s3_endpoint, region_name="us-east-1", **CREDENTIALS)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=LEDGER_BUCKET, Prefix="ledger/").get("Contents", [])]
    return {key: s3.get_object(Bucket=LEDGER_BUCKET, Key=key)["Body"].read().decode() for key in keys}


def test_ledger_and_report_hold_no_secret(evidence_runs: EvidenceRuns) -> None:
    objects = ledger_objects(evidence_runs)
    # four run records, and each DAG's history summary (evidence/history.py): none may hold a secret
    assert len(objects) == 6 and sum(key.endswith("/_history.json") for key in objects) == 2, sorted(objects)
    for key, text in objects.items():
        assert PG_PASSWORD not in text and "aws_secret" not in text and "endpoint_url" not in text, key
    report = subprocess.run(
        [str(Path(sys.executable).with_name("recovery")), "report", "evidence_drill", evidence_runs.drill_run,
         "--ledger", evidence_runs.ledger, "--json"],
        capture_output=True, text=True, check=True,
    )
    assert PG_PASSWORD not in report.stdout
    assert json.loads(report.stdout)["rto"]["verdict"] == "met"


def test_cli_report_shows_the_run_and_the_trend(evidence_runs: EvidenceRuns) -> None:
    recovery = str(Path(sys.executable).with_name("recovery"))
    env = {**os.environ, "AIRFLOW__RECOVERY__LEDGER_LOCATION": evidence_runs.ledger, "COLUMNS": "160"}
    one = subprocess.run([recovery, "report", "evidence_drill", evidence_runs.drill_run],
                         capture_output=True, text=True, env=env, check=False)
    assert one.returncode == 0, one.stderr
    assert "PARTIAL" in one.stdout and "restore.each.load[bad]: failed" in one.stdout and "critical path:" in one.stdout
    assert f"approval approve.approve: Approve by {evidence_runs.cluster.admin_user}" in one.stdout
    assert "expected on this deployment" in one.stdout  # calibrated from the ledger's other runs
    trend = subprocess.run([recovery, "report", "evidence_check"], capture_output=True, text=True, env=env, check=False)
    assert trend.returncode == 0, trend.stderr
    assert "missed 2" in trend.stdout and all(run_id in trend.stdout for run_id in evidence_runs.check_runs)
    missing = subprocess.run([recovery, "report", "no_such_dag"], capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 1 and "no recorded runs of 'no_such_dag'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_records_are_whole_objects_named_by_dag_and_run(evidence_runs: EvidenceRuns) -> None:
    keys = set(ledger_objects(evidence_runs))
    assert f"ledger/evidence_drill/{quote(evidence_runs.drill_run, safe='')}.json" in keys
    assert not [k for k in keys if k.endswith(".partial")]
