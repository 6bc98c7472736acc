"""Hostile names round-trip and execute nothing; the connection password appears nowhere."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from tests.services.conftest import SECRET, database_exists, plain_dump
from tests.services.test_roundtrip import backup, drill, restore
from tests.support.postgres import PostgresCluster

from recovery_provider.hooks.store import BackupStore
from recovery_provider.operators.backup import RetentionOperator, VerifyBackupOperator
from recovery_provider.sensors.backup import BackupFreshnessSensor
from recovery_provider.sensors.postgres import PostgresHealthSensor

pytestmark = pytest.mark.services
RunOp = Callable[..., Any]

HOSTILE_DB = "we\"ird; DROP DATABASE postgres; -- x=y 'q' dbname=postgres"
HOSTILE_SCHEMA = "sch ema\"; CREATE TABLE pwned_schema(x int); --"
HOSTILE_TABLE = "ta'ble; CREATE TABLE pwned_table(x int); select '1"
HOSTILE_COLUMN = "co\"l; DROP TABLE canary; --"


def _seed_hostile(pg: PostgresCluster) -> None:
    from psycopg import sql

    pg.create_database(HOSTILE_DB)
    with pg.connect(HOSTILE_DB) as conn:
        conn.execute("CREATE TABLE canary (id int)")
        conn.execute("INSERT INTO canary VALUES (1), (2)")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
        conn.execute(sql.SQL("CREATE TABLE {} ({} text, n int)").format(
            sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE), sql.Identifier(HOSTILE_COLUMN)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT 'v; ''\"' || g, g FROM generate_series(1, 500) g").format(
            sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)))


def test_hostile_names_round_trip_and_execute_nothing(pg: PostgresCluster, location: str, run_op: RunOp) -> None:
    if not database_exists(pg, HOSTILE_DB):
        _seed_hostile(pg)
    target = HOSTILE_DB + " restored; DROP DATABASE postgres"
    if database_exists(pg, target):
        from psycopg import sql

        with pg.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(target)))
    manifest = run_op(backup(HOSTILE_DB, location))
    assert manifest["database"] == HOSTILE_DB
    assert "/" not in manifest["database_slug"] and " " not in manifest["database_slug"]
    run_op(VerifyBackupOperator(task_id="v", database=HOSTILE_DB, location=location))
    run_op(restore(HOSTILE_DB, location, target))
    assert plain_dump(pg, HOSTILE_DB) == plain_dump(pg, target)
    result = run_op(drill(HOSTILE_DB, location, target))
    assert result["tables"] == 2 and result["rows"] == 502
    for db in (HOSTILE_DB, target):
        tables = {r[0] for r in pg.psql("SELECT relname FROM pg_class WHERE relkind = 'r'", dbname=db)}
        assert "canary" in tables and not {"pwned_schema", "pwned_table"} & tables
    assert database_exists(pg, "postgres")


def test_password_never_in_logs_xcom_manifests_or_argv(
    pg: PostgresCluster, shop: str, location: str, run_op: RunOp,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    class SpyPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            launched.append(([str(x) for x in args], dict(kw.get("env") or {})))
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", SpyPopen)
    xcoms = [
        run_op(backup(shop, location)),
        run_op(VerifyBackupOperator(task_id="v", database=shop, location=location)),
        run_op(restore(shop, location, f"{shop}_s")),
        run_op(drill(shop, location, f"{shop}_s")),
        run_op(RetentionOperator(task_id="r", database=shop, location=location, keep_last=1)),
        run_op(PostgresHealthSensor(task_id="h", conn_id="pg_main", timeout=5, poke_interval=1)),
        run_op(BackupFreshnessSensor(task_id="f", database=shop, location=location, max_age="1h", timeout=5)),
        run_op(backup(shop, location, format="directory", jobs=2, run_key="dir"), dry_run=True),
        run_op(backup(shop, location, format="directory", jobs=2, run_key="dir")),
    ]
    # a failing restore (pg_restore stderr ends up in the error) must not carry it either
    with pytest.raises(Exception) as failed:
        run_op(restore(shop, location, f"{shop}_s2", run_key="no-such-run"))

    tools = [argv for argv, _ in launched if argv[0].endswith(("pg_dump", "pg_restore")) and "--version" not in argv]
    assert len(tools) >= 3, launched
    for argv, env in launched:
        assert not any(SECRET in a for a in argv), argv
        if argv[0].endswith(("pg_dump", "pg_restore")) and "--version" not in argv:  # the child's own environment is the one place
            assert env["PGPASSWORD"] == SECRET and env["PGPASSFILE"] == os.devnull

    store = BackupStore(location)
    stored = []
    for info in store.list_backups(shop):
        for name in ("manifest.json", "verification.json"):
            path = info.path / name
            if path.exists():
                stored.append(path.read_text())
    assert len(stored) >= 3
    out, err = capfd.readouterr()
    haystacks = {"logs": caplog.text, "stdout": out, "stderr": err, "xcom": json.dumps(xcoms, default=str),
                 "stored": "\n".join(stored), "error": str(failed.value)}
    assert "backup complete" in caplog.text + out + err and stored and xcoms  # the logs were captured
    for where, text in haystacks.items():
        assert SECRET not in text, f"password found in {where}"
        assert "s3cr3t" not in text, f"part of the password found in {where}"
