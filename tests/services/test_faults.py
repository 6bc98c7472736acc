"""Faults a backup engineer worries about: killed backups, flipped bytes, dead servers and storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tests.services.conftest import BUCKET, conn_env, database_exists, plain_dump
from tests.services.test_roundtrip import backup, restore
from tests.support.cutting_proxy import CuttingProxy
from tests.support.postgres import PostgresCluster, free_port

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.pg import PostgresUnavailable
from recovery_provider.hooks.store import BackupCorrupt, BackupIncomplete, BackupStore, StorageError
from recovery_provider.operators.backup import VerifyBackupOperator

pytestmark = pytest.mark.services
RunOp = Callable[..., Any]
RUN_KEY = "20240102T030405Z"


@pytest.fixture(scope="module")
def big(pg: PostgresCluster) -> str:
    """~40 MB of poorly compressible rows: a dump that takes long enough to be killed mid-stream."""
    name = f"big_{uuid.uuid4().hex[:6]}"
    pg.create_database(name)
    pg.psql("CREATE TABLE payload (id int, a text, b text, c text)", dbname=name)
    pg.psql("INSERT INTO payload SELECT g, md5(g::text), md5((g * 7)::text), repeat(md5(random()::text), 2)"
            " FROM generate_series(1, 300000) g", dbname=name)
    return name


KILLABLE = textwrap.dedent("""
    import datetime as dt, sys
    from recovery_provider.operators.postgres import PostgresBackupOperator
    op = PostgresBackupOperator(task_id="b", conn_id="pg_main", database=sys.argv[1], location=sys.argv[2],
                                compress="9")
    op.execute({"params": {}, "logical_date": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
                "run_id": "r", "ti": None})
    print("FINISHED")
