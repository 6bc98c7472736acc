"""A PostgreSQL cluster archiving into a pgBackRest repository, and timed writes for PITR drills.

The cluster's ``archive_command`` calls real pgBackRest with a configuration written by the
provider's own hook (``PgBackRestHook.write_config``); S3 keys reach the server through its
environment at start-up, never through a file or its configuration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

from tests.support.postgres import PostgresCluster


def owned_dir(prefix: str, user: str | None) -> Path:
    """A short folder under /tmp owned by ``user`` (unix socket paths must stay under 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if user:
        info = pwd.getpwnam(user)
        os.chown(path, info.pw_uid, info.pw_gid)
    return path


@contextlib.contextmanager
def archiving_cluster(repository: str, *, secrets: Mapping[str, str] | None = None) -> Iterator[tuple[PostgresCluster, str, Path]]:
    """Start a cluster whose archive_command feeds stanza ``<random>`` in ``repository``.

    Yields (cluster, stanza, config folder). The config is written right after start-up (it needs
    the data directory's path); a segment that completes before that is simply retried by the server.
    """
    from recovery_provider.hooks.pgbackrest import PgBackRestHook, PgCluster, Repository

    stanza = f"st_{uuid.uuid4().hex[:8]}"
    from tests.support.postgres import _os_user

    user = _os_user()
    config_dir = owned_dir("pgbr-conf-", user)
    binary = shutil.which("pgbackrest") or "pgbackrest"
    command = f"{binary} --config-path={config_dir} --stanza={stanza} archive-push %p"
    cluster = PostgresCluster("pgbr", settings={"archive_mode": "on", "archive_command": command})
    try:
        with mock.patch.dict(os.environ, dict(secrets or {})):  # the postmaster inherits them
            cluster.start()
        hook = PgBackRestHook(stanza=stanza, repo=Repository.parse(repository),
                              pg=PgCluster(data_dir=str(cluster.data_dir), port=cluster.port,
                                           socket_dir=str(cluster.socket_dir), user=cluster.superuser))
        hook.write_config(config_dir)
        yield cluster, stanza, config_dir
    finally:
        cluster.stop()
        shutil.rmtree(config_dir, ignore_errors=True)


def timed_writes(cluster: PostgresCluster, database: str, label: str, count: int, gap: float = 0.2) -> list[dt.datetime]:
    """Insert ``count`` rows, one transaction each, ``gap`` seconds apart; return their commit times."""
    cluster.psql("CREATE TABLE IF NOT EXISTS events (id serial PRIMARY KEY, label text, at timestamptz)", dbname=database)
    stamps = []
    for _ in range(count):
        rows = cluster.psql("INSERT INTO events (label, at) VALUES (%s, clock_timestamp()) RETURNING at", [label],
                            dbname=database)
        stamps.append(rows[0][0])
        time.sleep(gap)
    return stamps


def labels(port: int, database: str, user: str = "postgres") -> dict[str, int]:
    """Rows per label in a restored cluster's ``events`` table."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=database, autocommit=True) as conn:
        rows: list[Any] = conn.execute("SELECT label, count(*) FROM events GROUP BY label").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
