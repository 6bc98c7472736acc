"""Backup formats: zstd streams, backups written before zstd, and what a damaged stream does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from tests.services.conftest import database_exists, plain_dump
from tests.services.test_hostile_and_secrets import HOSTILE_DB, _seed_hostile
from tests.services.test_roundtrip import backup, drill, restore
from tests.support.postgres import PostgresCluster

from recovery_provider.hooks.pg import PgToolError
from recovery_provider.hooks.stats import CHECKSUM_METHOD, HASH_METHOD
from recovery_provider.hooks.store import BackupCorrupt, BackupStore
from recovery_provider.operators.backup import VerifyBackupOperator

pytestmark = pytest.mark.services
RunOp = Callable[..., Any]
RUN_KEY = "20240102T030405Z"
ROOT = Path(__file__).resolve().parents[2]
BEFORE_ZSTD = "0cc67b2"  # the last commit whose provider backed up with pg_dump's own gzip

OLD_BACKUP = textwrap.dedent("""
    import datetime as dt, json, sys
    import recovery_provider
    assert recovery_provider.__file__.startswith(sys.argv[3]), recovery_provider.__file__
    from recovery_provider.operators.postgres import PostgresBackupOperator
    op = PostgresBackupOperator(task_id="b", conn_id="pg_main", database=sys.argv[1], location=sys.argv[2])
    manifest = op.execute({"params": {}, "logical_date": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
                           "run_id": "r", "ti": None})
    print(json.dumps(manifest, default=str))
""")


@pytest.fixture(scope="module")
def old_provider(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provider as it was before zstd, from this repository's history."""
    where = tmp_path_factory.mktemp("old-provider")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_ZSTD, "provider/recovery_provider"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"needs the git history (commit {BEFORE_ZSTD}) to run the provider as it was: "
                    + archive.stderr.decode()[-300:])
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where / "provider"


def old_backup(old_provider: Path, database: str, location: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(old_provider)}
    done = subprocess.run([sys.executable, "-c", OLD_BACKUP, database, location, str(old_provider)],
                          env=env, capture_output=True, text=True, cwd=old_provider)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    manifest: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return manifest


@pytest.mark.parametrize("hostile", [False, True], ids=["shop", "hostile-names"])
def test_backups_from_before_zstd_still_verify_restore_and_drill(
    pg: PostgresCluster, shop: str, location: str, run_op: RunOp, old_provider: Path, hostile: bool,
) -> None:
    database = shop
    if hostile:
        database = HOSTILE_DB
        if not database_exists(pg, HOSTILE_DB):
            _seed_hostile(pg)
    manifest = old_backup(old_provider, database, location)
    assert "compression" not in manifest and manifest["objects"][0]["key"] == "dump.pgcustom"
    assert manifest["checksum_method"] == CHECKSUM_METHOD  # MD5 of row text: the drill must use it again

    assert run_op(VerifyBackupOperator(task_id="v", database=database, location=location))["ok"]
    target = f"old{uuid.uuid4().hex[:6]} {database}"[:63]  # unique within the 63 bytes PostgreSQL keeps
    assert run_op(restore(database, location, target))["action"] == "created"
    assert plain_dump(pg, database) == plain_dump(pg, target)
    drilled = run_op(drill(database, location, target))
    assert drilled["ok"] and drilled["tables"] == (2 if hostile else 3)

    # the new provider's drill notices a changed row in an old backup's restore too
    table = "canary" if hostile else "orders"
    pg.psql("UPDATE canary SET id = 3 WHERE id = 1" if hostile else "UPDATE orders SET note = 'changed' WHERE id = 1",
            dbname=target)
    with pytest.raises(Exception, match=rf"(?s)drill failed.*public\.{table}: same row count"):
        run_op(drill(database, location, target))


def test_new_backups_record_zstd_and_the_hash_method(pg: PostgresCluster, shop: str, file_location: str,
                                                     run_op: RunOp) -> None:
    run_op(backup(shop, file_location))
    manifest = BackupStore(file_location).manifest(shop, RUN_KEY)
    assert manifest is not None
    assert manifest["compression"] == "zstd:1" and manifest["checksum_method"] == HASH_METHOD
    (obj,) = manifest["objects"]
    assert obj["key"] == "dump.pgcustom.zst"
    import zstandard

    stored = (BackupStore(file_location).backup_path(shop, RUN_KEY) / obj["key"]).read_bytes()
    archive = zstandard.ZstdDecompressor().decompressobj().decompress(stored)
    assert archive.startswith(b"PGDMP") and len(archive) == obj["uncompressed_size"]  # pg_dump's custom format