""")


def _pg_dump_children(pid: int) -> list[Any]:
    import psutil

    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == "pg_dump"]
    except psutil.Error:
        return []


def test_backup_killed_mid_stream_is_never_restorable(pg: PostgresCluster, big: str, location: str, run_op: RunOp) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, big, location], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 60
    dumps: list[Any] = []
    while time.monotonic() < deadline and not dumps:
        dumps = _pg_dump_children(proc.pid)
        time.sleep(0.02)
    assert dumps, "pg_dump never started: " + proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    time.sleep(0.7)  # let it stream for a while
    assert proc.poll() is None, "the backup finished before it could be killed: make the table bigger"
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 the process doing the backup
    proc.wait(timeout=10)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert "FINISHED" not in out
    for child in dumps:  # its orphaned pg_dump dies on the broken pipe instead of running on
        child.wait(timeout=10)
        assert not child.is_running()

    store = BackupStore(location)
    assert store.manifest(big, RUN_KEY) is None
    if location.startswith("file://"):  # locally the partial object is visible; it is still not a backup
        listed = store.list_backups(big)
        assert [b.complete for b in listed] == [False]
    with pytest.raises(BackupIncomplete, match="no manifest"):
        run_op(VerifyBackupOperator(task_id="v", database=big, location=location))
    with pytest.raises(BackupIncomplete, match="incomplete"):
        run_op(restore(big, location, f"{big}_k", run_key=RUN_KEY))
    with pytest.raises(BackupIncomplete, match="no complete backup"):
        run_op(restore(big, location, f"{big}_k"))
    assert not database_exists(pg, f"{big}_k")

    # a re-run replaces the leftovers and completes
    manifest = run_op(backup(big, location, compress="1"))
    assert manifest["objects"][0]["size"] > 0
    assert run_op(VerifyBackupOperator(task_id="v", database=big, location=location))["ok"]


def _flip_byte(location: str, store: BackupStore, database: str, key: str) -> None:
    target = store.backup_path(database, RUN_KEY) / key
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    if location.startswith("file://"):
        with open(target.path, "r+b") as handle:
            handle.seek(len(data) // 2)
            handle.write(bytes([data[len(data) // 2]]))
    else:
        import boto3

        client = boto3.client("s3", endpoint_url=json.loads(os.environ["AIRFLOW_CONN_S3_TEST"])["extra"]["endpoint_url"],
                              region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        client.put_object(Bucket=BUCKET, Key=target.key, Body=bytes(data))


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_one_flipped_byte_refuses_before_creating(pg: PostgresCluster, shop: str, location: str, fmt: str,
                                                   run_op: RunOp) -> None:
    manifest = run_op(backup(shop, location, format=fmt))
    victim = max(manifest["objects"], key=lambda o: o["size"])["key"]
    store = BackupStore(location)
    _flip_byte(location, store, shop, victim)

    with pytest.raises(BackupCorrupt, match=f"(?s)nothing was created.*{victim.split('/')[-1]}.*SHA-256"):
        run_op(restore(shop, location, f"{shop}_x", jobs=2 if fmt == "directory" else 1))
    assert not database_exists(pg, f"{shop}_x")
    with pytest.raises(BackupCorrupt, match="does not match its manifest"):
        run_op(VerifyBackupOperator(task_id="v", database=shop, location=location))
    # and the damaged backup is not silently overwritten by a re-run either (sizes still match: reused)
    assert run_op(backup(shop, location, format=fmt))["finished_at"] == manifest["finished_at"]


def test_rerun_after_interrupted_restore_recreates(pg: PostgresCluster, shop: str, file_location: str,
                                                   run_op: RunOp) -> None:
    run_op(backup(shop, file_location))
    target = f"{shop}_i"
    run_op(restore(shop, file_location, target))
    # simulate a restore that died half way: our marker says "in progress", data is partial
    comment = pg.scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [target])
    from psycopg import sql

    with pg.connect() as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(target), sql.Literal(comment.replace(" complete", " in progress"))))
    pg.psql("DELETE FROM items", dbname=target)
    assert run_op(restore(shop, file_location, target))["action"] == "recreated"
    assert plain_dump(pg, shop) == plain_dump(pg, target)
    # a database that is not our restore is never overwritten
    pg.create_database(f"{shop}_prod")
    with pytest.raises(RecoveryError, match="already exists and is not an unfinished restore"):
        run_op(restore(shop, file_location, f"{shop}_prod"))


def test_unreachable_database_fails_clearly_after_retries(file_location: str, run_op: RunOp) -> None:
    conn_env("pg_dead", {"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "login": "x",
                         "password": "dead-secret-1", "schema": "nowhere"})
    op = backup("nowhere", file_location, connect_attempts=3, connect_retry_delay=0.2)
    op.conn_id = "pg_dead"
    started = time.monotonic()
    with pytest.raises(PostgresUnavailable) as err:
        run_op(op)
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "after 3 attempt(s)" in message and "Connection refused" in message and "Check that the server is up" in message
    assert elapsed >= 0.2 + 0.4  # two back-off pauses between three attempts
    assert "dead-secret-1" not in message


def test_unreachable_storage_fails_clearly_after_retries(shop: str, run_op: RunOp) -> None:
    conn_env("s3_dead", {"conn_type": "aws", "login": "a", "password": "b", "extra": {
        "endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1",
        "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 1}}})
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"(?s)backup storage s3://s3_dead@.*failed.*Could not connect.*config_kwargs.retries"):
        run_op(backup(shop, "s3://s3_dead@nobucket/x"))
    assert time.monotonic() - started < 60
    with pytest.raises(StorageError, match="Could not connect"):
        run_op(restore(shop, "s3://s3_dead@nobucket/x", f"{shop}_s", run_key=RUN_KEY))


def test_a_download_cut_mid_object_resumes_where_it_stopped(pg: PostgresCluster, big: str, s3_endpoint: str,
                                                           run_op: RunOp, caplog: pytest.LogCaptureFixture) -> None:
    proxy = CuttingProxy(int(s3_endpoint.rsplit(":", 1)[1]), cut_after=4 * 1024 * 1024)
    try:
        conn_env("s3_flaky", {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {
            "endpoint_url": f"http://127.0.0.1:{proxy.port}", "region_name": "us-east-1"}})
        location = f"s3://s3_flaky@{BUCKET}/{uuid.uuid4().hex[:10]}"
        manifest = run_op(backup(big, location))
        assert manifest["objects"][0]["size"] > 3 * proxy.cut_after  # the cuts land inside the object
        proxy.cuts_left = 2
        target = f"{big}_cut"
        assert run_op(restore(big, location, target))["action"] == "created"
    finally:
        proxy.close()
    assert proxy.cuts_made == 2
    assert caplog.text.count("resuming there") == 2
    digest = "SELECT count(*), md5(string_agg(md5(p::text), '' ORDER BY id)) FROM payload p"
    with pg.connect(target) as restored, pg.connect(big) as source:
        assert restored.execute(digest).fetchone() == source.execute(digest).fetchone()
