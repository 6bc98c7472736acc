"""Back up, verify, restore, drill: the data that comes back equals the data that went in."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.services.conftest import database_exists, plain_dump
from tests.support.postgres import PostgresCluster

from recovery_provider.hooks.store import BackupStore
from recovery_provider.operators.backup import VerifyBackupOperator
from recovery_provider.operators.postgres import (
    PostgresBackupOperator,
    PostgresDrillVerifyOperator,
    PostgresRestoreOperator,
)

pytestmark = pytest.mark.services
RunOp = Callable[..., Any]


def backup(database: str, location: str, **kw: Any) -> PostgresBackupOperator:
    return PostgresBackupOperator(task_id="backup", conn_id="pg_main", database=database, location=location, **kw)


def restore(database: str, location: str, target: str, **kw: Any) -> PostgresRestoreOperator:
    return PostgresRestoreOperator(task_id="restore", conn_id="pg_main", database=database, location=location,
                                   target_database=target, **kw)


def drill(database: str, location: str, target: str, **kw: Any) -> PostgresDrillVerifyOperator:
    return PostgresDrillVerifyOperator(task_id="drill", conn_id="pg_main", database=database, location=location,
                                       target_database=target, **kw)


@pytest.mark.parametrize(("compression", "key"), [(None, "dump.pgcustom.zst"), ("pg_dump", "dump.pgcustom")])
def test_round_trip_custom_format(pg: PostgresCluster, shop: str, location: str, run_op: RunOp,
                                  compression: str | None, key: str) -> None:
    manifest = run_op(backup(shop, location, compression=compression))
    assert manifest["format"] == "custom" and manifest["tables"] == 3
    assert manifest["wal_lsn"] and manifest["server_version"]
    assert manifest["compression"] == ("zstd:1" if compression is None else "pg_dump")
    (obj,) = manifest["objects"]
    assert obj["key"] == key and obj["size"] > 0 and len(obj["sha256"]) == 64
    if compression is None:  # pg_dump wrote an uncompressed archive; zstd made it smaller
        assert manifest["compress"] == "0" and obj["uncompressed_size"] > 3 * obj["size"]

    verified = run_op(VerifyBackupOperator(task_id="verify", database=shop, location=location))
    assert verified["ok"] and verified["objects"] == 1

    target = f"{shop}_r"
    result = run_op(restore(shop, location, target))
    assert result["action"] == "created"
    assert plain_dump(pg, shop) == plain_dump(pg, target)
    assert pg.scalar("SELECT count(*) FROM orders", dbname=target) == 2000
    assert pg.scalar("SELECT count(*) FROM items", dbname=target) == 4000
    assert pg.scalar("SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL", dbname=target) >= 3

    drilled = run_op(drill(shop, location, target))
    assert drilled == {"run_key": "20240102T030405Z", "tables": 3, "rows": 6000, "target_database": target, "ok": True}
    # the restore marker names the backup: the restored database's name is all a drill needs
    assert run_op(PostgresDrillVerifyOperator(task_id="d", conn_id="pg_main", database=target)) == drilled

    # idempotent: a second backup reuses the complete one, a second restore changes nothing
    again = run_op(backup(shop, location))
    assert again["finished_at"] == manifest["finished_at"]
    assert run_op(restore(shop, location, target))["action"] == "already restored"


def test_manifest_records_what_a_drill_needs(pg: PostgresCluster, shop: str, file_location: str, run_op: RunOp) -> None:
    run_op(backup(shop, file_location))
    store = BackupStore(file_location)
    manifest = store.manifest(shop, "20240102T030405Z")
    assert manifest is not None
    assert {t["table"]: t["rows"] for t in manifest["tables"]} == {"orders": 2000, "items": 4000, "empty_table": 0}
    for key in ("started_at", "finished_at", "wal_lsn", "server_version", "pg_dump_version", "encoding", "total_bytes"):
        assert manifest[key], key
    raw = (store.backup_path(shop, "20240102T030405Z") / "manifest.json").read_text()
    assert json.loads(raw) == manifest


def test_drill_detects_changed_data(pg: PostgresCluster, shop: str, file_location: str, run_op: RunOp) -> None:
    run_op(backup(shop, file_location))
    target = f"{shop}_r"
    run_op(restore(shop, file_location, target))
    pg.psql("UPDATE orders SET note = 'tampered' WHERE id = 42", dbname=target)
    pg.psql("DELETE FROM items WHERE sku = 'sku-7'", dbname=target)
    with pytest.raises(Exception, match=r"(?s)drill failed.*public\.items: 3999 rows restored, 4000.*public\.orders: same row count"):
        run_op(drill(shop, file_location, target))


@pytest.mark.parametrize(("compression", "suffix"), [(None, ".zst"), ("pg_dump", "")])
def test_directory_format_parallel_jobs(pg: PostgresCluster, shop: str, location: str, run_op: RunOp,
                                        compression: str | None, suffix: str) -> None:
    manifest = run_op(backup(shop, location, format="directory", jobs=2, compression=compression))
    keys = [o["key"] for o in manifest["objects"]]
    assert f"dump.dir/toc.dat{suffix}" in keys and len(keys) >= 4  # toc + one file per table with data
    assert all(key.endswith(".zst") == bool(suffix) for key in keys)  # zstd: every file compressed on upload
    target = f"{shop}_d"
    assert run_op(restore(shop, location, target, jobs=2))["action"] == "created"
    assert plain_dump(pg, shop) == plain_dump(pg, target)
    assert run_op(drill(shop, location, target))["ok"]


def test_restore_newest_when_no_run_key(pg: PostgresCluster, shop: str, file_location: str, run_op: RunOp) -> None:
    import datetime as dt

    run_op(backup(shop, file_location), logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    pg.psql("INSERT INTO empty_table VALUES (1)", dbname=shop)
    run_op(backup(shop, file_location), logical_date=dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc))
    target = f"{shop}_n"
    result = run_op(restore(shop, file_location, target))
    assert result["backup"].endswith("/20240102T000000Z")
    assert pg.scalar("SELECT count(*) FROM empty_table", dbname=target) == 1
    # require_verified: nothing is verified yet, so it refuses with a message that says what to do
    with pytest.raises(Exception, match=r"no verified backup.*VerifyBackupOperator"):
        run_op(restore(shop, file_location, f"{shop}_v", require_verified=True))
    assert not database_exists(pg, f"{shop}_v")
    # a recovery DAG's verify step names the newest backup; its own run key holds none
    later = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(Exception, match="run_key: latest"):
        run_op(VerifyBackupOperator(task_id="v", database=shop, location=file_location), logical_date=later)
    latest = VerifyBackupOperator(task_id="v", database=shop, location=file_location, run_key="latest")
    assert run_op(latest, logical_date=later)["run_key"] == "20240102T000000Z"


def test_dry_runs_change_nothing(pg: PostgresCluster, shop: str, file_location: str, run_op: RunOp) -> None:
    result = run_op(backup(shop, file_location), dry_run=True)
    assert result["dry_run"] and "pg_dump --format=custom" in result["would"]
    store = BackupStore(file_location)
    assert store.list_backups(shop) == []
    run_op(backup(shop, file_location))
    target = f"{shop}_dry"
    would = run_op(restore(shop, file_location, target), dry_run=True)["would"]
    assert "create database" in would and target in would
    assert not database_exists(pg, target)
