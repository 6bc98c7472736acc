"""pg_dump's output streamed into backup storage: custom format through one pipe, directory format
from a local spool.

Why a reader thread and a bounded queue (custom format): pg_dump keeps producing while the previous
chunk is written or uploaded, and memory stays at ``queue_depth x chunk_size`` plus one S3 part,
whatever the database size.

Why zstd outside pg_dump (the default): pg_dump 15 compresses with gzip in its own process, on one
core, and that, not the database, was the ceiling (38 s against a 10 s raw read for 1 GB). pg_dump
runs with ``--compress=0``; the reader thread compresses each chunk (zstd releases the GIL) while the
writer hashes and writes the previous ones. See benchmarks/backup/RESULTS.md.

Directory format (``-j``) cannot write to a pipe. pg_dump writes into a local spool folder; every
file that no pg_dump process holds open any more is uploaded and deleted at once, so local disk
holds only the files in flight (about ``jobs`` tables), not the whole dump. With zstd the spooled
files are uncompressed (``-Z0``) and compressed on upload, so those in-flight files are larger.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from recovery_provider.exceptions import RecoveryError
from recovery_provider.hooks.pg import PgTarget, PgToolError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from recovery_provider.hooks.dump import BackupRequest

CUSTOM_OBJECT = "dump.pgcustom"
ZSTD_OBJECT = CUSTOM_OBJECT + ".zst"
DIRECTORY_PREFIX = "dump.dir"
# pg_dump's pipe, grown from Linux's 64 KiB: while the reader compresses a 1 MiB chunk (~2 ms),
# pg_dump goes on writing instead of blocking after 64 KiB. Measured on 2 cores, 1 GB database
# (benchmarks/backup/RESULTS.md): 256 KiB, 512 KiB and 1 MiB within noise, 256 KiB the best median.
PIPE_BYTES = 256 * 1024


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


def _compressor(level: int | None, *, own_thread: bool) -> Any:
    """A zstd stream encoder with a content checksum per frame (verify and restore prove the dump
    decodes to what was written); ``own_thread``: zstd compresses in a thread of its own."""
    if level is None:
        return None
    import zstandard

    return zstandard.ZstdCompressor(level=level, threads=1 if own_thread else 0, write_checksum=True).compressobj()


def _grow_pipe(stream: IO[bytes]) -> None:
    """Best effort: Linux only, and refused when the user's pipe memory is used up."""
    import fcntl

    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def dump_custom(req: BackupRequest, snapshot: str, path: ObjectStoragePath, log: Any) -> dict[str, Any]:
    key = CUSTOM_OBJECT if req.zstd_level is None else ZSTD_OBJECT
    target = path / key
    raw_size = 0
    with _pg_dump(req, req.dump_argv(snapshot, None)) as (proc, stderr):
        assert proc.stdout is not None
        chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=req.queue_depth)
        stdout = proc.stdout
        _grow_pipe(stdout)
        # compressed in the reader thread: not in the writer (zstd runs without the GIL while the
        # writer hashes and writes), nor in a zstd thread (handing each chunk over cost more CPU
        # than it saved on 2 cores, benchmarks/backup/RESULTS.md)
        encoder = _compressor(req.zstd_level, own_thread=False)

        def pump() -> None:
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
    encoder = _compressor(req.zstd_level, own_thread=True)  # overlaps the upload in this thread
    with source.open("rb") as handle:
        while data := handle.read(req.chunk_size):
            out = data if encoder is None else encoder.compress(data)
            if out:
                yield out
    if encoder is not None:
        yield encoder.flush()


def dump_directory(req: BackupRequest, snapshot: str, path: ObjectStoragePath, log: Any) -> list[dict[str, Any]]:
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
