"""pg_restore from backup storage into a new database: verify first, touch the target second.

Order, and why:

1. pick the backup (a key, or the newest verified one) and refuse a backup without manifest;
2. look at the target: already restored from this very backup -> done (a re-run is harmless);
   exists but is not a restore of ours -> refuse (never overwrite someone's database);
3. verify every object against the manifest (size, SHA-256) BEFORE creating anything: one flipped
   byte and nothing is created;
4. CREATE DATABASE ... TEMPLATE template0 (with the source's encoding and locale), marked
   "in progress" in its comment, so an interrupted restore is recognisable and redone on re-run;
5. pg_restore --exit-on-error (``-j`` from a local copy when asked; custom format streams into
   pg_restore's stdin otherwise, hashing again on the way and, for zstd backups, decompressing
   on the fly: no uncompressed copy touches the disk), ANALYZE, mark "complete".

Backups from before zstd (``dump.pgcustom``, pg_dump's own gzip, no ``compression`` in the
manifest) restore exactly as they always did.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.dump import CUSTOM_OBJECT, ZSTD_OBJECT
from recovery_provider.hooks.pg import PgTarget, PgToolError, conninfo_dbname, find_tool
from recovery_provider.hooks.store import (
    BackupCorrupt,
    BackupIncomplete,
    BackupStore,
    decompressed,
    manifest_digest,
    prefetched,
    slug,
)

MARK_PREFIX = "recovery_provider restore"


@dataclasses.dataclass
class RestoreRequest:
    server: PgTarget  # connection to the target server (its dbname is used for admin statements)
    store: BackupStore
    database: str  # source database name: selects the backup folder
    target_database: str
    run_key: str | None = None  # None: the newest (verified) backup
    require_verified: bool = False
    jobs: int | None = None  # None: the backup's own jobs for directory format (staged anyway), else 1
    no_owner: bool = False
    no_privileges: bool = False
    pg_bin_dir: str | None = None
    connect_attempts: int = 3
    connect_retry_delay: float = 1.0


@dataclasses.dataclass
class ChosenBackup:
    run_key: str
    manifest: dict[str, Any]
    marker: str


def choose_backup(req: RestoreRequest) -> ChosenBackup:
    store = req.store
    if req.run_key:
        manifest = store.manifest(req.database, req.run_key)
        if manifest is None:
            path = store.backup_path(req.database, req.run_key)
            raise BackupIncomplete(
                f"no manifest at {store.describe(path)}: that backup is missing or incomplete (interrupted "
                "before its manifest was written) and is never restored. Pick another run_key or run the backup again."
            )
        run_key = req.run_key
    else:
        newest = store.newest(req.database, verified_only=req.require_verified)
        if newest is None:
            kind = "verified " if req.require_verified else "complete "
            raise BackupIncomplete(
                f"no {kind}backup of database '{req.database}' at {store.location}: run a backup"
                + (" and VerifyBackupOperator" if req.require_verified else "") + " first, or pass run_key"
            )
        assert newest.manifest is not None
        run_key, manifest = newest.run_key, newest.manifest
    identity = {"location": store.location, "database": req.database, "run_key": run_key,
                "manifest_sha256": manifest_digest(manifest)}
    return ChosenBackup(run_key, manifest, f"{MARK_PREFIX} {json.dumps(identity, sort_keys=True)}")


def parse_marker(comment: str | None) -> tuple[dict[str, Any], str] | None:
    """(backup identity, 'complete' | 'in progress') from a restored database's comment, or None."""
    if not comment or not comment.startswith(MARK_PREFIX + " {"):
        return None
    body = comment[len(MARK_PREFIX) + 1:]
    for state in ("complete", "in progress"):
        if body.endswith(" " + state):
            try:
                identity = json.loads(body[: -len(state) - 1])
            except ValueError:
                return None
            return (identity, state) if isinstance(identity, dict) else None
    return None


def target_state(admin: Any, target_database: str) -> tuple[bool, str | None]:
    row = admin.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [target_database]
    ).fetchone()
    return (row is not None, row[0] if row else None)


