"""Backup throughput and worker memory: our streaming backup against the plain pg_dump ceiling.

Run from the repository root (PostgreSQL server binaries and the dev virtualenv needed):

    .venv/bin/python benchmarks/backup/run.py --size-gb 1.0 --databases 3 --db-size-gb 0.25

What it measures, all in one run on one throwaway cluster (tests/support/postgres.py):

1. ceiling: ``pg_dump -Fc`` of the big database to /dev/null (same compression);
2. PostgresBackupOperator to file:// and to s3:// (moto server in its own process on loopback),
   drill statistics off (pure streaming) and on (what a drillable backup costs);
3. several databases backed up one after another against all at once (one worker process each);
4. peak RSS of the worker process doing each backup (sampled every 50 ms), at two database sizes,
   to show that memory does not grow with the database.

Every backup runs in a fresh worker process (``run.py worker ...``) so RSS is that backup's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "provider"))

MB = 1024 * 1024


def worker(conn_id: str, database: str, location: str, drill: str, run_key: str) -> None:
    """Child process: one backup, result as JSON on the last stdout line."""
    import datetime as dt

    from recovery_provider.operators.postgres import PostgresBackupOperator

    op = PostgresBackupOperator(task_id="bench", conn_id=conn_id, database=database, location=location,
                                run_key=run_key, drill_stats=drill == "1")
    started, wall_start = time.monotonic(), time.time()
    manifest = op.execute({"params": {}, "logical_date": dt.datetime.now(dt.timezone.utc), "run_id": "bench", "ti": None})
    print(json.dumps({"seconds": time.monotonic() - started, "bytes": manifest["total_bytes"],
                      "start": wall_start, "end": time.time()}))


def run_worker(env: dict[str, str], database: str, location: str, drill: bool, run_key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "worker", "bench_pg", database, location, "1" if drill else "0", run_key],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def watch(procs: list[subprocess.Popen[str]]) -> tuple[float, list[dict[str, Any]], list[float]]:
    """Wait for workers, sampling each one's RSS; returns (wall seconds, results, peak RSS MiB each)."""
    import psutil

    started = time.monotonic()
    peaks = [0.0] * len(procs)
    handles = [psutil.Process(p.pid) for p in procs]
    while any(p.poll() is None for p in procs):
        for i, handle in enumerate(handles):
            with contextlib.suppress(psutil.Error):
                peaks[i] = max(peaks[i], handle.memory_info().rss / MB)
        time.sleep(0.05)
    wall = time.monotonic() - started
    results = []
    for p in procs:
        out = p.stdout.read() if p.stdout else ""
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({p.returncode}): {out[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return wall, results, peaks


def pg_dump_ceiling(cluster: Any, database: str) -> float:
    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": database}
    started = time.monotonic()
    with open(os.devnull, "wb") as sink:
        subprocess.run([str(cluster.bin("pg_dump")), "--no-password", "--format=custom"], env=env, stdout=sink, check=True)
    return time.monotonic() - started


def build(cluster: Any, database: str, size_gb: float) -> int:
    """A table of ~size_gb on disk from generate_series (md5 text: realistic, compressible ~2x)."""
    rows = int(size_gb * 1024**3 / 170)
    cluster.create_database(database)
    cluster.psql("CREATE TABLE events (id bigint, a text, b text, c text, n numeric, at timestamptz)", dbname=database)
    step = 1_000_000
    for start in range(1, rows + 1, step):
        cluster.psql(
            "INSERT INTO events SELECT g, md5(g::text), md5((g * 7)::text), md5((g * 13)::text), g / 7.0,"
            " timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(%s, %s) g",
            [start, min(rows, start + step - 1)], dbname=database)
    cluster.psql("VACUUM ANALYZE events", dbname=database)
    return int(cluster.scalar("SELECT pg_database_size(current_database())", dbname=database))


def start_moto(port: int) -> subprocess.Popen[bytes]:
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    for _ in range(100):
        try:
            client.create_bucket(Bucket="bench")
            return proc
        except Exception:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the big database (default 1.0)")
    parser.add_argument("--small-gb", type=float, default=0.1, help="second size for the memory comparison")
    parser.add_argument("--databases", type=int, default=3, help="databases for sequential vs parallel")
    parser.add_argument("--db-size-gb", type=float, default=0.25, help="size of each of those databases")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from tests.support.postgres import PostgresCluster, free_port

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    cluster = PostgresCluster("bench", settings={"shared_buffers": "256MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"})
    cluster.start()
    port = free_port()
    moto = start_moto(port)
    env = {**os.environ,
           "AIRFLOW_CONN_BENCH_PG": json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": cluster.port,
                                                 "login": "postgres", "schema": "postgres"}),
           "AIRFLOW_CONN_BENCH_S3": json.dumps({"conn_type": "aws", "login": "bench", "password": "bench",
                                                 "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}})}
    figures: dict[str, Any] = {"cores": os.cpu_count(), "pg_version": cluster.version}
    try:
        t0 = time.monotonic()
        size = build(cluster, "big", args.size_gb)
        small = build(cluster, "small", args.small_gb)
        figures.update(big_db_bytes=size, small_db_bytes=small, build_seconds=round(time.monotonic() - t0, 1))
        print(f"built big={size / MB:.0f} MiB small={small / MB:.0f} MiB in {figures['build_seconds']}s", flush=True)

        rows = []
        ceiling = pg_dump_ceiling(cluster, "big")
        rows.append(("pg_dump -Fc > /dev/null (ceiling)", ceiling, None, None))
        for label, location, drill in [
            ("backup -> file://", f"file://{work}/file", False),
            ("backup -> s3:// (moto)", "s3://bench_s3@bench/b", False),
            ("backup -> file:// + drill stats", f"file://{work}/file-drill", True),
        ]:
            _, results, peaks = watch([run_worker(env, "big", location, drill, "big")])
            wall = results[0]["seconds"]  # the backup itself, without interpreter start-up
            rows.append((label, wall, results[0]["bytes"], peaks[0]))
            print(f"{label}: {wall:.1f}s, {results[0]['bytes'] / MB:.0f} MiB stored, peak RSS {peaks[0]:.0f} MiB", flush=True)
        figures["big"] = [
            {"what": label, "seconds": round(sec, 2), "db_mib_per_s": round(size / MB / sec, 1),
             "overhead_vs_ceiling_pct": round((sec / ceiling - 1) * 100, 1), "stored_bytes": stored,
             "peak_rss_mib": None if rss is None else round(rss, 1)}
            for label, sec, stored, rss in rows
        ]
        _, _, small_peaks = watch([run_worker(env, "small", f"file://{work}/mem", False, "small")])
        figures["peak_rss_small_db_mib"] = round(small_peaks[0], 1)

        names = [f"db{i}" for i in range(args.databases)]
        for name in names:
            build(cluster, name, args.db_size_gb)
        seq = 0.0
        for name in names:
            _, results, _ = watch([run_worker(env, name, f"file://{work}/seq", False, "seq")])
            seq += results[0]["seconds"]
        _, results, par_peaks = watch([run_worker(env, name, f"file://{work}/par", False, "par") for name in names])
        # from the first backup's start to the last one's end (interpreter start-up excluded)
        par = max(r["end"] for r in results) - min(r["start"] for r in results)
        figures["several"] = {"databases": args.databases, "each_gb": args.db_size_gb,
                              "sequential_seconds": round(seq, 1), "parallel_seconds": round(par, 1),
                              "speedup": round(seq / par, 2), "peak_rss_each_mib": round(max(par_peaks), 1)}
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        moto.terminate()
        moto.wait()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(*sys.argv[2:7])
    else:
        main()
