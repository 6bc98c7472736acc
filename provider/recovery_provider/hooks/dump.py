"""pg_dump streamed into backup storage, under one exported snapshot, manifest last.

Why a snapshot: the dump, the WAL position and the drill statistics (row counts, checksums) must
describe the same instant, or a drill would compare a restore against numbers from another moment
(the "logs reference transactions missing from the data files" trap). We open a REPEATABLE READ
transaction, export its snapshot, hand it to pg_dump with ``--snapshot`` and compute the statistics
in that same transaction.

Why a reader thread and a bounded queue: pg_dump keeps producing while the previous chunk uploads,
and memory stays at ``queue_chunks x chunk_size`` plus one S3 part, whatever the database size.

Why zstd outside pg_dump (the default): pg_dump 15 compresses with gzip in its own process, on one
core, and that, not the database, was the ceiling (38 s against a 10 s raw read for 1 GB). pg_dump
runs with ``--compress=0``; the reader thread hands its output to zstd, which compresses in its own
thread without the GIL, while the writer hashes and uploads. See benchmarks/backup/RESULTS.md.

Directory format (``-j``) cannot write to a pipe. pg_dump writes into a local spool folder; every
file that no pg_dump process holds open any more is uploaded and deleted at once, so local disk
holds only the files in flight (about ``jobs`` tables), not the whole dump. With zstd the spooled
files are uncompressed (``-Z0``) and compressed on upload, so those in-flight files are larger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.pg import PgTarget, PgToolError, find_tool, tool_version
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

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

CUSTOM_OBJECT = "dump.pgcustom"
ZSTD_OBJECT = CUSTOM_OBJECT + ".zst"
DIRECTORY_PREFIX = "dump.dir"
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
    queue_chunks: int = 8
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
                objects = [_dump_custom(req, snapshot, path, log)]
            else:
                objects = _dump_directory(req, snapshot, path, log)
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


def _stderr_tail(handle: IO[bytes], target: PgTarget, lines: int = 15) -> str:
    handle.seek(0)
    text = handle.read().decode(errors="replace")
    return target.redact("\n".join(text.strip().splitlines()[-lines:]))


@contextlib.contextmanager
def _pg_dump(req: BackupRequest, argv: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """Start pg_dump with the password in its own environment; the database name goes in PGDATABASE, never argv."""
    with req.target.tool_env() as env, tempfile.TemporaryFile() as stderr:
        env["PGDATABASE"] = req.database
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE if req.format == "custom" else subprocess.DEVNULL,
                                stderr=stderr, env=env)
        try:
            yield proc, stderr
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _compressor(level: int | None) -> Any:
    if level is None:
        return None
    import zstandard

    # a content checksum per frame: verify and restore prove the dump decodes to what was written
    # threads=1: zstd compresses in its own thread, so the reader goes back to draining pg_dump's
    # pipe at once instead of stalling it for each chunk (measured: closer to the raw read)
    return zstandard.ZstdCompressor(level=level, threads=1, write_checksum=True).compressobj()


def _dump_custom(req: BackupRequest, snapshot: str, path: ObjectStoragePath, log: Any) -> dict[str, Any]:
    key = CUSTOM_OBJECT if req.zstd_level is None else ZSTD_OBJECT
    target = path / key
    raw_size = 0
    with _pg_dump(req, req.dump_argv(snapshot, None)) as (proc, stderr):
        assert proc.stdout is not None
        chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=max(1, req.queue_chunks))
        stdout = proc.stdout
        encoder = _compressor(req.zstd_level)

        def pump() -> None:
            # compressing here, not in the writer: zstd runs without the GIL while the writer hashes/uploads
            nonlocal raw_size
            try:
                while True:
                    data = stdout.read(req.chunk_size)
                    raw_size += len(data)
                    if encoder is not None:
                        out = encoder.compress(data) if data else encoder.flush()
                        if out:
                            chunks.put(out)
                    elif data:
                        chunks.put(data)
                    if not data:
                        chunks.put(b"")  # end of stream
                        return
            except BaseException as exc:  # hand the failure to the writer
                chunks.put(exc)

        def take() -> Iterator[bytes]:
            while True:
                item = chunks.get()
                if isinstance(item, BaseException):
                    raise item
                if not item:
                    return
                yield item

        reader = threading.Thread(target=pump, name="pg_dump-reader", daemon=True)
        reader.start()
        try:
            size, sha = req.store.write_chunks(target, take(), req.upload_block_size)
        except BaseException as exc:
            proc.kill()
            while reader.is_alive():  # unblock the reader so it sees EOF and ends
                with contextlib.suppress(queue.Empty):
                    chunks.get(timeout=0.1)
            if isinstance(exc, Exception) and not isinstance(exc, RecoveryError):
                raise req.store.error(exc, f"writing {target.name}") from None
            raise
        reader.join()
        code = proc.wait()
        if code != 0:
            raise PgToolError(
                f"pg_dump of {req.target.where} exited with {code}; no manifest written, the backup is "
                f"incomplete. pg_dump said:\n{_stderr_tail(stderr, req.target)}"
            )
    if req.zstd_level is None:
        log.info("streamed %s: %d bytes, sha256 %s", target, size, sha)
        return {"key": key, "size": size, "sha256": sha}
    log.info("streamed %s: pg_dump wrote %d bytes, zstd:%d stored %d (%.1f%%), sha256 %s", target, raw_size,
             req.zstd_level, size, 100 * size / max(raw_size, 1), sha)
    return {"key": key, "size": size, "sha256": sha, "uncompressed_size": raw_size}


def _open_files(pid: int) -> set[str]:
    import psutil

    names: set[str] = set()
    try:
        parent = psutil.Process(pid)
        for proc in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                names.update(f.path for f in proc.open_files())
    except psutil.Error:
        pass
    return names


def _file_chunks(source: Path, req: BackupRequest) -> Iterator[bytes]:
    """A spooled file in chunks, zstd-compressed when the backup is (pg_dump wrote it with -Z0)."""
    encoder = _compressor(req.zstd_level)
    with source.open("rb") as handle:
        while data := handle.read(req.chunk_size):
            out = data if encoder is None else encoder.compress(data)
            if out:
                yield out
    if encoder is not None:
        yield encoder.flush()


def _dump_directory(req: BackupRequest, snapshot: str, path: ObjectStoragePath, log: Any) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recovery-spool-") as spool:
        out_dir = Path(spool) / "dump"
        uploaded: set[str] = set()

        def upload_closed(pid: int | None) -> None:
            if not out_dir.exists():
                return
            listed = sorted(p for p in out_dir.iterdir() if p.is_file() and p.name not in uploaded)
            busy = _open_files(pid) if pid is not None else set()
            for local in listed:
                if str(local) in busy:
                    continue
                key = f"{DIRECTORY_PREFIX}/{local.name}"

                raw = local.stat().st_size
                if req.zstd_level is not None:
                    key += ".zst"
                try:
                    size, sha = req.store.write_chunks(path / key, _file_chunks(local, req), req.upload_block_size)
                except Exception as exc:
                    raise req.store.error(exc, f"writing {key}") from None
                entry: dict[str, Any] = {"key": key, "size": size, "sha256": sha}
                objects.append(entry if req.zstd_level is None else {**entry, "uncompressed_size": raw})
                uploaded.add(local.name)
                local.unlink()

        with _pg_dump(req, req.dump_argv(snapshot, str(out_dir))) as (proc, stderr):
            while proc.poll() is None:
                upload_closed(proc.pid)
                time.sleep(0.2)
            if proc.returncode != 0:
                raise PgToolError(
                    f"pg_dump of {req.target.where} exited with {proc.returncode}; no manifest written. "
                    f"pg_dump said:\n{_stderr_tail(stderr, req.target)}"
                )
        upload_closed(None)
        leftover = [p.name for p in out_dir.iterdir()] if out_dir.exists() else []
        if leftover:
            raise RecoveryError(f"files left in the spool after pg_dump ended: {leftover}")
    objects.sort(key=lambda o: str(o["key"]))
    log.info("uploaded %d file(s) of the directory-format dump to %s", len(objects), path)
    return objects
