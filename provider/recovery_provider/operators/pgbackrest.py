"""pgBackRest operators: stanza, check, backup, info, verify, point-in-time restore, scratch removal.

Thin on purpose: the work is in ``hooks.pgbackrest`` (config, secrets, running, error codes) and
``hooks.pgbackrest_restore`` (restore, start, wait for the target). Errors no retry can fix (a bad
argument, a missing connection, a checksum mismatch, a missing or invalid backup) fail the task at
once with ``AirflowFailException``: retries would only spend the RTO.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recovery_provider.operators.base import RecoveryOperator, seconds


def fail_fast(exc: Exception) -> Exception:
    """AirflowFailException (no retries) for fatal pgBackRest errors; the error itself otherwise."""
    from airflow.sdk.exceptions import AirflowFailException

    from recovery_provider.exceptions import PgBackRestError

    if isinstance(exc, PgBackRestError) and exc.fatal:
        return AirflowFailException(str(exc))
    return exc


class _PgBackRestOperator(RecoveryOperator):
    """Arguments every pgBackRest step shares: which stanza, which repository, how to run."""

    base_fields: Sequence[str] = ("stanza", "repository", "conn_id", "pg_data_dir", "run_as", "options")
    needs_pg = True

    def __init__(
        self,
        *,
        stanza: str,
        repository: str,
        conn_id: str | None = None,
        pg_data_dir: str | None = None,
        run_as: str | None = None,
        verify_tls: bool | None = None,
        pgbackrest_bin: str | None = None,
        options: Mapping[str, Any] | None = None,
        command_timeout: float | str = "2h",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stanza = stanza
        self.repository = repository
        self.conn_id = conn_id
        self.pg_data_dir = pg_data_dir
        self.run_as = run_as
        self.verify_tls = verify_tls
        self.pgbackrest_bin = pgbackrest_bin
        self.options = dict(options or {})
        self.command_timeout = command_timeout

    def hook(self, *, with_pg: bool | None = None) -> Any:
        from recovery_provider.hooks.pgbackrest import PgBackRestHook, PgCluster, Repository, argument_error

        pg = None
        if self.needs_pg if with_pg is None else with_pg:
            if not self.conn_id:
                raise argument_error(f"{self.task_id}: conn_id is required (the PostgreSQL cluster of stanza '{self.stanza}')")
            pg = PgCluster.from_conn_id(self.conn_id, self.pg_data_dir or None)
        return PgBackRestHook(
            stanza=str(self.stanza), repo=Repository.parse(str(self.repository), verify_tls=self.verify_tls),
            pg=pg, run_as=self.run_as or None, binary=self.pgbackrest_bin, options=self.options,
        )

    @property
    def timeout_seconds(self) -> float:
        return seconds(self.command_timeout, "command_timeout")

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except Exception as exc:
            raise fail_fast(exc) from None

    def describe_dry_run(self, context: Any) -> str:
        hook = self.hook()
        return f"run pgbackrest {self.command_line()} for stanza '{hook.stanza}' at {hook.repo.location}"

    def command_line(self) -> str:
        raise NotImplementedError


class PgBackRestStanzaCreateOperator(_PgBackRestOperator):
    """Create the stanza (idempotent), or upgrade it after a major version upgrade (``upgrade: true``).

    Alias ``pgbackrest.stanza_create``.
    """

    template_fields: Sequence[str] = (*_PgBackRestOperator.base_fields, "upgrade")

    def __init__(self, *, upgrade: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.upgrade = upgrade

    def command_line(self) -> str:
        return "stanza-upgrade" if self.upgrade else "stanza-create"

    def run(self, context: Any) -> Any:
        result = self.hook().run(self.command_line(), timeout=self.timeout_seconds, log=self.log)
        return {"stanza": self.stanza, "command": self.command_line(), "seconds": round(result.seconds, 3)}


class PgBackRestCheckOperator(_PgBackRestOperator):
    """``pgbackrest check``: the configuration is right and a WAL switch reaches the repository.

    Proves ``archive_command`` works end to end (it waits up to ``archive_timeout`` for the segment).
    Alias ``pgbackrest.check``.
    """

    template_fields: Sequence[str] = (*_PgBackRestOperator.base_fields, "archive_timeout")

    def __init__(self, *, archive_timeout: float | str = "60s", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.archive_timeout = archive_timeout

    def command_line(self) -> str:
        return f"check --archive-timeout={seconds(self.archive_timeout, 'archive_timeout'):.0f}"

    def run(self, context: Any) -> Any:
        result = self.hook().run("check", f"--archive-timeout={seconds(self.archive_timeout, 'archive_timeout'):.0f}",
                                 timeout=self.timeout_seconds, log=self.log)
        import re

        archived = re.search(r"WAL segment (\S+) successfully archived", result.output)
        return {"stanza": self.stanza, "ok": True, "archived_segment": archived.group(1) if archived else None,
                "seconds": round(result.seconds, 3)}


class PgBackRestBackupOperator(_PgBackRestOperator):
    """Take a backup: ``type`` full/diff/incr, ``process_max``, ``compress_type`` (lz4, zst, gz, bz2, none).

    XCom: the new backup as ``info`` describes it (label, type, times, LSNs, WAL range, sizes), its
    ``finished_at`` being the backup's stop time (the run ledger's recovery point). ``start_fast``
    asks for an immediate checkpoint. Alias ``pgbackrest.backup``.
    """

    template_fields: Sequence[str] = (
        *_PgBackRestOperator.base_fields, "type", "process_max", "compress_type", "compress_level", "start_fast",
    )

    def __init__(
        self,
        *,
        type: str = "full",
        process_max: int = 1,
        compress_type: str = "lz4",
        compress_level: int | str | None = None,
        start_fast: bool = True,
        archive_timeout: float | str = "60s",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.type = type
        self.process_max = process_max
        self.compress_type = compress_type
        self.compress_level = compress_level
        self.start_fast = start_fast
        self.archive_timeout = archive_timeout

    def arguments(self) -> list[str]:
        from recovery_provider.hooks.pgbackrest import BACKUP_TYPES, COMPRESS_TYPES, argument_error

        if self.type not in BACKUP_TYPES:
            raise argument_error(f"type {self.type!r}: use one of {', '.join(BACKUP_TYPES)}")
        if self.compress_type not in COMPRESS_TYPES:
            raise argument_error(f"compress_type {self.compress_type!r}: use one of {', '.join(COMPRESS_TYPES)}")
        try:
            process_max = int(self.process_max)
        except (TypeError, ValueError):
            process_max = 0
        if not 1 <= process_max <= 999:
            raise argument_error(f"process_max {self.process_max!r}: give a whole number from 1 to 999")
        args = [f"--type={self.type}", f"--process-max={process_max}", f"--compress-type={self.compress_type}",
                f"--archive-timeout={seconds(self.archive_timeout, 'archive_timeout'):.0f}"]
        if self.compress_level not in (None, ""):
            args.append(f"--compress-level={int(str(self.compress_level))}")
        if self.start_fast:
            args.append("--start-fast")
        return args

    def command_line(self) -> str:
        return "backup " + " ".join(self.arguments())

    def run(self, context: Any) -> Any:
        import re

        from recovery_provider.hooks.pgbackrest_report import backup_summary

        hook = self.hook()
        result = hook.run("backup", *self.arguments(), timeout=self.timeout_seconds, log=self.log)
        label = re.search(r"new backup label = (\S+)", result.output)
        backups = hook.info().get("backup") or []
        entry = next((b for b in backups if label and b.get("label") == label.group(1)), backups[-1] if backups else {})
        return {"stanza": self.stanza, **backup_summary(entry), "compress_type": self.compress_type,
                "process_max": int(self.process_max), "seconds": round(result.seconds, 3)}


class PgBackRestInfoOperator(_PgBackRestOperator):
    """``info --output=json`` as structured XCom: status, every backup (summary), the WAL archive range.

    Needs only the repository (no ``conn_id``). Alias ``pgbackrest.info``.
    """

    template_fields: Sequence[str] = _PgBackRestOperator.base_fields
    needs_pg = False

    def command_line(self) -> str:
        return "info --output=json"

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.pgbackrest_report import backup_summary

        info = self.hook().info()
        backups = [backup_summary(b) for b in info.get("backup") or []]
        archives = [{"id": a.get("id"), "min": a.get("min"), "max": a.get("max")} for a in info.get("archive") or []]
        status = info.get("status") or {}
        return {"stanza": self.stanza, "status": status.get("message"), "status_code": status.get("code"),
                "backups": backups, "newest": backups[-1] if backups else None, "archive": archives}


class PgBackRestVerifyOperator(_PgBackRestOperator):
    """``pgbackrest verify``: re-read every backup file and WAL segment, checking sizes and checksums.

    Fails (no retries) listing what is missing or invalid. Needs only the repository. Alias
    ``pgbackrest.verify``.
    """

    template_fields: Sequence[str] = _PgBackRestOperator.base_fields
    needs_pg = False

    def command_line(self) -> str:
        return "verify --verbose"

    def run(self, context: Any) -> Any:
        from recovery_provider.exceptions import PgBackRestError
        from recovery_provider.hooks.pgbackrest_report import parse_verify

        result = self.hook().run("verify", "--verbose", timeout=self.timeout_seconds, log=self.log, check=False)
        report = parse_verify(result.output)
        if result.code != 0 or not report["ok"]:
            raise PgBackRestError(
                f"pgbackrest verify found problems in stanza '{self.stanza}' at {self.repository} (exit {result.code}): "
                f"{'; '.join(report['problems']) or result.output.strip()[-1500:]}. Do not restore from the damaged "
                "backup: restore an earlier one (backup_set) and investigate the storage.",
                code=result.code, fatal=True,
            )
        return {"stanza": self.stanza, **report, "seconds": round(result.seconds, 3)}


class PgBackRestRestoreOperator(_PgBackRestOperator):
    """Restore to a time, an LSN, the newest (``latest``) or the backup's end (``immediate``).

    Into ``data_dir`` (absent or empty; never a directory we did not create), then, with ``start``
    (default), start it on ``port`` and wait until recovery reached the target (``target_action``
    promote, the default, or pause). ``conn_id`` is the cluster whose login and password reach the
    restored copy (they are the source's). XCom: ``backup_set`` used, ``replay_lsn``,
    ``last_commit_at``, ``achieved_rpo_seconds`` (time targets: target minus the last restored
    commit), ``restore_seconds``, ``start_seconds``; ``finished_at`` is the last restored commit, which
    the run ledger takes as the recovery point. Alias ``pgbackrest.restore``.
    """

    template_fields: Sequence[str] = (
        *_PgBackRestOperator.base_fields, "data_dir", "type", "target", "backup_set", "target_action", "port",
        "process_max", "start",
    )
    needs_pg = False

    def __init__(
        self,
        *,
        data_dir: str,
        type: str = "latest",
        target: str | None = None,
        backup_set: str | None = None,
        target_action: str = "promote",
        target_exclusive: bool = False,
        port: int | str | None = None,
        listen_addresses: str = "127.0.0.1",
        process_max: int = 1,
        start: bool = True,
        pg_bin_dir: str | None = None,
        wait_timeout: float | str = "30m",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.type = type
        self.target = target
        self.backup_set = backup_set
        self.target_action = target_action
        self.target_exclusive = target_exclusive
        self.port = port
        self.listen_addresses = listen_addresses
        self.process_max = process_max
        self.start = start
        self.pg_bin_dir = pg_bin_dir
        self.wait_timeout = wait_timeout

    def request(self) -> Any:
        from recovery_provider.hooks.pg import PgTarget
        from recovery_provider.hooks.pgbackrest import PgBackRestHook, PgCluster, Repository, argument_error
        from recovery_provider.hooks.pgbackrest_restore import PitrRequest

        user, password = "postgres", None
        if self.conn_id:
            try:
                source = PgTarget.from_conn_id(self.conn_id)
            except Exception as exc:
                raise argument_error(str(exc)) from None
            user, password = source.user, source.password
        hook = PgBackRestHook(stanza=str(self.stanza), repo=Repository.parse(str(self.repository), verify_tls=self.verify_tls),
                              pg=PgCluster(data_dir=str(self.data_dir)), run_as=self.run_as or None,
                              binary=self.pgbackrest_bin, options=self.options)
        port = None if self.port in (None, "") else int(str(self.port))
        return PitrRequest(
            hook=hook, type=str(self.type), target=self.target or None, backup_set=self.backup_set or None,
            target_action=str(self.target_action), target_exclusive=bool(self.target_exclusive),
            process_max=int(self.process_max), start=bool(self.start), port=port,
            listen_addresses=self.listen_addresses, user=user, password=password, pg_bin_dir=self.pg_bin_dir,
            wait_timeout=seconds(self.wait_timeout, "wait_timeout"),
        )

    def describe_dry_run(self, context: Any) -> str:
        req = self.request()
        target = req.validate()
        where = f" then start it on port {req.port} and wait for the target" if req.start else ""
        return (f"pgbackrest restore stanza '{req.hook.stanza}' from {req.hook.repo.location} "
                f"(type {req.type}{f', target {target}' if target else ''}) into {req.data_dir}{where}")

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.pgbackrest_restore import run_pitr

        return run_pitr(self.request(), self.log)


class PgBackRestDropScratchOperator(_PgBackRestOperator):
    """Stop and delete a cluster that ``pgbackrest.restore`` created (only one carrying its marker).

    Cleanup and compensation after a drill. Alias ``pgbackrest.drop_scratch``.
    """

    template_fields: Sequence[str] = (*_PgBackRestOperator.base_fields, "data_dir")
    needs_pg = False

    def __init__(self, *, data_dir: str, pg_bin_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.pg_bin_dir = pg_bin_dir

    def _hook(self) -> Any:
        from recovery_provider.hooks.pgbackrest import PgBackRestHook, PgCluster, Repository

        return PgBackRestHook(stanza=str(self.stanza), repo=Repository.parse(str(self.repository), verify_tls=self.verify_tls),
                              pg=PgCluster(data_dir=str(self.data_dir)), run_as=self.run_as or None,
                              binary=self.pgbackrest_bin)

    def describe_dry_run(self, context: Any) -> str:
        return f"stop the restored cluster in {self.data_dir} (pg_ctl -m fast) and delete it"

    def run(self, context: Any) -> Any:
        from pathlib import Path

        from recovery_provider.hooks.pgbackrest_restore import stop_scratch

        return stop_scratch(Path(str(self.data_dir)), self._hook(), self.pg_bin_dir)
