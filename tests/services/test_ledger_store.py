"""The run ledger on the stores a deployment uses: a local folder and an S3 bucket over HTTP."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recovery_provider.evidence.ledger import Ledger, LedgerError
from recovery_provider.evidence.record import RunRecord, TaskRecord

pytestmark = pytest.mark.services

T0 = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.timezone.utc)


def record(dag_id: str, run_id: str, start: dt.datetime, seconds: float, state: str = "success") -> RunRecord:
    return RunRecord(
        dag_id=dag_id, run_id=run_id, state=state, start=start, end=start + dt.timedelta(seconds=seconds),
        achieved_seconds=seconds, outcome="success" if state == "success" else "failed",
        tasks=[TaskRecord(task_id="restore.each.load", map_index=0, target="orders", phase="restore", state=state,
                          start=start, end=start + dt.timedelta(seconds=seconds), tries=1)],
        recorded_at=start + dt.timedelta(seconds=seconds + 1),
    )


def test_records_survive_a_new_reader_and_list_newest_first(location: str) -> None:
    writer = Ledger(location)
    odd = "manual__2026-11-01T02:00:00+00:00/drill #2"  # ':' '+' '/' ' ' '#' in a run id
    writer.write(record("restore_drill", "scheduled__a", T0, 100))
    writer.write(record("restore_drill", odd, T0 + dt.timedelta(days=7), 80))
    writer.write(record("nightly_backup", "scheduled__b", T0, 30))
    reader = Ledger(location)  # another process, another day: only the store is shared
    assert reader.dag_ids() == ["nightly_backup", "restore_drill"]
    assert [r.run_id for r in reader.runs("restore_drill")] == [odd, "scheduled__a"]
    again = reader.read("restore_drill", odd)
    assert again == record("restore_drill", odd, T0 + dt.timedelta(days=7), 80)
    assert again.tasks[0].target == "orders"


def test_a_run_that_ends_again_replaces_its_record(location: str) -> None:
    ledger = Ledger(location)
    ledger.write(record("restore_drill", "manual__x", T0, 100, state="failed"))
    ledger.write(record("restore_drill", "manual__x", T0, 140))  # cleared and re-run
    [only] = ledger.runs("restore_drill")
    assert (only.state, only.achieved_seconds) == ("success", 140)


def test_a_missing_run_is_a_clear_error(location: str) -> None:
    with pytest.raises(LedgerError, match=r"no record of run 'nope' of 'restore_drill'.*recovery report restore_drill"):
        Ledger(location).read("restore_drill", "nope")
    assert Ledger(location).runs("restore_drill") == []


def test_the_cli_reads_the_bucket(location: str) -> None:
    Ledger(location).write(record("restore_drill", "scheduled__a", T0, 100))
    Ledger(location).write(record("restore_drill", "scheduled__b", T0 + dt.timedelta(days=7), 80))
    out = subprocess.run(
        [str(Path(sys.executable).with_name("recovery")), "report", "restore_drill", "--ledger", location],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "150"}, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "scheduled__a" in out.stdout and "20s faster than the run before" in out.stdout


def test_cli_json_from_the_bucket_is_clean_json(location: str) -> None:
    """Airflow logs to stdout when it opens the connection: none of it may reach the JSON."""
    import json

    Ledger(location).write(record("restore_drill", "scheduled__a", T0, 100))
    out = subprocess.run(
        [str(Path(sys.executable).with_name("recovery")), "report", "restore_drill", "scheduled__a",
         "--ledger", location, "--json"], capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rto"]["achieved_seconds"] == 100
