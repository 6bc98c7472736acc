"""Read-only checks shared by sensors (poke) and the deferrable trigger (run in the triggerer).

Why plain functions with JSON arguments: the same check runs in a worker (poke mode) and in the
triggerer (deferred), and a trigger's kwargs are stored in the metadata DB, so they name a
connection id, never a password. Each returns ``{"ok": bool, "message": str, ...facts}``;
a failure to reach the system is "not ok yet", not an exception, so waiting can continue.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

Result = dict[str, Any]


def postgres_health(
    conn_id: str,
    database: str | None = None,
    check_sql: str = "SELECT 1",
    expect_in_recovery: bool | None = None,
    connect_timeout: int = 5,
) -> Result:
    """Connect, run ``check_sql``; healthy when its first value is truthy (and the role matches)."""
    import psycopg

    from recovery_provider.exceptions import RecoveryError
    from recovery_provider.hooks.pg import PgTarget

    target = PgTarget.from_conn_id(conn_id, database)
    try:
        with target.connect(attempts=1, connect_timeout=connect_timeout) as conn:
            row = conn.execute(check_sql.encode()).fetchone()  # the sensor's own check query, not user data
            recovery_row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except (RecoveryError, psycopg.Error) as exc:
        return {"ok": False, "message": f"{target.where}: {exc}"}
    value = row[0] if row else None
    in_recovery = bool(recovery_row[0]) if recovery_row else None
    if not value:
        return {"ok": False, "message": f"{target.where}: check query returned {value!r}", "in_recovery": in_recovery}
    if expect_in_recovery is not None and in_recovery != expect_in_recovery:
        role = "a standby" if in_recovery else "a primary"
        return {"ok": False, "message": f"{target.where} is {role}", "in_recovery": in_recovery}
    return {"ok": True, "message": f"{target.where} healthy", "in_recovery": in_recovery}


def replica_lag(
    conn_id: str,
    primary_conn_id: str | None = None,
    max_lag_seconds: float | None = None,
    max_lag_bytes: int | None = None,
    connect_timeout: int = 5,
) -> Result:
    """How far a standby is behind; ok when within every bound given.

    Seconds: ``now() - pg_last_xact_replay_timestamp()`` but 0 when everything received is
    replayed (an idle primary must not look like lag). Bytes: needs ``primary_conn_id``.
    """
    import psycopg

    from recovery_provider.exceptions import RecoveryError
    from recovery_provider.hooks.pg import PgTarget

    replica = PgTarget.from_conn_id(conn_id)
    try:
        with replica.connect(attempts=1, connect_timeout=connect_timeout) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
                " CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0"
                " ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END"
            ).fetchone()
        assert row is not None
        in_recovery, receive, replay, seconds = row
        if not in_recovery:
            return {"ok": False, "message": f"{replica.where} is not a standby (not in recovery): no lag to measure"}
        lag_bytes = None
        if primary_conn_id:
            primary = PgTarget.from_conn_id(primary_conn_id)
            with primary.connect(attempts=1, connect_timeout=connect_timeout) as pconn:
                brow = pconn.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", [replay]
                ).fetchone()
            lag_bytes = int(brow[0]) if brow and brow[0] is not None else None
    except (RecoveryError, psycopg.Error) as exc:
        return {"ok": False, "message": f"cannot measure lag: {exc}"}
    facts = {"receive_lsn": receive, "replay_lsn": replay, "lag_seconds": seconds, "lag_bytes": lag_bytes}
    if replay is None:
        return {"ok": False, "message": f"{replica.where} has replayed nothing yet", **facts}
    if max_lag_seconds is not None and (seconds is None or seconds > max_lag_seconds):
        return {"ok": False, "message": f"replica lag {seconds}s exceeds {max_lag_seconds}s", **facts}
    if max_lag_bytes is not None and (lag_bytes is None or lag_bytes > max_lag_bytes):
        return {"ok": False, "message": f"replica lag {lag_bytes} bytes exceeds {max_lag_bytes} bytes", **facts}
    return {"ok": True, "message": f"replica lag {seconds}s / {lag_bytes} bytes within bounds", **facts}


def backup_freshness(location: str, database: str | None, max_age_seconds: float, verified_only: bool = True) -> Result:
    """The RPO check: the newest (verified) backup finished at most ``max_age_seconds`` ago.

    Without ``database``: every database with backups at the location must meet it.
    """
    from recovery_provider.exceptions import RecoveryError
    from recovery_provider.hooks.store import BackupStore

    kind = "verified" if verified_only else "complete"
    try:
        store = BackupStore(location)
        names = [database] if database else store.databases()
        if not names:
            return {"ok": False, "message": f"no backups at all at {store.location}"}
        newest = {name: store.newest(name, verified_only=verified_only) for name in names}
    except (RecoveryError, OSError) as exc:
        return {"ok": False, "message": f"cannot list backups at {location}: {exc}"}
    now = dt.datetime.now(dt.timezone.utc)
    facts: dict[str, Any] = {}
    stale = []
    for name, info in newest.items():
        if info is None or info.finished_at is None:
            stale.append(f"no {kind} backup of '{name}' at {store.location}")
            continue
        age = (now - info.finished_at).total_seconds()
        facts[name] = {"run_key": info.run_key, "finished_at": info.finished_at.isoformat(), "age_seconds": round(age, 1)}
        if age > max_age_seconds:
            stale.append(f"newest {kind} backup of '{name}' ({info.run_key}) is {age:.0f}s old, RPO is {max_age_seconds:.0f}s")
    flat = facts[database] if database and database in facts else {"databases": facts}
    if stale:
        return {"ok": False, "message": "; ".join(stale), **flat}
    return {"ok": True, "message": f"newest {kind} backup(s) within the RPO of {max_age_seconds:.0f}s: {sorted(facts)}", **flat}


def http_health(
    url: str | None = None,
    method: str = "GET",
    expected_status: list[int] | None = None,
    contains: str | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    http_conn_id: str | None = None,
    endpoint: str | None = None,
) -> Result:
    """One HTTP request; healthy on an expected status and (optionally) a body containing a text.

    The address is ``url``, or an Airflow HTTP connection (``http_conn_id``: host, schema, port,
    login/password as basic auth) plus ``endpoint``.
    """
    import httpx

    expected = expected_status or [200]
    auth = None
    if url is None:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(str(http_conn_id))
        host = conn.host or "localhost"
        base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
        if conn.port:
            base = f"{base}:{conn.port}"
        url = base.rstrip("/") + "/" + (endpoint or "").lstrip("/")
        if conn.login:
            auth = (conn.login, conn.password or "")
    try:
        response = httpx.request(method, url, timeout=timeout, headers=headers, follow_redirects=True, auth=auth)
    except httpx.HTTPError as exc:
        return {"ok": False, "message": f"{method} {url}: {type(exc).__name__}: {exc}"}
    facts = {"status": response.status_code, "elapsed_ms": round(response.elapsed.total_seconds() * 1000, 1)}
    if response.status_code not in expected:
        return {"ok": False, "message": f"{method} {url} returned {response.status_code}, expected {expected}", **facts}
    if contains is not None and contains not in response.text:
        return {"ok": False, "message": f"{method} {url} body does not contain {contains!r}", **facts}
    return {"ok": True, "message": f"{method} {url} returned {response.status_code}", **facts}


def pgbackrest_archive_freshness(
    stanza: str,
    repository: str,
    max_age_seconds: float,
    verify_tls: bool | None = None,
    pgbackrest_bin: str | None = None,
    run_as: str | None = None,
) -> Result:
    """The RPO under continuous archiving: the newest WAL segment in the repository is recent enough.

    Reads the repository itself (``info``, then ``repo-ls`` for the segment's stored time), so it proves
    that WAL really arrived, not only that the server tried to push it.
    """
    from recovery_provider.exceptions import PgBackRestError
    from recovery_provider.hooks.pgbackrest import PgBackRestHook, Repository

    try:
        hook = PgBackRestHook(stanza=stanza, repo=Repository.parse(repository, verify_tls=verify_tls),
                              run_as=run_as, binary=pgbackrest_bin)
        newest = hook.newest_archived()
    except PgBackRestError as exc:
        return {"ok": False, "message": f"cannot read the WAL archive of stanza '{stanza}': {exc}"}
    if newest is None:
        return {"ok": False, "message": f"no WAL archived yet for stanza '{stanza}' at {repository}"}
    if newest["archived_at_epoch"] is None:
        return {"ok": False, "message": f"newest WAL {newest['segment']} listed but its time is unknown", **newest}
    archived_at = dt.datetime.fromtimestamp(newest["archived_at_epoch"], dt.timezone.utc)
    age = (dt.datetime.now(dt.timezone.utc) - archived_at).total_seconds()
    facts = {**newest, "archived_at": archived_at.isoformat(), "age_seconds": round(age, 1)}
    if age > max_age_seconds:
        return {"ok": False, "message": f"newest archived WAL {newest['segment']} of stanza '{stanza}' is {age:.0f}s old, "
                f"RPO is {max_age_seconds:.0f}s: check archive_command and pg_stat_archiver", **facts}
    return {"ok": True, "message": f"newest archived WAL {newest['segment']} is {age:.0f}s old (RPO {max_age_seconds:.0f}s)",
            **facts}
