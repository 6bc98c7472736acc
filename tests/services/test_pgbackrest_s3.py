"""pgBackRest through an S3 endpoint that speaks TLS only (moto behind a self-signed certificate).

pgBackRest's S3 driver has no plain-HTTP mode, so this is the only way to prove backup, WAL
archiving and restore through S3 on loopback: the server's archive_command pushes every segment
over HTTPS with the keys in its environment, the operators read the keys from the Airflow
connection (``verify: false`` becomes ``repo1-storage-verify-tls=n``), and a restore to a time T
comes back from the bucket with exactly the rows committed before T.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.services.conftest import conn_env, context, pg_conn
from tests.support.pgbackrest import archiving_cluster, labels, owned_dir, timed_writes
from tests.support.postgres import _os_user, free_port
from tests.support.s3 import CREDENTIALS, s3_tls_server

from recovery_provider.operators.pgbackrest import (
    PgBackRestBackupOperator,
    PgBackRestCheckOperator,
    PgBackRestDropScratchOperator,
    PgBackRestRestoreOperator,
    PgBackRestStanzaCreateOperator,
    PgBackRestVerifyOperator,
)
from recovery_provider.sensors.pgbackrest import PgBackRestArchiveFreshnessSensor

pytestmark = pytest.mark.services
BUCKET = "pitr"
S3_CONN = "s3_tls"
CONN = "pgbr_s3_src"


@pytest.fixture(scope="module")
def tls_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_tls_server(BUCKET, tmp_path_factory.mktemp("tls")) as (endpoint, connection):
        conn_env(S3_CONN, connection)
        yield endpoint


def test_backup_archive_and_point_in_time_restore_through_tls_s3(
    tls_s3: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = f"s3://{S3_CONN}@{BUCKET}/pgbackrest"
    server_env = {"PGBACKREST_REPO1_S3_KEY": CREDENTIALS["aws_access_key_id"],
                  "PGBACKREST_REPO1_S3_KEY_SECRET": CREDENTIALS["aws_secret_access_key"]}
    scratch = owned_dir("pgbr-s3-", _os_user())
    data_dir = scratch / "pitr"
    with archiving_cluster(repository, secrets=server_env) as (cluster, stanza, config_dir):
        common: dict[str, Any] = {"stanza": stanza, "repository": repository}
        try:
            pg_conn(CONN, cluster, password=False)
            cluster.create_database("shop")
            PgBackRestStanzaCreateOperator(task_id="stanza", conn_id=CONN, **common).execute(context())
            backup = PgBackRestBackupOperator(task_id="backup", conn_id=CONN, compress_type="zst", process_max=2,
                                              **common).execute(context())
            assert backup["type"] == "full" and backup["repo_size_bytes"] < backup["size_bytes"]
            timed_writes(cluster, "shop", "before_t", 3)
            target = cluster.scalar("SELECT clock_timestamp()")
            timed_writes(cluster, "shop", "after_t", 2)
            checked = PgBackRestCheckOperator(task_id="check", conn_id=CONN, **common).execute(context())
            assert checked["archived_segment"]  # pushed over HTTPS by the server's archive_command
            fresh = PgBackRestArchiveFreshnessSensor(task_id="rpo", max_age="5m", **common).check()
            assert fresh["ok"] and fresh["segment"] >= checked["archived_segment"], fresh
            # verify is proven on the file repository: here it would re-read ~1,300 ranged GETs (~25 s)

            result = PgBackRestRestoreOperator(
                task_id="restore", conn_id=CONN, data_dir=str(data_dir), type="time", target=target.isoformat(),
                port=free_port(), wait_timeout="90s", process_max=2, **common).execute(context())
            assert labels(result["port"], "shop") == {"before_t": 3}
            assert result["backup_set"] == backup["label"] and 0 < result["achieved_rpo_seconds"] < 2
            # the restored server fetched WAL from the bucket with the keys in its environment only
            assert "repo1-s3-key" not in (data_dir.parent / f".{data_dir.name}.pgbackrest" / "config"
                                          / "pgbackrest.conf").read_text()
            assert CREDENTIALS["aws_secret_access_key"] not in (config_dir / "pgbackrest.conf").read_text()
            logged = capsys.readouterr().out  # the task log (Airflow's logger writes to stdout here)
            assert "--repo1-storage-verify-tls" in logged or "--no-repo1-storage-verify-tls" in logged
            shown = re.findall(r"--repo1-s3-key(?:-secret)?=(\S+)", logged)
            assert shown and set(shown) == {"<redacted>"}  # pgBackRest names the options, never their values
        finally:
            PgBackRestDropScratchOperator(task_id="drop", data_dir=str(data_dir), **common).execute(context())
            shutil.rmtree(scratch, ignore_errors=True)
    assert not Path(data_dir).exists()


def test_plain_http_endpoint_is_refused_with_the_fix(tls_s3: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    conn_env("s3_plain", {"conn_type": "aws", "login": "a", "password": "b",
                          "extra": {"endpoint_url": tls_s3.replace("https://", "http://")}})
    op = PgBackRestVerifyOperator(task_id="verify", stanza="x", repository="s3://s3_plain@pitr/p")
    with pytest.raises(AirflowFailException, match="speaks HTTPS only"):
        op.execute(context())
