"""Restore a logical backup (pg_dump, manifest) into a new database: ``postgres.restore``.

Thin on purpose: the work is in :mod:`recovery_provider.hooks.restore`. ``fallback: previous``
restores the newest older backup that verifies when the chosen one does not, and says so in the
task log and its XCom (``fallback_from``, ``fallback_reason``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recovery_provider.exceptions import ArgumentError
from recovery_provider.hooks.store import default_location, slug
from recovery_provider.operators.base import PostgresOperatorBase


class _FromBackup(PostgresOperatorBase):
    """Arguments shared by restore and drill verification: which backup, which target."""

    def __init__(
        self,
        *,
        conn_id: str,
        database: str,
        location: str | None = None,
        run_key: str | None = None,
        target_database: str | None = None,
        require_verified: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.database = database
        self.location = location or default_location()
        self.run_key = run_key
        self.target_database = target_database
        self.require_verified = require_verified

    def target_name(self) -> str:
        return self.target_database or f"{self.database}_restored"

    def store(self) -> Any:
        from recovery_provider.hooks.store import BackupStore

        return BackupStore(self.location)


class PostgresRestoreOperator(_FromBackup):
    """Restore a backup into a new database ``target_database`` (default ``<database>_restored``).

    ``run_key`` picks the backup (default: the newest complete one, or the newest verified one with
    ``require_verified``). Refuses before creating anything when the manifest is missing or any
    object fails its checksum; never overwrites a database it did not create; a re-run after
    success does nothing, after an interruption re-creates the target. Alias ``postgres.restore``.

    ``fallback: previous``: when the backup fails verification (nothing is created then), restore the
    newest older backup that verifies instead; the XCom names the backup used (``backup``), the one
    refused (``fallback_from``) and why (``fallback_reason``). Without it such a backup fails the task
    at once: no retry can fix a corrupt backup.
    """

    template_fields: Sequence[str] = (
        "conn_id", "database", "location", "run_key", "target_database", "require_verified", "jobs",
        "no_owner", "no_privileges", "fallback",
    )

    def __init__(self, *, jobs: int | str | None = None, no_owner: bool = False, no_privileges: bool = False,
                 fallback: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobs = jobs
        self.no_owner = no_owner
        self.no_privileges = no_privileges
        self.fallback = fallback
        if not (isinstance(fallback, str) and "{{" in fallback):  # a template is checked once rendered
            self.fallback_mode()

    def fallback_mode(self) -> str | None:
        from recovery_provider.hooks.restore import FALLBACKS

        mode = str(self.fallback or "").strip().lower()
        if mode in ("", "none"):
            return None
        if mode not in FALLBACKS:
            raise ArgumentError(f"fallback: {self.fallback!r} is not one of {', '.join(FALLBACKS)} (or none): "
                                "'previous' restores the newest older backup that verifies when this one does not")
        return mode

    def request(self) -> Any:
        from recovery_provider.hooks.restore import RestoreRequest

        try:
            jobs = None if self.jobs in (None, "") else int(self.jobs)
        except ValueError:
            raise ArgumentError(f"jobs: {self.jobs!r} is not a number of parallel pg_restore jobs") from None
        return RestoreRequest(
            server=self.target(None),
            store=self.store(),
            database=self.database,
            target_database=self.target_name(),
            run_key=self.run_key or None,
            require_verified=bool(self.require_verified),
            jobs=jobs,
            no_owner=bool(self.no_owner),
            no_privileges=bool(self.no_privileges),
            pg_bin_dir=self.pg_bin_dir,
            connect_attempts=self.connect_attempts,
            connect_retry_delay=self.retry_delay_seconds,
            fallback=self.fallback_mode(),
        )

    def describe_dry_run(self, context: Any) -> str:
        from recovery_provider.hooks.restore import choose_backup, default_jobs, plan_restore

        req = self.request()
        chosen = choose_backup(req)
        with req.server.connect(attempts=req.connect_attempts, retry_delay=req.connect_retry_delay) as admin:
            action = plan_restore(req, chosen, admin)
        if action == "done":
            return f"nothing: '{req.target_database}' is already a complete restore of {chosen.run_key}"
        return (f"verify backup {slug(req.database)}/{chosen.run_key} ({chosen.manifest['total_bytes']} bytes) "
                f"and {'re-create' if action == 'recreate' else 'create'} database '{req.target_database}' "
                f"on {req.server.where} from it (pg_restore --exit-on-error, jobs="
                f"{req.jobs or default_jobs(chosen.manifest)}), then ANALYZE"
                + ("; if it fails verification, restore the newest older backup that verifies instead (fallback: previous)"
                   if req.fallback else ""))

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.restore import run_restore

        return run_restore(self.request(), self.log)
