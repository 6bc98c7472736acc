"""Streams of backup chunks: decompressing, writing behind a blocking writer, reading ahead.

Each bounds its memory to a few chunks, so a backup of any size streams in flat memory.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from recovery_provider.exceptions import BackupCorrupt


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


@contextlib.contextmanager
def write_behind(out: Any, depth: int) -> Iterator[Callable[[bytes], None]]:
    """A `write` that hands chunks to a thread writing them to `out`, at most `depth` waiting.

    The thread's error is raised here (at the next write, or on leaving); after it, the rest is
    dropped, never waited for.
    """
    items: queue.Queue[bytes | None] = queue.Queue(maxsize=max(1, depth))
    failed: list[BaseException] = []

    def drain() -> None:
        try:
            while (item := items.get()) is not None:
                out.write(item)
        except BaseException as exc:  # handed to the caller
            failed.append(exc)
            while items.get() is not None:  # keep taking, so the caller never blocks
                pass

    def write(chunk: bytes) -> None:
        if failed:
            raise failed[0]
        items.put(chunk)

    writer = threading.Thread(target=drain, name="backup-upload", daemon=True)
    writer.start()
    try:
        yield write
    finally:
        items.put(None)
        writer.join()
    if failed:
        raise failed[0]


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
