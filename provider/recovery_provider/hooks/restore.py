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

With ``fallback: previous`` a backup that fails step 3 is refused and the newest older one that
verifies is restored instead (nothing is created until one verifies); the result says which backup
was used, which was refused and why (``fallback_from``, ``fallback_reason``, ``refused``).

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
    manifest_digest,
    slug,
)
from recovery_provider.hooks.streams import decompressed, prefetched

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
    fallback: str | None = None  # "previous": restore the newest older backup that verifies instead


FALLBACKS = ("previous",)


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
    return _chosen(req, run_key, manifest)


def _chosen(req: RestoreRequest, run_key: str, manifest: dict[str, Any]) -> ChosenBackup:
    identity = {"location": req.store.location, "database": req.database, "run_key": run_key,
                "manifest_sha256": manifest_digest(manifest)}
    return ChosenBackup(run_key, manifest, f"{MARK_PREFIX} {json.dumps(identity, sort_keys=True)}")


def previous_backup(req: RestoreRequest, refused: ChosenBackup) -> ChosenBackup | None:
    """The newest complete backup (verified one, with ``require_verified``) older than ``refused``."""
    listed = [b for b in req.store.list_backups(req.database) if b.complete and (b.verified or not req.require_verified)]
    keys = [b.run_key for b in listed]
    older = listed[: keys.index(refused.run_key)] if refused.run_key in keys else []
    if not older or older[-1].manifest is None:
        return None
    return _chosen(req, older[-1].run_key, older[-1].manifest)


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
    refused: list[dict[str, str]] = []  # backups that failed verification, newest first (fallback)
    admin = req.server.connect(attempts=req.connect_attempts, retry_delay=req.connect_retry_delay)
    with admin, tempfile.TemporaryDirectory(prefix="recovery-restore-") as spool:
        while True:
            summary = _summary(req, chosen) | _fallback_fields(refused)
            try:
                action, blocked = plan_restore(req, chosen, admin), None
            except RecoveryError as exc:  # with a fallback, an older backup may be the one restored there
                if req.fallback is None:
                    raise
                action, blocked = "create", exc
            if action == "done":
                log.info("database '%s' is already a complete restore of %s: nothing to do", req.target_database, summary["backup"])
                return {**summary, "action": "already restored"}
            manifest = chosen.manifest
            run = dataclasses.replace(req, jobs=req.jobs if req.jobs is not None else default_jobs(manifest))
            path = req.store.backup_path(req.database, chosen.run_key)
            source, problems = _verify(run, path, manifest, Path(spool) / str(len(refused)))
            if problems:
                older = previous_backup(req, chosen) if req.fallback == "previous" else None
                if older is None:
                    raise BackupCorrupt(_corrupt_message(path, problems) + _no_fallback(req, refused))
                refused.append({"backup": summary["backup"], "reason": _reason(problems)})
                log.warning("backup %s does not match its manifest (%s): nothing was created; fallback: previous, "
                            "so restoring the previous backup %s/%s instead", summary["backup"], _reason(problems),
                            slug(req.database), older.run_key)
                chosen = older
                continue
            if blocked is not None:
                raise blocked
            break
        log.info("backup %s verified against its manifest; %s database '%s'", summary["backup"],
                 "re-creating" if action == "recreate" else "creating", req.target_database)
        _create_target(admin, run, manifest, chosen.marker, recreate=action == "recreate")
        _pg_restore(run, path, manifest, source, log)
        target = req.server.with_database(req.target_database).connect(
            attempts=req.connect_attempts, retry_delay=req.connect_retry_delay)
        with target:
            target.execute("ANALYZE")
        _comment(admin, req.target_database, f"{chosen.marker} complete")
    if refused:
        log.warning("restored %s into '%s' INSTEAD OF the newer %s, which failed verification (%s)",
                    summary["backup"], req.target_database, refused[0]["backup"], refused[0]["reason"])
    else:
        log.info("restored %s into '%s' and analyzed it", summary["backup"], req.target_database)
    return {**summary, "action": "recreated" if action == "recreate" else "created"}


def _summary(req: RestoreRequest, chosen: ChosenBackup) -> dict[str, Any]:
    return {"backup": f"{slug(req.database)}/{chosen.run_key}", "target_database": req.target_database,
            "wal_lsn": chosen.manifest.get("wal_lsn"), "total_bytes": chosen.manifest.get("total_bytes"),
            "finished_at": chosen.manifest.get("finished_at")}


def _fallback_fields(refused: list[dict[str, str]]) -> dict[str, Any]:
    """What the XCom says of a fallback: the backup refused first (the newest) and why, and all refused."""
    if not refused:
        return {}
    return {"fallback_from": refused[0]["backup"], "fallback_reason": refused[0]["reason"], "refused": list(refused)}


def _reason(problems: list[str]) -> str:
    text = "does not match its manifest: " + "; ".join(problems)
    return text if len(text) <= 300 else text[:297] + "..."


def _no_fallback(req: RestoreRequest, refused: list[dict[str, str]]) -> str:
    if req.fallback != "previous":
        return ""
    tried = f" (refused before it: {', '.join(r['backup'] for r in refused)})" if refused else ""
    return f" fallback: previous found no older {'verified ' if req.require_verified else ''}backup to try{tried}."


def _verify(req: RestoreRequest, path: Any, manifest: dict[str, Any], spool: Path) -> tuple[Path | None, list[str]]:
    """(the staged copy, or None to stream; the problems found): every object checked, nothing created."""
    assert req.jobs is not None
    if req.jobs > 1 or manifest["format"] == "directory":
        spool.mkdir(parents=True, exist_ok=True)
        return _stage(req, path, manifest, spool)
    return None, req.store.verify(path, manifest)


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


def _stage(req: RestoreRequest, path: Any, manifest: dict[str, Any], spool: Path) -> tuple[Path, list[str]]:
    """Download every object once, hashing on the way; any mismatch is reported before the target is touched.

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
    return spool / (CUSTOM_OBJECT if manifest["format"] == "custom" else "dump.dir"), problems


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
