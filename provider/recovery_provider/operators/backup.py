"""Backup-level operators: verify a stored backup against its manifest, prune old backups.

Why verification writes a marker: "the newest verified backup" is what the RPO sensor and
retention rely on; a marker (``verification.json``, bound to the manifest's own SHA-256) records
that every object was re-read and matched after the backup was written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.store import BackupCorrupt, BackupIncomplete, default_location, slug
from recovery_provider.operators.base import RecoveryOperator, is_dry_run, run_key_from_context, seconds


class VerifyBackupOperator(RecoveryOperator):
    """Check a backup: manifest present, every object's size and SHA-256 as recorded.

    ``run_key`` defaults to this run's key, so in a backup DAG it checks what this run's backup step
    wrote, and a backup that failed is never covered by an older one that passes. In a recovery
    DAG (which takes no backup) pass ``run_key: latest``: the newest complete backup. On success writes ``verification.json`` next to
    the manifest (not in dry runs). Alias ``backup.verify``.
    """

    template_fields: Sequence[str] = ("location", "database", "run_key")

    def __init__(self, *, database: str, location: str | None = None, run_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = database
        self.location = location or default_location()
        self.run_key = run_key

    def _select(self, context: Any) -> tuple[Any, str, dict[str, Any]]:
        from recovery_provider.hooks.store import BackupStore

        store = BackupStore(self.location)
        run_key = self.run_key or run_key_from_context(context)
        if run_key == "latest":
            newest = store.newest(self.database, verified_only=False)
            if newest is None or newest.manifest is None:
                raise BackupIncomplete(f"no complete backup of '{self.database}' at {store.location}: run a backup first")
            run_key = newest.run_key
        manifest = store.manifest(self.database, run_key)
        if manifest is None:
            raise BackupIncomplete(
                f"backup {slug(self.database)}/{run_key} at {store.location} has no manifest: it is missing or "
                "was interrupted, and is incomplete by definition. Run the backup again (or pass "
                "run_key: latest to check the newest complete backup)."
            )
        return store, run_key, manifest

    def describe_dry_run(self, context: Any) -> str:
        _, run_key, manifest = self._select(context)
        return f"re-read {len(manifest['objects'])} object(s) of backup {run_key} and write verification.json"

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.store import VERIFICATION, manifest_digest

        store, run_key, manifest = self._select(context)
        path = store.backup_path(self.database, run_key)
        problems = store.verify(path, manifest)
        if problems:
            raise BackupCorrupt(
                f"backup {run_key} of '{self.database}' does not match its manifest: {'; '.join(problems)}. "
                "Do not restore it; take a new backup and investigate the storage."
            )
        mark = {
            "ok": True,
            "manifest_sha256": manifest_digest(manifest),
            "verified_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "objects": len(manifest["objects"]),
            "total_bytes": manifest["total_bytes"],
        }
        store.write_json(path / VERIFICATION, mark)
        self.log.info("backup %s verified: %d object(s), %d bytes", run_key, mark["objects"], mark["total_bytes"])
        return {"run_key": run_key, **mark}


class RetentionOperator(RecoveryOperator):
    """Prune backups of ``database`` (default: every database at ``location``) by count
    (``keep_last``) and/or age (``max_age``, or ``keep_days``), each database on its own.

    Deletes nothing until ``confirm`` is true (and never in a dry run): until then it logs and
    returns what it would delete. Never deletes the newest verified backup, nor the newest complete
    one. Incomplete backups (no manifest) are pruned only with ``prune_incomplete_after`` (a
    duration; a running backup is also incomplete). Alias ``backup.retention``.
    """

    template_fields: Sequence[str] = (
        "location", "database", "keep_last", "max_age", "keep_days", "confirm", "prune_incomplete_after",
    )

    def __init__(
        self,
        *,
        database: str | None = None,
        location: str | None = None,
        keep_last: int | str | None = None,
        max_age: str | float | None = None,
        keep_days: int | str | None = None,
        confirm: bool = False,
        prune_incomplete_after: str | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if keep_last is None and max_age is None and keep_days is None:
            raise ValueError("give keep_last and/or max_age (or keep_days): retention with neither would keep everything")
        self.database = database
        self.location = location or default_location()
        self.keep_last = keep_last
        self.max_age = max_age
        self.keep_days = keep_days
        self.confirm = confirm
        self.prune_incomplete_after = prune_incomplete_after

    def plan(self) -> tuple[Any, list[Any], list[str]]:
        """(store, backups to delete, reasons kept) for every database in scope."""
        from recovery_provider.hooks.store import BackupStore

        store = BackupStore(self.location)
        doomed: list[Any] = []
        notes: list[str] = []
        for database in [self.database] if self.database else store.databases():
            more, kept = self._plan_one(store, database)
            doomed += more
            notes += [f"{database}: {note}" for note in kept]
        return store, doomed, notes

    def _plan_one(self, store: Any, database: str) -> tuple[list[Any], list[str]]:
        backups = store.list_backups(database)
        now = dt.datetime.now(dt.timezone.utc)
        complete = [b for b in backups if b.complete]
        protected = set()
        verified = [b for b in complete if b.verified]
        if verified:
            protected.add(verified[-1].run_key)
        if complete:
            protected.add(complete[-1].run_key)
        keep_last = None if self.keep_last is None or self.keep_last == "" else int(str(self.keep_last))
        if keep_last is not None and keep_last < 1:
            raise RecoveryError("keep_last must be at least 1")
        max_age = None if self.max_age in (None, "") else seconds(self.max_age, "max_age")
        if self.keep_days not in (None, ""):
            days = float(str(self.keep_days)) * 86400
            max_age = days if max_age is None else min(max_age, days)
        doomed: list[Any] = []
        for index, backup in enumerate(reversed(complete)):  # newest first
            if backup.run_key in protected:
                continue
            too_many = keep_last is not None and index >= keep_last
            assert backup.finished_at is not None
            too_old = max_age is not None and (now - backup.finished_at).total_seconds() > max_age
            if too_many or too_old:
                doomed.append(backup)
        if self.prune_incomplete_after not in (None, ""):
            grace = seconds(self.prune_incomplete_after, "prune_incomplete_after")
            for backup in backups:
                if backup.complete:
                    continue
                try:
                    modified = _newest_mtime(backup.path)
                except OSError:
                    continue
                if modified is not None and (now - modified).total_seconds() > grace:
                    doomed.append(backup)
        notes = [f"kept {key}: newest verified/complete backup, never pruned" for key in sorted(protected)]
        return doomed, notes

    def describe_dry_run(self, context: Any) -> str:
        _, doomed, _ = self.plan()
        return f"delete {len(doomed)} backup(s): {[b.path.parent.name + '/' + b.run_key for b in doomed]}"

    def run(self, context: Any) -> Any:
        store, doomed, notes = self.plan()
        for note in notes:
            self.log.info(note)
        names = [b.run_key if self.database else f"{b.path.parent.name}/{b.run_key}" for b in doomed]
        if not self.confirm or is_dry_run(context):
            self.log.info("retention dry run (confirm: false): would delete %d backup(s): %s", len(names), names)
            return {"deleted": [], "would_delete": names, "confirmed": False}
        for backup in doomed:
            self.log.info("deleting backup %s (%s)", backup.run_key, "complete" if backup.complete else "incomplete")
            store.delete_backup(backup.path)
        return {"deleted": names, "would_delete": [], "confirmed": True}


def _newest_mtime(path: Any) -> dt.datetime | None:
    newest = None
    # fsspec's find(detail=True) gives mtimes for local files and LastModified for S3 objects
    for info in path.fs.find(path.path, detail=True).values():
        stamps = [info.get(k) for k in ("mtime", "LastModified", "created")]
        stamp = next((s for s in stamps if s is not None), None)
        if stamp is None:
            continue
        when = stamp if isinstance(stamp, dt.datetime) else dt.datetime.fromtimestamp(float(stamp), dt.timezone.utc)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        newest = when if newest is None or when > newest else newest
    return newest
