"""pgBackRest on a real cluster with archive_command feeding a file repository: backup, PITR, verify.

One archiving cluster for the module (start-up and the first backup cost seconds on two cores);
each restore goes into its own scratch directory and is stopped and removed by the drop operator.
The corruption test runs last: it damages the module's repository.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services.conftest import ROLE, SECRET, context, pg_conn
from tests.support.pgbackrest import archiving_cluster, labels, owned_dir, timed_writes
from tests.support.postgres import PostgresCluster, _os_user, free_port

from recovery_provider.operators.pgbackrest import (
    PgBackRestBackupOperator,
    PgBackRestCheckOperator,
    PgBackRestDropScratchOperator,
    PgBackRestInfoOperator,
    PgBackRestRestoreOperator,
    PgBackRestStanzaCreateOperator,
    PgBackRestVerifyOperator,
)
from recovery_provider.sensors.pgbackrest import PgBackRestArchiveFreshnessSensor

pytestmark = pytest.mark.services
CONN = "pgbr_src"


class Drill:
    """The module's cluster, stanza and repository, plus the first backup's XCom."""

    def __init__(self, cluster: PostgresCluster, stanza: str, repository: str, scratch: Path) -> None:
        self.cluster, self.stanza, self.repository, self.scratch = cluster, stanza, repository, scratch
        self.backup: dict[str, Any] = {}
        self.restored: list[Path] = []

    def common(self) -> dict[str, Any]:
        return {"stanza": self.stanza, "repository": self.repository}

    def restore(self, name: str, **kwargs: Any) -> dict[str, Any]:
        data_dir = self.scratch / name
        self.restored.append(data_dir)
        op = PgBackRestRestoreOperator(task_id=f"restore_{name}", conn_id=CONN, data_dir=str(data_dir),
                                       port=free_port(), wait_timeout="90s", **self.common(), **kwargs)
        result: dict[str, Any] = op.execute(context())
        return result


@pytest.fixture(scope="module")
def drill() -> Iterator[Drill]:
    user = _os_user()
    repo_dir = owned_dir("pgbr-repo-", user)
    scratch = owned_dir("pgbr-scr-", user)
    repository = f"file://{repo_dir}"
    with archiving_cluster(repository) as (cluster, stanza, _config):
        cluster.create_role(ROLE, SECRET, superuser=True)  # pgBackRest logs in with a password
        pg_conn(CONN, cluster)
        cluster.create_database("shop")
        state = Drill(cluster, stanza, repository, scratch)
        try:
            yield state
        finally:
            for data_dir in state.restored:
                PgBackRestDropScratchOperator(task_id="drop", data_dir=str(data_dir), **state.common()).execute(context())
            shutil.rmtree(repo_dir, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def backed_up(drill: Drill) -> Drill:
    """Stanza created (twice: idempotent), archiving checked, one full backup taken."""
    for _ in range(2):
        PgBackRestStanzaCreateOperator(task_id="stanza", conn_id=CONN, **drill.common()).execute(context())
    drill.backup = PgBackRestBackupOperator(task_id="backup", conn_id=CONN, type="full", compress_type="lz4",
                                            **drill.common()).execute(context())
    return drill


def test_check_backup_and_info_report_structured_facts(
    backed_up: Drill, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    checked = PgBackRestCheckOperator(task_id="check", conn_id=CONN, **backed_up.common()).execute(context())
    assert checked["ok"] and checked["archived_segment"]  # a WAL switch went through archive_command
    backup = backed_up.backup
    assert backup["type"] == "full" and backup["label"].endswith("F")
    assert backup["size_bytes"] > 10_000_000 and 0 < backup["repo_size_bytes"] < backup["size_bytes"]  # lz4
    assert dt.datetime.fromisoformat(backup["finished_at"]) >= dt.datetime.fromisoformat(backup["started_at"])
    info = PgBackRestInfoOperator(task_id="info", **backed_up.common()).execute(context())
    assert info["status"] == "ok" and info["newest"]["label"] == backup["label"]
    assert info["archive"][0]["max"] >= backup["wal_stop"]
    # the login's password reached pgBackRest (its socket login needs it) and nowhere else
    logged = caplog.text + capsys.readouterr().out  # Airflow's task logger writes to stdout here
    assert "pgbackrest check" in logged and "--pg1-user=recovery" in logged
    assert SECRET not in logged and SECRET not in repr(info) + repr(backup) + repr(checked)


def test_restore_to_a_time_keeps_exactly_the_rows_committed_before_it(backed_up: Drill) -> None:
    cluster = backed_up.cluster
    before = timed_writes(cluster, "shop", "before_t", 4)
    target = cluster.scalar("SELECT clock_timestamp()")
    timed_writes(cluster, "shop", "after_t", 3)
    PgBackRestCheckOperator(task_id="check", conn_id=CONN, **backed_up.common()).execute(context())  # archive it all
    result = backed_up.restore("at_time", type="time", target=target.isoformat())
    assert labels(result["port"], "shop") == {"before_t": 4}
    assert result["backup_set"] == backed_up.backup["label"] and not result["in_recovery"]
    last_commit = dt.datetime.fromisoformat(result["last_commit_at"])
    assert before[-1] <= last_commit < target
    # achieved RPO: what a restore to T gives up = T - last restored commit (here ~the 0.2 s pause)
    assert result["achieved_rpo_seconds"] == pytest.approx((target - last_commit).total_seconds(), abs=0.01)
    assert 0 < result["achieved_rpo_seconds"] < 2
    # the run ledger reads finished_at as the recovery point: the last restored commit
    from recovery_provider.evidence.collect import recovery_points

    assert recovery_points([result]) == [last_commit]


def test_restore_to_an_lsn_and_to_the_newest(backed_up: Drill) -> None:
    cluster = backed_up.cluster
    timed_writes(cluster, "shop", "lsn_before", 2, gap=0)
    lsn = str(cluster.scalar("SELECT pg_current_wal_lsn()::text"))
    timed_writes(cluster, "shop", "lsn_after", 2, gap=0)
    PgBackRestCheckOperator(task_id="check", conn_id=CONN, **backed_up.common()).execute(context())
    dry = PgBackRestRestoreOperator(task_id="r", data_dir=str(backed_up.scratch / "dry"), type="lsn", target=lsn,
                                    port=free_port(), **backed_up.common()).execute(context(dry_run=True))
    assert dry["dry_run"] and f"target {lsn}" in dry["would"] and not (backed_up.scratch / "dry").exists()
    at_lsn = backed_up.restore("at_lsn", type="lsn", target=lsn)
    got = labels(at_lsn["port"], "shop")
    assert got.get("lsn_before") == 2 and "lsn_after" not in got
    newest = backed_up.restore("newest", type="latest")
    assert labels(newest["port"], "shop")["lsn_after"] == 2


def test_archive_freshness_reads_the_repository(backed_up: Drill) -> None:
    fresh = PgBackRestArchiveFreshnessSensor(task_id="rpo", max_age="10m", **backed_up.common())
    result = fresh.check()
    assert result["ok"], result["message"]
    assert result["segment"] >= backed_up.backup["wal_stop"] and result["age_seconds"] < 600
    stale = PgBackRestArchiveFreshnessSensor(task_id="rpo", max_age=0.001, **backed_up.common()).check()
    assert not stale["ok"] and "RPO" in stale["message"]
    # deferred, the same check runs in the triggerer from the serialised kwargs (no secrets in them)
    import asyncio

    from recovery_provider.triggers.probe import ProbeTrigger

    classpath, kwargs = ProbeTrigger(probe=f"recovery_provider.hooks.probes:{fresh.probe_name}",
                                     probe_kwargs=fresh.probe_kwargs(), poke_interval=0.1, timeout=30).serialize()

    async def first_event() -> Any:
        async for event in ProbeTrigger(**kwargs).run():
            return event.payload
        return None

    assert classpath == "recovery_provider.triggers.probe.ProbeTrigger"
    assert asyncio.run(first_event())["status"] == "success"


def _fails_at_once(op: Any) -> str:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as caught:
        op.execute(context())
    return str(caught.value)


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"type": "fulll"}, "use one of full, diff, incr"),
    ({"compress_type": "zstd"}, "compress_type 'zstd'"),
    ({"process_max": "two"}, "process_max 'two'"),
])
def test_bad_backup_arguments_fail_without_retry(backed_up: Drill, kwargs: dict[str, Any], says: str) -> None:
    assert says in _fails_at_once(PgBackRestBackupOperator(task_id="b", conn_id=CONN, **backed_up.common(), **kwargs))


def test_bad_restore_requests_fail_without_retry(backed_up: Drill, tmp_path: Path) -> None:
    common = backed_up.common()
    scratch = backed_up.scratch
    no_zone = PgBackRestRestoreOperator(task_id="r", data_dir=str(scratch / "x"), type="time",
                                        target="2024-01-02 03:04:05", port=free_port(), **common)
    assert "no time zone" in _fails_at_once(no_zone)
    bad_lsn = PgBackRestRestoreOperator(task_id="r", data_dir=str(scratch / "x"), type="lsn", target="12", port=1, **common)
    assert "not an LSN" in _fails_at_once(bad_lsn)
    (tmp_path / "PG_VERSION").write_text("15")  # somebody's data directory
    not_ours = PgBackRestRestoreOperator(task_id="r", data_dir=str(tmp_path), port=free_port(), **common)
    assert "was not created by a restore of this provider" in _fails_at_once(not_ours)
    assert (tmp_path / "PG_VERSION").read_text() == "15"
    no_such_set = PgBackRestRestoreOperator(task_id="r", data_dir=str(scratch / "noset"), backup_set="20000101-000000F",
                                            port=free_port(), **common)
    backed_up.restored.append(scratch / "noset")
    assert "retrying cannot fix this" in _fails_at_once(no_such_set)
    missing_conn = PgBackRestInfoOperator(task_id="i", stanza=backed_up.stanza, repository="s3://no_such_conn@bucket/x")
    assert "no_such_conn" in _fails_at_once(missing_conn)
    missing_pg_conn = PgBackRestBackupOperator(task_id="b", conn_id="no_such_pg", **common)
    assert "no_such_pg" in _fails_at_once(missing_pg_conn)


def test_z_verify_and_restore_refuse_a_flipped_byte_at_once(backed_up: Drill) -> None:
    """Last in the module: it damages the repository's only backup."""
    ok = PgBackRestVerifyOperator(task_id="verify", **backed_up.common()).execute(context())
    assert ok["ok"] and ok["backups"] == [{"label": backed_up.backup["label"], "status": "valid"}]
    repo = Path(backed_up.repository.removeprefix("file://"))
    files = sorted((repo / "backup" / backed_up.stanza / backed_up.backup["label"]).rglob("*"), key=lambda p: p.stat().st_size)
    victim = [p for p in files if p.is_file() and "pg_data" in str(p)][-1]  # the biggest data file or bundle
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    said = _fails_at_once(PgBackRestVerifyOperator(task_id="verify", **backed_up.common()))
    assert backed_up.backup["label"] in said and "Do not restore from the damaged backup" in said
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="retrying cannot fix this"):
        backed_up.restore("corrupt", type="immediate")