def test_zstd_stream_that_does_not_decode_is_refused_before_creating(pg: PostgresCluster, shop: str,
                                                                     file_location: str, run_op: RunOp) -> None:
    """Stored bytes match the manifest, but the stream inside is cut: only decoding can tell."""
    import hashlib

    run_op(backup(shop, file_location, compression="zstd:3"))
    store = BackupStore(file_location)
    folder = store.backup_path(shop, RUN_KEY)
    obj = folder / "dump.pgcustom.zst"
    cut = obj.read_bytes()[: obj.stat().st_size // 2]
    obj.write_bytes(cut)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["objects"][0].update(size=len(cut), sha256=hashlib.sha256(cut).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(BackupCorrupt, match=r"dump\.pgcustom\.zst: the zstd stream ends before its last frame"):
        run_op(VerifyBackupOperator(task_id="v", database=shop, location=file_location))
    with pytest.raises(BackupCorrupt, match=r"nothing was created.*truncated"):
        run_op(restore(shop, file_location, f"{shop}_cut"))
    assert not database_exists(pg, f"{shop}_cut")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"compression": "zstd:99"}, r"compression 'zstd:99' is not supported: use zstd, zstd:<level 1-19>"),
    ({"compression": "gzip"}, "compression 'gzip' is not supported"),
    ({"compression": "zstd", "compress": "6"}, r"compress '6' is pg_dump's own compression.*compression: pg_dump"),
])
def test_bad_compression_fails_at_once_saying_what_to_use(shop: str, file_location: str, run_op: RunOp,
                                                          kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AirflowFailException, match=rf"postgres.backup task 'backup': {message}"):
        run_op(backup(shop, file_location, **kwargs))
    assert BackupStore(file_location).list_backups(shop) == []


def test_legacy_compress_argument_keeps_pg_dumps_gzip(pg: PostgresCluster, shop: str, file_location: str,
                                                      run_op: RunOp) -> None:
    manifest = run_op(backup(shop, file_location, compress="9"))
    assert manifest["compression"] == "pg_dump" and manifest["compress"] == "9"
    assert manifest["objects"][0]["key"] == "dump.pgcustom"
    run_op(restore(shop, file_location, f"{shop}_gz"))
    assert plain_dump(pg, shop) == plain_dump(pg, f"{shop}_gz")


def test_drill_statistics_fall_back_to_text_for_types_without_hash(pg: PostgresCluster, shop: str,
                                                                   file_location: str, run_op: RunOp) -> None:
    """json and point have no hash function: their tables are hashed by text, and still compared."""
    pg.psql("CREATE TABLE docs (id int, body json, at point)", dbname=shop)
    pg.psql("INSERT INTO docs SELECT g, json_build_object('g', g), point(g, g) FROM generate_series(1, 300) g",
            dbname=shop)
    run_op(backup(shop, file_location))
    target = f"{shop}_j"
    run_op(restore(shop, file_location, target))
    assert run_op(drill(shop, file_location, target))["tables"] == 4
    pg.psql("UPDATE docs SET body = '{\"g\": 0}' WHERE id = 7", dbname=target)
    with pytest.raises(Exception, match=r"(?s)drill failed.*public\.docs: same row count \(300\) but different content"):
        run_op(drill(shop, file_location, target))


def test_failed_dump_stops_the_concurrent_statistics(pg: PostgresCluster, shop: str, file_location: str,
                                                     run_op: RunOp) -> None:
    pg.psql("CREATE TABLE wide AS SELECT g, md5(g::text) AS a FROM generate_series(1, 400000) g", dbname=shop)
    with pytest.raises(PgToolError, match="no matching tables were found"):
        run_op(backup(shop, file_location, pg_dump_args=["--table=no_such_table"]))
    busy = pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active'"
                     " AND query LIKE %s", [shop, "%hash_record_extended%"])
    assert busy == 0
    assert BackupStore(file_location).manifest(shop, RUN_KEY) is None


def test_directory_backup_restores_with_its_own_jobs_by_default(pg: PostgresCluster, shop: str, file_location: str,
                                                                run_op: RunOp, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[list[str]] = []
    real_popen = subprocess.Popen

    class SpyPopen(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *a: Any, **kw: Any) -> None:
            launched.append([str(x) for x in args])
            super().__init__(args, *a, **kw)

    run_op(backup(shop, file_location, format="directory", jobs=3))
    monkeypatch.setattr(subprocess, "Popen", SpyPopen)
    run_op(restore(shop, file_location, f"{shop}_j3"))
    (pg_restore,) = [argv for argv in launched if argv[0].endswith("pg_restore")]
    assert "--jobs=3" in pg_restore
    assert plain_dump(pg, shop) == plain_dump(pg, f"{shop}_j3")
