"""PostgreSQL recovery operators: backup, drill verification, promotion, drop (restore: restore.py).

Thin on purpose: the work is in ``recovery_provider.hooks`` (dump, restore, stats, store); these
classes turn rendered template fields into requests, honour dry runs, and return secret-free
summaries for XCom. ``PostgresRestoreOperator`` lives in :mod:`recovery_provider.operators.restore`
and is still importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.store import S3_BLOCK, default_location
from recovery_provider.operators.base import PostgresOperatorBase, run_key_from_context
from recovery_provider.operators.restore import PostgresRestoreOperator  # moved there; this path still works


class PostgresBackupOperator(PostgresOperatorBase):
    """Back up one database with pg_dump, streamed to ``location``, manifest written last.

    Keys: ``<location>/<database>/<run_key>/`` where ``run_key`` defaults to the run's logical date
    (``20240101T020000Z``) or, for runs without one, the run id. A complete backup already at that
    key is reused, never overwritten; leftovers of an interrupted one (no manifest) are replaced.
    Returns the manifest without the per-table list (XCom stays small). Alias ``postgres.backup``.

    ``compression``: ``zstd`` (level 1) or ``zstd:<level>`` runs pg_dump with ``--compress=0`` and
    compresses in the worker (custom format: the stream; directory format: each file on upload);
    ``pg_dump`` keeps pg_dump's own gzip (level from ``compress``). Default: zstd, unless
    ``compress`` is given (what it meant before zstd).
    """

    template_fields: Sequence[str] = (
        "conn_id", "database", "location", "run_key", "format", "jobs", "compress", "compression", "drill_stats",
        "pg_dump_args",
    )

    def __init__(
        self,
        *,
        conn_id: str,
        database: str | None = None,
        location: str | None = None,
        run_key: str | None = None,
        format: str = "custom",
        jobs: int = 1,
        compress: str | int | None = None,
        compression: str | None = None,
        drill_stats: bool = True,
        pg_dump_args: Sequence[str] = (),
        upload_block_size: int = S3_BLOCK,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.database = database
        self.location = location or default_location()
        self.run_key = run_key
        self.format = format
        self.jobs = jobs
        self.compress = compress
        self.compression = compression
        self.drill_stats = drill_stats
        self.pg_dump_args = list(pg_dump_args)
        self.upload_block_size = upload_block_size

    def request(self, context: Any) -> Any:
        """The backup request; bad arguments fail the task at once (no retry can fix them)."""
        from airflow.sdk.exceptions import AirflowFailException

        from recovery_provider.hooks.dump import BackupRequest
        from recovery_provider.hooks.store import BackupStore

        compress = None if self.compress in (None, "") else str(self.compress)
        compression = str(self.compression or "").strip()
        if not compression:  # before zstd, compress meant pg_dump's gzip: keep that meaning
            compression = "zstd" if compress is None else "pg_dump"
        req = BackupRequest(
            target=self.target(self.database or None),
            store=BackupStore(self.location),
            run_key=self.run_key or run_key_from_context(context),
            format=self.format,
            jobs=int(self.jobs),
            compress=compress,
            compression=compression,
            drill_stats=bool(self.drill_stats),
            upload_block_size=self.upload_block_size,
            pg_bin_dir=self.pg_bin_dir,
            connect_attempts=self.connect_attempts,
            connect_retry_delay=self.retry_delay_seconds,
            extra_args=[str(a) for a in self.pg_dump_args],
        )
        try:
            req.validate()
        except RecoveryError as exc:
            raise AirflowFailException(f"postgres.backup task '{self.task_id}': {exc}") from None
        return req

    def describe_dry_run(self, context: Any) -> str:
        req = self.request(context)
        path = req.store.backup_path(req.database, req.run_key)
        found = req.store.manifest(req.database, req.run_key)
        if found is not None:
            return f"reuse the complete backup already at {path} (finished {found['finished_at']})"
        return (f"pg_dump --format={req.format} {req.target.where} into {path} ({req.compression_label} "
                "compression) and write its manifest last")

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.dump import run_backup

        manifest = run_backup(self.request(context), self.log)
        return {k: v for k, v in manifest.items() if k != "tables"} | {"tables": len(manifest.get("tables", []))}


class PostgresDrillVerifyOperator(PostgresOperatorBase):
    """Prove a restore equals its source at backup time: row counts and content checksums per table.

    Checks ``target_database`` (or, without it, ``database``) on ``conn_id``. Which backup to
    compare with comes from the restore marker that PostgresRestoreOperator leaves on the database
    (its location, source database and run key), so the step needs no more than the restored
    database's name; ``location``/``source_database``/``run_key`` override the marker (e.g. for a
    restore made by hand). Fails listing every table that differs. Alias ``postgres.drill_verify``.
    """

    template_fields: Sequence[str] = ("conn_id", "database", "target_database", "location", "source_database", "run_key")

    def __init__(
        self,
        *,
        conn_id: str,
        database: str | None = None,
        target_database: str | None = None,
        location: str | None = None,
        source_database: str | None = None,
        run_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        if not (database or target_database):
            raise ValueError("give target_database (the restored database to check) or database")
        self.database = database
        self.target_database = target_database
        self.location = location
        self.source_database = source_database
        self.run_key = run_key

    def checked(self) -> str:
        return str(self.target_database or self.database)

    def _expected(self) -> tuple[str, dict[str, Any]]:
        from recovery_provider.hooks.restore import parse_marker, target_state
        from recovery_provider.hooks.store import BackupStore

        with self.target().connect(attempts=self.connect_attempts, retry_delay=self.retry_delay_seconds) as admin:
            exists, comment = target_state(admin, self.checked())
        if not exists:
            raise RecoveryError(f"database '{self.checked()}' does not exist: restore it first (postgres.restore)")
        parsed = parse_marker(comment)
        identity = parsed[0] if parsed else {}
        if parsed and parsed[1] != "complete":
            raise RecoveryError(f"the restore of '{self.checked()}' did not finish: re-run the restore step, then the drill")
        location = self.location or identity.get("location")
        source = self.source_database or identity.get("database")
        run_key = self.run_key or identity.get("run_key")
        if not (location and source and run_key):
            raise RecoveryError(
                f"database '{self.checked()}' carries no restore marker of this provider, so the backup to "
                "compare with is unknown: pass location, source_database and run_key (or check the database "
                "that postgres.restore created: its target_database)"
            )
        manifest = BackupStore(location).manifest(source, run_key)
        if manifest is None:
            raise RecoveryError(f"backup {source}/{run_key} at {location} has no manifest any more: cannot drill")
        if not manifest.get("checksum_method"):
            raise RecoveryError(
                f"backup {run_key} of '{source}' was taken with drill_stats off: it has no row counts or "
                "checksums to compare. Back up with drill_stats: true to drill it."
            )
        return run_key, manifest

    def describe_dry_run(self, context: Any) -> str:
        run_key, manifest = self._expected()
        return (f"compare {len(manifest['tables'])} table(s) of database '{self.checked()}' with backup "
                f"{run_key} (read-only)")

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.stats import compare_stats, table_stats

        run_key, manifest = self._expected()
        target = self.target(self.checked())
        with target.connect(attempts=self.connect_attempts, retry_delay=self.retry_delay_seconds) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            actual = table_stats(conn, manifest["checksum_method"])
            conn.execute("COMMIT")
        problems = compare_stats(manifest["tables"], actual)
        if problems:
            raise RecoveryError(
                f"drill failed: '{self.checked()}' differs from backup {run_key}:\n- " + "\n- ".join(problems)
                + "\nDo not cut over to this restore; investigate the backup and the restore logs."
            )
        rows = sum(t["rows"] for t in actual)
        self.log.info("drill passed: %d table(s), %d row(s) equal to backup %s", len(actual), rows, run_key)
        return {"run_key": run_key, "tables": len(actual), "rows": rows, "target_database": self.checked(), "ok": True}


class PostgresPromoteOperator(PostgresOperatorBase):
    """Promote a standby with ``pg_promote(wait, wait_seconds)``; a primary already is one (no-op).

    Alias ``postgres.promote``. Irreversible: put an approval phase before it in specs.
    """

    template_fields: Sequence[str] = ("conn_id", "wait", "wait_seconds")

    def __init__(self, *, conn_id: str, wait: bool = True, wait_seconds: int = 60, **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.wait = wait
        self.wait_seconds = wait_seconds

    def _in_recovery(self, conn: Any) -> bool:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    def describe_dry_run(self, context: Any) -> str:
        target = self.target()
        with target.connect(attempts=self.connect_attempts, retry_delay=self.retry_delay_seconds) as conn:
            if not self._in_recovery(conn):
                return f"nothing: {target.where} is already a primary"
        return f"SELECT pg_promote({bool(self.wait)}, {int(self.wait_seconds)}) on standby {target.where}"

    def run(self, context: Any) -> Any:
        target = self.target()
        with target.connect(attempts=self.connect_attempts, retry_delay=self.retry_delay_seconds) as conn:
            if not self._in_recovery(conn):
                self.log.info("%s is already a primary: nothing to promote", target.where)
                return {"promoted": False, "already_primary": True}
            row = conn.execute("SELECT pg_promote(%s, %s)", [bool(self.wait), int(self.wait_seconds)]).fetchone()
            done = bool(row and row[0])
            if bool(self.wait) and not done:
                raise RecoveryError(
                    f"pg_promote on {target.where} did not finish within {self.wait_seconds}s: check the standby's "
                    "log; it may still complete (re-running this task is safe)"
                )
            lsn_row = conn.execute("SELECT pg_is_in_recovery(), pg_current_wal_lsn()::text").fetchone() if done else None
        self.log.info("promoted %s", target.where)
        return {"promoted": True, "already_primary": False, "wal_lsn": lsn_row[1] if lsn_row else None}


class PostgresDropDatabaseOperator(PostgresOperatorBase):
    """Drop databases, by default only ones a restore of this provider created (compensation).

    ``database``, or ``databases`` (a list), each prefixed with ``prefix`` (e.g. ``drill_``).
    ``only_restored`` (default) refuses any database whose comment lacks the restore marker, so an
    undo or cleanup step can never destroy a production database; nothing is dropped unless every
    named database passes. Absent databases are fine (idempotent). Alias ``postgres.drop_database``.
    """

    template_fields: Sequence[str] = ("conn_id", "database", "databases", "prefix", "only_restored")

    def __init__(
        self,
        *,
        conn_id: str,
        database: str | None = None,
        databases: Sequence[str] | str | None = None,
        prefix: str = "",
        only_restored: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        if database is None and databases is None:
            raise ValueError("give database or databases: which database(s) to drop")
        self.database = database
        self.databases = databases
        self.prefix = prefix
        self.only_restored = only_restored

    def names(self) -> list[str]:
        listed: list[str] = []
        if self.database:
            listed.append(self.database)
        if isinstance(self.databases, str):
            listed += [d.strip() for d in self.databases.strip("[]").replace("'", "").split(",") if d.strip()]
        elif self.databases:
            listed += [str(d) for d in self.databases]
        return [f"{self.prefix or ''}{name}" for name in listed]

    def _check(self, admin: Any) -> list[str]:
        """The named databases that exist; raises before anything is dropped if one is not ours."""
        from recovery_provider.hooks.restore import parse_marker, target_state

        present = []
        for name in self.names():
            exists, comment = target_state(admin, name)
            if exists and bool(self.only_restored) and parse_marker(comment) is None:
                raise RecoveryError(
                    f"refusing to drop '{name}': it was not created by a restore of this provider "
                    "(no restore marker in its comment). Pass only_restored: false if you really mean it."
                )
            if exists:
                present.append(name)
        return present

    def describe_dry_run(self, context: Any) -> str:
        target = self.target()
        with target.connect(attempts=self.connect_attempts, retry_delay=self.retry_delay_seconds) as admin:
            present = self._check(admin)
        return f"DROP DATABASE {present} WITH (FORCE) on {target.where}" if present else f"nothing: {self.names()} do not exist"

    def run(self, context: Any) -> Any:
        from psycopg import sql

        target = self.target()
        with target.connect(attempts=self.connect_attempts, retry_delay=self.retry_delay_seconds) as admin:
            present = self._check(admin)
            for name in present:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                self.log.info("dropped database '%s'", name)
        if not present:
            self.log.info("%s: nothing to drop", self.names())
        return {"dropped": present}



__all__ = [
    "PostgresBackupOperator", "PostgresDrillVerifyOperator", "PostgresDropDatabaseOperator", "PostgresPromoteOperator",
    "PostgresRestoreOperator",
]
