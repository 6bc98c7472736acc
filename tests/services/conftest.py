"""Real services for the operator tests: PostgreSQL clusters, an S3 endpoint, Airflow connections.

- ``pg``: one primary for the whole session, with a password-authenticated superuser role
  (``recovery``) so tests can prove the password never leaks; connection ``pg_main``.
- ``s3``: moto's S3 server on a free loopback port, bucket ``backups``; connection ``s3_test``.
- connections are given the way a deployment may give them: ``AIRFLOW_CONN_<ID>`` JSON.
- ``location``: parametrised over ``file://`` and ``s3://`` so storage-sensitive tests run on both.

Why session scope: starting PostgreSQL and moto costs seconds on two cores; tests isolate
themselves with their own databases and storage prefixes instead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.postgres import PostgresCluster, reap_orphans
from tests.support.s3 import s3_server

SECRET = "s3cr3t:pa ss'word\\x"  # awkward on purpose: colon, space, quote, backslash
ROLE = "recovery"
BUCKET = "backups"


def conn_env(conn_id: str, document: dict[str, Any]) -> None:
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(document)


def pg_conn(conn_id: str, cluster: PostgresCluster, *, database: str = "postgres", password: bool = True) -> str:
    conn_env(conn_id, {
        "conn_type": "postgres", "host": "127.0.0.1", "port": cluster.port,
        "login": ROLE if password else cluster.superuser, "password": SECRET if password else None,
        "schema": database,
    })
    return conn_id


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    reap_orphans()
    cluster = PostgresCluster("svc-primary")
    cluster.start()
    try:
        cluster.create_role(ROLE, SECRET, superuser=True)
        pg_conn("pg_main", cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with s3_server(BUCKET) as (endpoint, connection):
        conn_env("s3_test", connection)
        yield endpoint


@pytest.fixture(params=["file", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty backup location on local disk or on the S3 endpoint."""
    if request.param == "file":
        return f"file://{tmp_path}/backups"
    request.getfixturevalue("s3_endpoint")
    return f"s3://s3_test@{BUCKET}/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def file_location(tmp_path: Path) -> str:
    return f"file://{tmp_path}/backups"


def context(*, dry_run: bool = False, logical_date: dt.datetime | None = None, run_id: str = "manual__test") -> dict[str, Any]:
    """The part of an Airflow task context these operators read."""
    return {
        "params": {"dry_run": dry_run},
        "logical_date": logical_date or dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "run_id": run_id,
        "ti": None,
    }


@pytest.fixture
def run_op(caplog: pytest.LogCaptureFixture) -> Callable[..., Any]:
    """Execute an operator as a worker would (``execute(context)``); its return value is its XCom."""
    caplog.set_level(logging.INFO)

    def run(operator: Any, **ctx: Any) -> Any:
        return operator.execute(context(**ctx))

    return run


SEED_SQL = [
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2), placed timestamptz,"
    " tags jsonb, blob bytea, note text)",
    "INSERT INTO orders SELECT g, 'customer ' || (g % 97), (g * 1.37)::numeric(12,2),"
    " timestamptz '2024-01-01' + g * interval '1 minute', jsonb_build_object('n', g, 'even', g % 2 = 0),"
    " decode(md5(g::text), 'hex'), CASE WHEN g % 10 = 0 THEN NULL ELSE repeat('x', g % 50) END"
    " FROM generate_series(1, {rows}) AS g",
    "CREATE TABLE items (order_id bigint REFERENCES orders(id), sku text, qty int, price float8)",
    "INSERT INTO items SELECT g % {rows} + 1, 'sku-' || g, g % 7, g / 3.0 FROM generate_series(1, {rows} * 2) AS g",
    "CREATE INDEX items_sku ON items (sku)",
    "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100",
    "CREATE TABLE empty_table (id int)",
]


def seed(cluster: PostgresCluster, database: str, rows: int = 2000) -> None:
    """A small shop database: several types, NULLs, a foreign key, an index, a view, an empty table."""
    cluster.create_database(database)
    for statement in SEED_SQL:
        cluster.psql(statement.replace("{rows}", str(rows)), dbname=database)


@pytest.fixture
def shop(pg: PostgresCluster) -> str:
    """A freshly seeded database with a unique name."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    seed(pg, name)
    return name


def plain_dump(cluster: PostgresCluster, database: str) -> str:
    """pg_dump's plain SQL of a database, minus the per-run random \\restrict keys of newer pg_dump."""
    import subprocess

    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": database}
    out = subprocess.run([str(cluster.bin("pg_dump")), "--no-password"], env=env, capture_output=True,
                         text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def database_exists(cluster: PostgresCluster, name: str) -> bool:
    return bool(cluster.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", [name]))