def plan_restore(req: RestoreRequest, chosen: ChosenBackup, admin: Any) -> str:
    """'done' (already restored from this backup), 'create' or 'recreate' (our interrupted attempt)."""
    exists, comment = target_state(admin, req.target_database)
    if not exists:
        return "create"
    if comment == f"{chosen.marker} complete":
        return "done"
    if comment == f"{chosen.marker} in progress":
        return "recreate"
    raise RecoveryError(
        f"database '{req.target_database}' already exists and is not an unfinished restore of this backup "
        f"(its comment: {comment!r}). Nothing was changed: restore into another target_database, or drop "
        "it first (PostgresDropDatabaseOperator) if it is a stale restore."
    )


def run_restore(req: RestoreRequest, log: logging.Logger | Any) -> dict[str, Any]:
    chosen = choose_backup(req)
    path = req.store.backup_path(req.database, chosen.run_key)
    manifest = chosen.manifest
    summary = {
        "backup": f"{slug(req.database)}/{chosen.run_key}",
        "target_database": req.target_database,
        "wal_lsn": manifest.get("wal_lsn"),
        "total_bytes": manifest.get("total_bytes"),
    }
    admin = req.server.connect(attempts=req.connect_attempts, retry_delay=req.connect_retry_delay)
    with admin:
        action = plan_restore(req, chosen, admin)
        if action == "done":
            log.info("database '%s' is already a complete restore of %s: nothing to do", req.target_database, summary["backup"])
            return {**summary, "action": "already restored"}
        if req.jobs is None:
            req = dataclasses.replace(req, jobs=default_jobs(manifest))
        assert req.jobs is not None
        staged = req.jobs > 1 or manifest["format"] == "directory"
        with tempfile.TemporaryDirectory(prefix="recovery-restore-") as spool:
            if staged:
                source = _stage(req, path, manifest, Path(spool))
            else:
                problems = req.store.verify(path, manifest)
                if problems:
                    raise BackupCorrupt(_corrupt_message(path, problems))
                source = None
            log.info("backup %s verified against its manifest; %s database '%s'", summary["backup"],
                     "re-creating" if action == "recreate" else "creating", req.target_database)
            _create_target(admin, req, manifest, chosen.marker, recreate=action == "recreate")
            _pg_restore(req, path, manifest, source, log)
        target = req.server.with_database(req.target_database).connect(
            attempts=req.connect_attempts, retry_delay=req.connect_retry_delay)
        with target:
            target.execute("ANALYZE")
        _comment(admin, req.target_database, f"{chosen.marker} complete")
    log.info("restored %s into '%s' and analyzed it", summary["backup"], req.target_database)
    return {**summary, "action": "recreated" if action == "recreate" else "created"}


def default_jobs(manifest: dict[str, Any]) -> int:
    """A directory-format backup is staged whatever the jobs, so restoring it in parallel costs no
    extra copy; a custom one streams with one job (``pg_restore -j`` on a custom archive written
    to a pipe finds no data offsets and gains little: benchmarks/backup/RESULTS.md)."""
    return max(1, int(manifest.get("jobs") or 1)) if manifest["format"] == "directory" else 1


def _corrupt_message(path: Any, problems: list[str]) -> str:
    return (
        f"backup at {path} does not match its manifest, nothing was created: {'; '.join(problems)}. "
        "Restore another backup (pass its run_key) and investigate the storage."
    )


