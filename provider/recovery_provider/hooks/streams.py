"""Streams of backup chunks: an S3 object read as one GET, decompressing, and reading ahead of a
consumer.

Each bounds its memory to a few chunks, so a backup of any size streams in flat memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from recovery_provider.exceptions import BackupCorrupt

log = logging.getLogger(__name__)
RESUMES = 3  # a dropped download continues where it stopped, this many times per object


def s3_object_chunks(path: Any, chunk_size: int) -> Iterator[bytes]:
    """An S3 object in chunks of ``chunk_size``, from one GET read as it arrives.

    Why not the file object's ranged reads: each block is a request of its own, and moto copies the
    whole object for every range it serves (a 355 MiB restore: 23 ranges). A connection that drops
    mid-object is resumed at the offset reached, with If-Match on the first response's ETag, so a
    resumed read never splices two versions of an object.
    """
    import asyncio

    import aiohttp
    import botocore.exceptions
    from fsspec.asyn import sync

    fs = path.fs
    bucket, key, _ = fs.split_path(path.path)
    offset, etag, resumes = 0, None, 0
    while True:
        where: dict[str, str] = {} if etag is None else {"Range": f"bytes={offset}-", "IfMatch": etag}
        response = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key, **where)
        etag = etag or response.get("ETag")
        body = response["Body"]
        try:
            while chunk := sync(fs.loop, _read_up_to, body, chunk_size):
                offset += len(chunk)
                yield chunk
            return
        except (botocore.exceptions.BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            resumes += 1
            if resumes > RESUMES or etag is None:
                raise
            log.warning("reading s3://%s/%s stopped at byte %d (%s: %s): resuming there (%d of %d)",
                        bucket, key, offset, type(exc).__name__, exc, resumes, RESUMES)
        finally:
            body.close()


async def _read_up_to(body: Any, size: int) -> bytes:
    """``size`` bytes of a streaming body, fewer only at its end (its reads return what arrived)."""
    parts, got = [], 0
    while got < size:
        part = await body.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def decompressed(chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
    """zstd-decompress a stream of chunks; a truncated or damaged frame raises BackupCorrupt.

    Output is bounded per input chunk (zstd's window is a few MiB at the levels we allow).
    """
    import zstandard

    decoder = zstandard.ZstdDecompressor().decompressobj()
    try:
        for chunk in chunks:
            out = decoder.decompress(chunk)
            if out:
                yield out
    except zstandard.ZstdError as exc:
        raise BackupCorrupt(f"{what}: not a valid zstd stream ({exc})") from None
    if not decoder.eof:
        raise BackupCorrupt(f"{what}: the zstd stream ends before its last frame does (truncated)")


def prefetched(chunks: Iterable[bytes], depth: int = 4) -> Iterator[bytes]:
    """``chunks`` read ahead by a thread, at most ``depth`` waiting: downloading overlaps the
    consumer (decompressing, feeding pg_restore) and memory stays bounded. The reader's errors
    are raised here; leaving the loop early stops the reader."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    reader = threading.Thread(target=read, name="backup-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        reader.join(timeout=30)
