"""pg_dump of one database into backup storage, under one exported snapshot, manifest last.

Why a snapshot: the dump, the WAL position and the drill statistics (row counts, checksums) must
describe the same instant, or a drill would compare a restore against numbers from another moment
(the "logs reference transactions missing from the data files" trap). We open a REPEATABLE READ
transaction, export its snapshot, hand it to pg_dump with ``--snapshot`` and compute the statistics
in that same transaction. How pg_dump's output reaches storage: dump_stream.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.dump_stream import CUSTOM_OBJECT as CUSTOM_OBJECT
from recovery_provider.hooks.dump_stream import ZSTD_OBJECT as ZSTD_OBJECT
from recovery_provider.hooks.dump_stream import dump_custom, dump_directory
from recovery_provider.hooks.pg import PgTarget, find_tool, tool_version
from recovery_provider.hooks.stats import SnapshotStats, checksum_method_for
from recovery_provider.hooks.store import (
    MANIFEST,
    MANIFEST_VERSION,
    S3_BLOCK,
    BackupCorrupt,
    BackupStore,
    run_key_safe,
    slug,
)

FORMATS = ("custom", "directory")
DEFAULT_ZSTD_LEVEL = 1  # fastest and, on pg_dump output, smallest of 1-3 (benchmarks/backup)
MAX_ZSTD_LEVEL = 19  # 20-22 need a 64-128 MiB window: memory would no longer be flat


def parse_compression(text: str) -> tuple[str, int | None]:
    """("zstd", level) or ("pg_dump", None) from "zstd", "zstd:3" or "pg_dump"; RecoveryError otherwise."""
    method, _, level = text.strip().partition(":")
    if method == "pg_dump" and not level:
        return "pg_dump", None
    if method == "zstd":
        if not level:
            return "zstd", DEFAULT_ZSTD_LEVEL
        if level.isdigit() and 1 <= int(level) <= MAX_ZSTD_LEVEL:
            return "zstd", int(level)
    raise RecoveryError(
        f"compression '{text}' is not supported: use zstd, zstd:<level 1-{MAX_ZSTD_LEVEL}> (compressed by the "
        "worker, pg_dump runs with --compress=0) or pg_dump (pg_dump's own gzip, level from compress)"
    )


@dataclasses.dataclass
class BackupRequest:
    target: PgTarget
    store: BackupStore
    run_key: str
    format: str = "custom"
    jobs: int = 1
    compress: str | None = None
    compression: str = "zstd"
    drill_stats: bool = True
    chunk_size: int = 1024 * 1024
    queue_chunks: int | None = None  # None: 8, plus one upload part's worth when storage is remote
    upload_block_size: int = S3_BLOCK
    pg_bin_dir: str | None = None
    connect_attempts: int = 3
    connect_retry_delay: float = 1.0
    extra_args: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise RecoveryError(f"format '{self.format}' is not supported: use one of {', '.join(FORMATS)}")
        method, _ = parse_compression(self.compression)
        if method == "zstd" and self.compress is not None:
            raise RecoveryError(
                f"compress '{self.compress}' is pg_dump's own compression, but compression '{self.compression}' "
                "runs pg_dump with --compress=0: give a zstd level as compression: zstd:<level>, or set "
                "compression: pg_dump to keep pg_dump's compression"
            )
        if self.jobs < 1:
            raise RecoveryError(f"jobs must be at least 1, got {self.jobs}")
        if self.jobs > 1 and self.format != "directory":
            raise RecoveryError("jobs > 1 needs format: directory (pg_dump runs parallel jobs only there)")
        for arg in self.extra_args:
            if arg.split("=")[0] in {"-f", "--file", "-F", "--format", "-j", "--jobs", "--snapshot", "-d", "--dbname"}:
                raise RecoveryError(f"pg_dump argument '{arg}' is managed by the operator: use its own option instead")

    @property
    def queue_depth(self) -> int:
        """Chunks the reader may get ahead of the writer. To S3, one part more: while the writer
        uploads a part, pg_dump and zstd go on with the next (moto, 1 GB: about 1 s less)."""
        if self.queue_chunks is not None:
            return max(1, self.queue_chunks)
        ahead = 0 if self.store.is_local else -(-self.upload_block_size // self.chunk_size)
        return 8 + ahead

    @property
    def database(self) -> str:
        return self.target.dbname

    @property
    def zstd_level(self) -> int | None:
        return parse_compression(self.compression)[1]

    @property
    def compression_label(self) -> str:
        """What the manifest records: "zstd:<level>" or "pg_dump"."""
        level = self.zstd_level
        return "pg_dump" if level is None else f"zstd:{level}"

    def dump_argv(self, snapshot: str, out_dir: str | None) -> list[str]:
        argv = [find_tool("pg_dump", self.pg_bin_dir), "--no-password", f"--format={self.format}", f"--snapshot={snapshot}"]
        if self.zstd_level is not None:
            argv.append("--compress=0")
        elif self.compress is not None:
            argv.append(f"--compress={self.compress}")
        if self.format == "directory":
            argv += [f"--jobs={self.jobs}", f"--file={out_dir}"]
        return argv + list(self.extra_args)


def existing_backup(req: BackupRequest, log: logging.Logger | Any) -> dict[str, Any] | None:
    """A complete backup already at this key: reuse it (never overwrite); a damaged one stops us."""
    manifest = req.store.manifest(req.database, req.run_key)
    if manifest is None:
        return None
    path = req.store.backup_path(req.database, req.run_key)
    problems = []
    for entry in manifest["objects"]:
        target = path / entry["key"]
        if not target.exists():
            problems.append(f"{entry['key']} missing")
        elif target.stat().st_size != entry["size"]:
            problems.append(f"{entry['key']} has {target.stat().st_size} bytes, manifest says {entry['size']}")
    if problems:
        raise BackupCorrupt(
            f"a backup with a manifest already exists at {req.store.describe(path)} but does not match it "
            f"({'; '.join(problems)}). It is not overwritten: inspect it, move it aside or delete it, "
            "then run again (or back up under another run_key)."
        )
    log.info("complete backup already at %s (finished %s): reusing it, nothing overwritten", path, manifest["finished_at"])
    return manifest


def run_backup(req: BackupRequest, log: logging.Logger | Any) -> dict[str, Any]:
    """Back up ``req.target.dbname``; returns the manifest written (or the one found)."""
    req.validate()
    found = existing_backup(req, log)
    if found is not None:
        return found
    path = req.store.backup_path(req.database, req.run_key)
    try:
        if path.exists():
            log.info("removing leftovers of an interrupted backup at %s (no manifest: incomplete)", path)
            req.store.remove_tree(path)
    except Exception as exc:
        raise req.store.error(exc, "checking the backup folder") from None
    started = dt.datetime.now(dt.timezone.utc)
    conn = req.target.connect(attempts=req.connect_attempts, retry_delay=req.connect_retry_delay)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute(
            "SELECT pg_export_snapshot(), pg_is_in_recovery(), current_setting('server_version'),"
            " current_setting('server_version_num')::int, pg_encoding_to_char(encoding), datcollate, datctype"
            " FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        snapshot, in_recovery, version, version_num, encoding, collate, ctype = row
        lsn_sql = "SELECT pg_last_wal_replay_lsn()::text" if in_recovery else "SELECT pg_current_wal_lsn()::text"
        lsn_row = conn.execute(lsn_sql).fetchone()
        wal_lsn = lsn_row[0] if lsn_row else None
        log.info("backing up %s at WAL %s, snapshot %s, into %s", req.target.where, wal_lsn, snapshot, path)
        req.store.prepare_dir(path)
        method = checksum_method_for(version_num) if req.drill_stats else None
        # statistics run in this snapshot on this connection WHILE pg_dump reads: a concurrent
        # sequential scan of a big table joins pg_dump's (synchronize_seqscans), no second read
        stats_job = SnapshotStats(conn, method) if method else None
        try:
            if req.format == "custom":
                objects = [dump_custom(req, snapshot, path, log)]
            else:
                objects = dump_directory(req, snapshot, path, log)
        except BaseException:
            if stats_job:
                stats_job.cancel()
            raise
        stats = stats_job.result() if stats_job else []
        conn.execute("COMMIT")
    finally:
        conn.close()
    finished = dt.datetime.now(dt.timezone.utc)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "tool": "recovery_provider",
        "database": req.database,
        "database_slug": slug(req.database),
        "run_key": run_key_safe(req.run_key),
        "format": req.format,
        "compress": "0" if req.zstd_level is not None else req.compress,
        "compression": req.compression_label,
        "jobs": req.jobs,
        "source": req.target.public(),
        "server_version": version,
        "server_version_num": version_num,
        "pg_dump_version": tool_version(find_tool("pg_dump", req.pg_bin_dir)),
        "encoding": encoding,
        "lc_collate": collate,
        "lc_ctype": ctype,
        "in_recovery": bool(in_recovery),
        "wal_lsn": wal_lsn,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_seconds": round((finished - started).total_seconds(), 3),
        "objects": objects,
        "total_bytes": sum(o["size"] for o in objects),
        "checksum_method": method,
        "tables": stats,
    }
    req.store.write_json(path / MANIFEST, manifest)  # LAST: only now is the backup complete
    log.info(
        "backup complete: %d object(s), %d bytes in %.1fs, %d table(s) with drill statistics",
        len(objects), manifest["total_bytes"], manifest["duration_seconds"], len(stats),
    )
    return manifest
