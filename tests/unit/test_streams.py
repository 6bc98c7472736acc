"""Backup chunk streams: the write-behind thread that keeps a backup reading while a part uploads."""

from __future__ import annotations

import threading
import time

import pytest

from recovery_provider.hooks.streams import write_behind

pytestmark = pytest.mark.unit


class SlowSink:
    """A writer that blocks like an object store uploading a part."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.got: list[bytes] = []
        self.delay, self.fail_at = delay, fail_at
        self.thread: str | None = None

    def write(self, chunk: bytes) -> None:
        self.thread = threading.current_thread().name
        if self.fail_at is not None and len(self.got) == self.fail_at:
            raise OSError("upload refused")
        time.sleep(self.delay)
        self.got.append(chunk)


def test_chunks_arrive_in_order_on_another_thread() -> None:
    sink = SlowSink()
    with write_behind(sink, depth=2) as write:
        for i in range(50):
            write(bytes([i]))
    assert sink.got == [bytes([i]) for i in range(50)] and sink.thread == "backup-upload"


def test_the_producer_goes_on_while_the_writer_blocks() -> None:
    sink = SlowSink(delay=0.3)
    with write_behind(sink, depth=4) as write:
        began = time.perf_counter()
        for i in range(4):
            write(bytes([i]))
        queued = time.perf_counter() - began  # the first write blocks the thread, not us
    assert queued < 0.2 and len(sink.got) == 4


def test_a_write_error_reaches_the_producer_and_nothing_hangs() -> None:
    sink = SlowSink(fail_at=3)
    with pytest.raises(OSError, match="upload refused"), write_behind(sink, depth=2) as write:
        for i in range(1000):
            write(bytes([i % 256]))
    assert len(sink.got) == 3
