"""How fast moto's S3 server takes a backup-sized object, alone: the floor under `s3://` backups here.

Writes 355 MiB (the zstd:1 backup of the 1 GB benchmark database) in 16 MiB parts through the
store's own writer, with nothing else running, and prints the seconds and the writer's CPU.

    .venv/bin/python benchmarks/backup/moto_ingest.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.backup.run import start_moto

MIB = 1 << 20


def main(size_mib: int = 355, port: int = 45123) -> None:
    moto = start_moto(port)
    try:
        os.environ["AIRFLOW_CONN_BENCH_S3"] = json.dumps({
            "conn_type": "aws", "login": "bench", "password": "bench",
            "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
        })
        from recovery_provider.hooks.store import BackupStore

        store = BackupStore("s3://bench_s3@bench/ingest")
        data = os.urandom(MIB)
        began, cpu = time.perf_counter(), time.process_time()
        size, _ = store.write_chunks(store.backup_path("db", "k") / "blob", (data for _ in range(size_mib)), 16 * MIB)
        print(f"moto ingest of {size // MIB} MiB via write_chunks: {time.perf_counter() - began:.1f}s "
              f"(writer CPU {time.process_time() - cpu:.1f}s)")
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
