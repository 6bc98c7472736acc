"""Sensors (poke and deferred), replica lag and promotion on a real standby, retention, HTTP checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import importlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.services.conftest import conn_env, database_exists, pg_conn, seed
from tests.services.test_roundtrip import backup, restore
from tests.support.postgres import PostgresCluster, free_port, start_replica

from recovery_provider.hooks.store import BackupStore
from recovery_provider.operators.backup import RetentionOperator, VerifyBackupOperator
from recovery_provider.operators.http import HttpHealthCheckOperator
from recovery_provider.operators.postgres import PostgresDropDatabaseOperator, PostgresPromoteOperator
from recovery_provider.sensors.backup import BackupFreshnessSensor
from recovery_provider.sensors.postgres import PostgresHealthSensor, ReplicaLagSensor
from recovery_provider.triggers.probe import ProbeTrigger

pytestmark = pytest.mark.services
RunOp = Callable[..., Any]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    """Its own primary and streaming standby: promotion changes them for good."""
    from tests.services.conftest import ROLE, SECRET

    primary = PostgresCluster("svc-ha").start()
    replica = None
    try:
        primary.create_role(ROLE, SECRET, superuser=True)
        primary.psql("CREATE TABLE ticks (id bigserial, at timestamptz DEFAULT now(), pad text)")
        replica = start_replica(primary, "svc-ha-standby")
        pg_conn("ha_primary", primary)
        pg_conn("ha_replica", replica)
        yield primary, replica
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()


def test_health_sensor_poke_and_role(pg: PostgresCluster, run_op: RunOp) -> None:
    result = run_op(PostgresHealthSensor(task_id="h", conn_id="pg_main", check_sql="SELECT count(*) > 0 FROM pg_roles"))
    assert result["ok"] and result["in_recovery"] is False
    from airflow.sdk.exceptions import AirflowSensorTimeout

    with pytest.raises(AirflowSensorTimeout, match=r"still not ok after 1s.*is a primary"):
        run_op(PostgresHealthSensor(task_id="h", conn_id="pg_main", expect_in_recovery=True, timeout=1, poke_interval=0.3))


def test_deferrable_sensor_defers_and_trigger_decides(pg: PostgresCluster, run_op: RunOp) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

    conn_env("pg_down", {"conn_type": "postgres", "host": "127.0.0.1", "port": free_port(), "login": "x"})
    sensor = PostgresHealthSensor(task_id="h", conn_id="pg_down", deferrable=True, timeout=1, poke_interval=0.3)
    with pytest.raises(TaskDeferred) as deferred:
        run_op(sensor)
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)  # as the triggerer does
    assert "password" not in str(kwargs).lower()

    async def first_event(t: ProbeTrigger) -> Any:
        async for event in t.run():
            return event.payload

    event = asyncio.run(first_event(rebuilt))
    assert event["status"] == "timeout" and "cannot connect" in event["result"]["message"]
    with pytest.raises(AirflowSensorTimeout, match="still not ok"):
        sensor.execute_complete({}, event)
    healthy = ProbeTrigger("recovery_provider.hooks.probes:postgres_health", {"conn_id": "pg_main"}, 0.2, 5)
    event = asyncio.run(first_event(healthy))
    assert event["status"] == "success"
    assert sensor.execute_complete({}, event)["ok"]
    bad = ProbeTrigger("os:system", {"command": "true"}, 0.2, 5)  # only this provider's probes may run
    assert asyncio.run(first_event(bad))["status"] == "error"


def test_replica_lag_then_promotion(pair: tuple[PostgresCluster, PostgresCluster], run_op: RunOp) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    primary, replica = pair
    primary.psql("INSERT INTO ticks (pad) SELECT repeat('x', 100) FROM generate_series(1, 1000)")
    replica.wait_for_replay()
    ok = run_op(ReplicaLagSensor(task_id="lag", conn_id="ha_replica", primary_conn_id="ha_primary",
                                 max_lag="30s", max_lag_bytes=1_000_000, timeout=10, poke_interval=0.5))
    assert ok["ok"] and ok["lag_bytes"] <= 1_000_000

    replica.psql("SELECT pg_wal_replay_pause()")
    primary.psql("INSERT INTO ticks (pad) SELECT repeat(md5(g::text), 20) FROM generate_series(1, 20000) g")
    with pytest.raises(AirflowSensorTimeout, match="bytes exceeds 1000000"):
        run_op(ReplicaLagSensor(task_id="lag", conn_id="ha_replica", primary_conn_id="ha_primary",
                                max_lag_bytes=1_000_000, timeout=1, poke_interval=0.3))
    replica.psql("SELECT pg_wal_replay_resume()")
    assert run_op(ReplicaLagSensor(task_id="lag", conn_id="ha_replica", primary_conn_id="ha_primary",
                                   max_lag_bytes=1_000_000, timeout=30, poke_interval=0.3))["ok"]

    dry = run_op(PostgresPromoteOperator(task_id="p", conn_id="ha_replica"), dry_run=True)
    assert "pg_promote(True, 60)" in dry["would"] and replica.is_in_recovery()
    promoted = run_op(PostgresPromoteOperator(task_id="p", conn_id="ha_replica", wait_seconds=30))
    assert promoted["promoted"] and not replica.is_in_recovery()
    replica.psql("INSERT INTO ticks (pad) VALUES ('written on the new primary')")
    assert run_op(PostgresPromoteOperator(task_id="p", conn_id="ha_replica")) == {"promoted": False, "already_primary": True}
    assert run_op(PostgresHealthSensor(task_id="h", conn_id="ha_replica", expect_in_recovery=False, timeout=5))["ok"]
    with pytest.raises(AirflowSensorTimeout, match="not a standby"):
        run_op(ReplicaLagSensor(task_id="lag", conn_id="ha_replica", max_lag="30s", timeout=1, poke_interval=0.3))


def test_freshness_sensor_enforces_rpo(pg: PostgresCluster, shop: str, location: str, run_op: RunOp) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    now = dt.datetime.now(dt.timezone.utc)
    run_op(backup(shop, location, drill_stats=False), logical_date=now)
    with pytest.raises(AirflowSensorTimeout, match="no verified backup"):
        run_op(BackupFreshnessSensor(task_id="f", database=shop, location=location, max_age="1h", timeout=1, poke_interval=0.3))
    assert run_op(BackupFreshnessSensor(task_id="f", database=shop, location=location, max_age="1h",
                                        verified_only=False, timeout=1))["ok"]
    run_op(VerifyBackupOperator(task_id="v", database=shop, location=location), logical_date=now)
    fresh = run_op(BackupFreshnessSensor(task_id="f", database=shop, location=location, max_age="1h", timeout=1))
    assert fresh["ok"] and fresh["age_seconds"] < 60
    with pytest.raises(AirflowSensorTimeout, match="RPO is 0s"):
        run_op(BackupFreshnessSensor(task_id="f", database=shop, location=location, max_age="1ms", timeout=1, poke_interval=0.3))


def test_freshness_and_retention_over_every_database(pg: PostgresCluster, location: str, run_op: RunOp) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    names = [f"all_{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        pg.create_database(name)
    for day in (1, 2, 3):
        run_op(backup(names[0], location, drill_stats=False), logical_date=dt.datetime(2024, 1, day, tzinfo=dt.timezone.utc))
    store = BackupStore(location)
    store.write_json(store.backup_path(names[1], "crashed") / "dump.pgcustom", {"partial": True})  # no manifest
    fresh = BackupFreshnessSensor(task_id="f", location=location, max_age="1h", verified_only=False, timeout=1, poke_interval=0.3)
    with pytest.raises(AirflowSensorTimeout, match=f"no complete backup of '{names[1]}'"):
        run_op(fresh)  # one database without a complete backup is enough to miss the RPO
    for day in (1, 2, 3):
        run_op(backup(names[1], location, drill_stats=False), logical_date=dt.datetime(2024, 1, day, tzinfo=dt.timezone.utc))
    assert run_op(fresh)["ok"]
    by_age = run_op(RetentionOperator(task_id="r", location=location, keep_days=30, confirm=True))
    assert by_age["deleted"] == []  # every backup finished just now
    pruned = run_op(RetentionOperator(task_id="r", location=location, keep_last=1, confirm=True))
    assert sorted(pruned["deleted"]) == sorted(f"{n}/2024010{d}T000000Z" for n in names for d in (1, 2))
    assert [b.run_key for b in store.list_backups(names[1])] == ["crashed", "20240103T000000Z"]


def test_retention_by_count_and_age(pg: PostgresCluster, location: str, run_op: RunOp) -> None:
    db = f"ret_{uuid.uuid4().hex[:6]}"
    pg.create_database(db)
    days = [dt.datetime(2024, 1, d, tzinfo=dt.timezone.utc) for d in (1, 2, 3, 4)]
    for day in days:
        run_op(backup(db, location, drill_stats=False), logical_date=day)
    run_op(VerifyBackupOperator(task_id="v", database=db, location=location), logical_date=days[1])  # only day 2 verified
    store = BackupStore(location)
    incomplete = store.backup_path(db, "crashed")
    if location.startswith("file://"):
        os.makedirs(incomplete.path)
        (incomplete / "dump.pgcustom").write_bytes(b"partial")
        os.utime(incomplete.path + "/dump.pgcustom", (0, 0))

    keys = ["20240101T000000Z", "20240102T000000Z", "20240103T000000Z", "20240104T000000Z"]
    unconfirmed = run_op(RetentionOperator(task_id="r", database=db, location=location, keep_last=1,
                                           prune_incomplete_after="1h"))
    # day 4 is the newest (kept by count and as newest complete), day 2 the newest verified: both kept
    expected = [keys[0], keys[2]] + (["crashed"] if location.startswith("file://") else [])
    assert sorted(unconfirmed["would_delete"]) == sorted(expected) and unconfirmed["deleted"] == []
    assert len(store.list_backups(db)) == 4 + (1 if location.startswith("file://") else 0)
    dry = run_op(RetentionOperator(task_id="r", database=db, location=location, keep_last=1, confirm=True), dry_run=True)
    assert dry["dry_run"] and len(store.list_backups(db)) >= 4

    done = run_op(RetentionOperator(task_id="r", database=db, location=location, keep_last=1, confirm=True,
                                    prune_incomplete_after="1h"))
    assert sorted(done["deleted"]) == sorted(expected)
    assert [b.run_key for b in store.list_backups(db)] == [keys[1], keys[3]]
    # by age: everything is older than 1 day, yet the newest verified and newest complete stay
    aged = run_op(RetentionOperator(task_id="r", database=db, location=location, max_age="1d", confirm=True))
    assert aged["deleted"] == [] and len(store.list_backups(db)) == 2


def test_drop_database_only_drops_restores(pg: PostgresCluster, shop: str, file_location: str, run_op: RunOp) -> None:
    from recovery_provider.exceptions import RecoveryError

    with pytest.raises(RecoveryError, match="refusing to drop"):
        run_op(PostgresDropDatabaseOperator(task_id="d", conn_id="pg_main", database=shop))
    assert database_exists(pg, shop)
    run_op(backup(shop, file_location))
    run_op(restore(shop, file_location, f"{shop}_undo"))
    would = run_op(PostgresDropDatabaseOperator(task_id="d", conn_id="pg_main", database=f"{shop}_undo"), dry_run=True)
    assert "DROP DATABASE" in would["would"] and database_exists(pg, f"{shop}_undo")
    assert run_op(PostgresDropDatabaseOperator(task_id="d", conn_id="pg_main", database=f"{shop}_undo"))["dropped"]
    assert not database_exists(pg, f"{shop}_undo")
    assert run_op(PostgresDropDatabaseOperator(task_id="d", conn_id="pg_main", database=f"{shop}_undo")) == {"dropped": []}
    # the DAG pack's cleanup form: a list plus a prefix; one non-restore among them stops everything
    run_op(restore(shop, file_location, f"drill_{shop}"))
    pg.create_database(f"drill_{shop}_x")
    many = PostgresDropDatabaseOperator(task_id="d", conn_id="pg_main", databases=[shop, f"{shop}_x"], prefix="drill_")
    with pytest.raises(RecoveryError, match="refusing to drop"):
        run_op(many)
    assert database_exists(pg, f"drill_{shop}")
    many.databases = [shop, "absent"]
    assert run_op(many) == {"dropped": [f"drill_{shop}"]}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = (200, b"status: ok") if self.path == "/health" else (503, b"starting")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_http_health_check(run_op: RunOp) -> None:
    from airflow.sdk.exceptions import AirflowSensorTimeout

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert run_op(HttpHealthCheckOperator(task_id="h", url=f"{base}/health", contains="ok"))["status"] == 200
        with pytest.raises(AirflowSensorTimeout, match="returned 503, expected \\[200\\]"):
            run_op(HttpHealthCheckOperator(task_id="h", url=f"{base}/down", timeout=1, poke_interval=0.3))
        conn_env("svc_http", {"conn_type": "http", "host": "127.0.0.1", "port": server.server_address[1]})
        assert run_op(HttpHealthCheckOperator(task_id="h", http_conn_id="svc_http", endpoint="/health"))["status"] == 200
        with pytest.raises(AirflowSensorTimeout, match="does not contain 'ready'"):
            run_op(HttpHealthCheckOperator(task_id="h", url=f"{base}/health", contains="ready", timeout=1, poke_interval=0.3))
    finally:
        server.shutdown()


def test_every_alias_resolves_to_a_class_with_template_fields() -> None:
    from recovery_provider.spec.registry import ALIASES

    for alias, path in ALIASES.items():
        if not path.startswith("recovery_provider.") or alias == "recovery.report":
            continue
        module, _, name = path.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert cls.supports_dry_run is True, alias
        assert cls.template_fields, alias


def test_seed_helper_is_reusable(pg: PostgresCluster) -> None:
    name = f"seed_{uuid.uuid4().hex[:6]}"
    seed(pg, name, rows=10)
    assert pg.scalar("SELECT count(*) FROM orders", dbname=name) == 10
