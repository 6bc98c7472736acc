"""Streams of backup chunks: decompressing, and reading ahead of a consumer.

Each bounds its memory to a few chunks, so a backup of any size streams in flat memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
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
