"""The pitr_drill pack spec's steps, in its order, on a real archiving cluster: the RPO proven in the data.

check -> backup -> drill_markers -> check -> restore to T -> drill_verify -> drop_scratch, each
operator built from the arguments dags/specs/pitr_drill.yaml gives it. Then what the proof refuses:
a copy restored past T (the rows written after T are there), and markers that were never written.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services.conftest import ROLE, SECRET, context, pg_conn
from tests.support.pgbackrest import archiving_cluster, owned_dir
from tests.support.postgres import _os_user, free_port

from recovery_provider.operators.pgbackrest import (
    PgBackRestBackupOperator,
    PgBackRestCheckOperator,
    PgBackRestDropScratchOperator,
    PgBackRestRestoreOperator,
)
from recovery_provider.operators.pgbackrest_drill import (
    PgBackRestDrillMarkersOperator,
    PgBackRestDrillVerifyOperator,
)

pytestmark = pytest.mark.services
CONN = "pitr_source"


class Setup:
    def __init__(self, stanza: str, repository: str, scratch: Path) -> None:
        self.stanza, self.repository, self.scratch = stanza, repository, scratch

    def common(self) -> dict[str, Any]:
        return {"stanza": self.stanza, "repository": self.repository}

    def drop(self, data_dir: Path) -> dict[str, Any]:
        result: dict[str, Any] = PgBackRestDropScratchOperator(task_id="drop_scratch", data_dir=str(data_dir),
                                                               **self.common()).execute(context())
        return result


@pytest.fixture(scope="module")
def archived() -> Iterator[Setup]:
    user = _os_user()
    repo_dir, scratch = owned_dir("pitr-repo-", user), owned_dir("pitr-scr-", user)
    with archiving_cluster(f"file://{repo_dir}") as (cluster, stanza, _config):
        cluster.create_role(ROLE, SECRET, superuser=True)
        pg_conn(CONN, cluster)
        setup = Setup(stanza, f"file://{repo_dir}", scratch)
        from recovery_provider.operators.pgbackrest import PgBackRestStanzaCreateOperator

        PgBackRestStanzaCreateOperator(task_id="stanza", conn_id=CONN, **setup.common()).execute(context())
        try:
            yield setup
        finally:
            for data_dir in scratch.iterdir():
                if not data_dir.name.startswith("."):
                    setup.drop(data_dir)
            shutil.rmtree(repo_dir, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)


def _markers(setup: Setup, run_id: str) -> dict[str, Any]:
    """The markers phase: drill_markers, then a WAL switch that archives them (pgbackrest.check)."""
    written: dict[str, Any] = PgBackRestDrillMarkersOperator(task_id="write_markers", conn_id=CONN, before=3, after=2,
                                                             gap="1s").execute(context(run_id=run_id))
    PgBackRestCheckOperator(task_id="markers_archived", conn_id=CONN, **setup.common()).execute(context())
    return written


def _restore(setup: Setup, name: str, port: int, **kwargs: Any) -> dict[str, Any]:
    op = PgBackRestRestoreOperator(task_id="restore_to_t", conn_id=CONN, data_dir=str(setup.scratch / name), port=port,
                                   wait_timeout="90s", **setup.common(), **kwargs)
    result: dict[str, Any] = op.execute(context())
    return result


def _verify(run_id: str, target: str, port: int, **kwargs: Any) -> dict[str, Any]:
    op = PgBackRestDrillVerifyOperator(task_id="prove_rpo", conn_id=CONN, port=str(port), target=target, **kwargs)
    result: dict[str, Any] = op.execute(context(run_id=run_id))
    return result


def test_the_drill_restores_exactly_the_rows_before_t_and_measures_the_rpo(archived: Setup) -> None:
    PgBackRestCheckOperator(task_id="archive_ok", conn_id=CONN, **archived.common()).execute(context())
    backup = PgBackRestBackupOperator(task_id="take_backup", conn_id=CONN, type="incr", **archived.common()).execute(context())
    assert backup["type"] == "full"  # pgBackRest makes the first incremental a full one
    marks = _markers(archived, "drill_1")
    target = dt.datetime.fromisoformat(marks["target_time"])
    assert dt.datetime.fromisoformat(marks["last_before_committed_by"]) < target
    assert target < dt.datetime.fromisoformat(marks["first_after_committed_by"])
    port = free_port()
    restored = _restore(archived, "drill_1", port, type="time", target=marks["target_time"])
    assert restored["backup_set"] == backup["label"] and not restored["in_recovery"]
    proven = _verify("drill_1", marks["target_time"], port, max_rpo="5m")
    assert proven["rows_before_found"] == 3 and proven["rows_after_found"] == 0
    # achieved RPO = T - the last restored commit: the 1 s gap before T (plus the marker's own commit)
    assert 0.9 <= proven["achieved_rpo_seconds"] < 2.5
    assert proven["achieved_rpo_seconds"] == pytest.approx(restored["achieved_rpo_seconds"], abs=0.01)
    assert dt.datetime.fromisoformat(proven["last_restored_commit_at"]) <= target
    assert SECRET not in repr(proven) + repr(marks) + repr(restored)
    # the run ledger takes the achieved RPO and the restore time from these results
    from recovery_provider.evidence.collect import pitr_measures

    assert pitr_measures([backup, marks, restored, proven]) == {
        "achieved_rpo_seconds": proven["achieved_rpo_seconds"], "restore_seconds": restored["restore_seconds"],
    }
    from airflow.sdk.exceptions import AirflowFailException

    later = (target + dt.timedelta(minutes=10)).isoformat()  # as if T were 10 minutes on: 600 s given up
    with pytest.raises(AirflowFailException, match="exceeds max_rpo 60s"):
        _verify("drill_1", later, port, max_rpo="1m")
    dropped = archived.drop(archived.scratch / "drill_1")
    assert dropped["stopped"] and dropped["removed"] and not (archived.scratch / "drill_1").exists()
    assert archived.drop(archived.scratch / "drill_1")["note"] == "absent"  # the finally step, twice: harmless


def test_the_proof_refuses_a_copy_past_t_and_missing_markers(archived: Setup) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    marks = _markers(archived, "drill_2")
    port = free_port()
    _restore(archived, "drill_2", port, type="latest")  # past T: the rows written after T are there
    with pytest.raises(AirflowFailException, match=r"markers committed after T are present \(seq \[4, 5\]\)"):
        _verify("drill_2", marks["target_time"], port)
    with pytest.raises(AirflowFailException, match="no complete set of markers for tag 'never_written'"):
        _verify("never_written", marks["target_time"], port)
    with pytest.raises(AirflowFailException, match="no time zone"):
        _verify("drill_2", "2024-01-02 03:04:05", port)
    archived.drop(archived.scratch / "drill_2")


def test_a_dry_run_changes_nothing_and_still_gives_the_restore_a_target(archived: Setup) -> None:
    dry = PgBackRestDrillMarkersOperator(task_id="write_markers", conn_id=CONN).execute(context(dry_run=True))
    assert dry["dry_run"] and "write 3 marker rows" in dry["would"]
    assert dt.datetime.fromisoformat(dry["target_time"]).tzinfo is not None
