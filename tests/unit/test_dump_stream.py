"""How pg_dump's output is buffered on its way to storage (the speed of a backup rests on these)."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest

from recovery_provider.hooks.dump import BackupRequest
from recovery_provider.hooks.dump_stream import PIPE_BYTES, _grow_pipe
from recovery_provider.hooks.pg import PgTarget
from recovery_provider.hooks.store import S3_BLOCK, BackupStore

pytestmark = pytest.mark.unit


def _request(location: str, **options: object) -> BackupRequest:
    target = PgTarget(conn_id="pg", host="127.0.0.1", port=5432, user="postgres", dbname="shop")
    return BackupRequest(target=target, store=BackupStore(location), run_key="k", **options)  # type: ignore[arg-type]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are a Linux fcntl")
def test_pg_dumps_pipe_is_grown_so_it_can_write_while_a_chunk_is_compressed() -> None:
    read_end, write_end = os.pipe()
    try:
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) < PIPE_BYTES
        with os.fdopen(read_end, "rb", closefd=False) as stream:
            _grow_pipe(stream)
        assert fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ) >= PIPE_BYTES
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_reader_gets_one_upload_part_ahead_only_when_storage_is_remote(tmp_path: Path) -> None:
    local = _request(f"file://{tmp_path}")
    remote = _request("s3://backups_conn@bucket/prefix")
    assert local.queue_depth == 8
    assert remote.queue_depth == 8 + S3_BLOCK // remote.chunk_size
    assert _request("s3://backups_conn@bucket/prefix", queue_chunks=3).queue_depth == 3
    assert _request(f"file://{tmp_path}", queue_chunks=0).queue_depth == 1