def _custom_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The custom-format object: zstd-compressed (new) or pg_dump-compressed (before zstd)."""
    for entry in manifest["objects"]:
        if entry["key"] in (ZSTD_OBJECT, CUSTOM_OBJECT):
            return dict(entry)
    raise BackupCorrupt(f"the manifest lists no {ZSTD_OBJECT} or {CUSTOM_OBJECT}: {[o['key'] for o in manifest['objects']]}")


def _stage(req: RestoreRequest, path: Any, manifest: dict[str, Any], spool: Path) -> Path:
    """Download every object once, hashing on the way; refuse on any mismatch before touching the target.

    A zstd object is staged decompressed (pg_restore -j needs a seekable file): ``jobs > 1`` asks
    for that local copy; ``jobs: 1`` streams instead.
    """
    problems = []
    for entry in manifest["objects"]:
        zstd = entry["key"].endswith(".zst")
        local = spool / (entry["key"].removesuffix(".zst") if zstd else entry["key"])
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            problem = _stage_one(req, path / entry["key"], local, entry, zstd=zstd)
        except FileNotFoundError:
            problems.append(f"{entry['key']}: missing")
            continue
        except Exception as exc:
            raise req.store.error(exc, f"reading {entry['key']}") from None
        if problem:
            problems.append(problem)
    if problems:
        raise BackupCorrupt(_corrupt_message(path, problems))
    return spool / (CUSTOM_OBJECT if manifest["format"] == "custom" else "dump.dir")


def _stage_one(req: RestoreRequest, source: Any, local: Path, entry: dict[str, Any], *, zstd: bool) -> str | None:
    """Copy one object to ``local`` (decompressing zstd); a problem to report, or None."""
    import hashlib

    digest, size = hashlib.sha256(), 0

    def hashed() -> Any:
        nonlocal size
        for chunk in req.store.read_chunks(source):
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    decode_error = None
    read = hashed()
    with local.open("wb") as out:
        try:
            for chunk in decompressed(read, entry["key"]) if zstd else read:
                out.write(chunk)
        except BackupCorrupt as exc:
            decode_error = str(exc)
            for _ in read:  # hash the rest: a SHA-256 mismatch is the clearer report
                pass
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        return f"{entry['key']}: size or SHA-256 differs from the manifest"
    return decode_error


def _comment(admin: Any, database: str, text: str) -> None:
    from psycopg import sql

    admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database), sql.Literal(text)))


def _create_target(admin: Any, req: RestoreRequest, manifest: dict[str, Any], marker: str, *, recreate: bool) -> None:
    from psycopg import sql

    name = sql.Identifier(req.target_database)
    if recreate:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    options: sql.Composable = sql.SQL("")
    if manifest.get("encoding"):
        options = sql.SQL(" ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(manifest["encoding"]), sql.Literal(manifest["lc_collate"]), sql.Literal(manifest["lc_ctype"]))
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(name) + options)
    _comment(admin, req.target_database, f"{marker} in progress")


def _pg_restore(req: RestoreRequest, path: Any, manifest: dict[str, Any], local: Path | None, log: Any) -> None:
    import hashlib

    argv = [find_tool("pg_restore", req.pg_bin_dir), "--no-password", "--exit-on-error",
            f"--dbname={conninfo_dbname(req.target_database)}"]
    if req.no_owner:
        argv.append("--no-owner")
    if req.no_privileges:
        argv.append("--no-privileges")
    if local is not None and req.jobs and req.jobs > 1:
        argv.append(f"--jobs={req.jobs}")
    if local is not None:
        argv.append(str(local))
    with req.server.tool_env() as env, tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if local is None else subprocess.DEVNULL,
                                stderr=stderr, stdout=subprocess.DEVNULL, env=env)
        mismatch = None
        try:
            if local is None:
                assert proc.stdin is not None
                entry = _custom_entry(manifest)
                digest = hashlib.sha256()

                def hashed() -> Any:
                    # read ahead in a thread: the download overlaps decompressing and pg_restore
                    for chunk in prefetched(req.store.read_chunks(path / entry["key"])):
                        digest.update(chunk)
                        yield chunk

                stream = decompressed(hashed(), entry["key"]) if entry["key"] == ZSTD_OBJECT else hashed()
                try:
                    with contextlib.suppress(BrokenPipeError):
                        for chunk in stream:
                            proc.stdin.write(chunk)
                except BackupCorrupt as exc:
                    mismatch = f"the object changed while it was being restored: {exc}"
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
                if digest.hexdigest() != entry["sha256"] and mismatch is None:
                    mismatch = "the object changed while it was being restored (SHA-256 differs from the manifest)"
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        said = req.server.redact(stderr.read().decode(errors="replace").strip())
    if code != 0 or mismatch:
        raise PgToolError(
            f"pg_restore into '{req.target_database}' failed ({mismatch or f'exit code {code}'}); the database is "
            f"left marked 'in progress' and a re-run re-creates it. pg_restore said:\n{said[-3000:]}"
        )
    if said:
        log.info("pg_restore said: %s", said[-2000:])
