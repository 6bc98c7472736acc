"""Backup and restore throughput and worker memory, against the database's raw-read ceiling.

Run from the repository root (PostgreSQL server binaries and the dev virtualenv needed):

    .venv/bin/python benchmarks/backup/run.py --size-gb 1.0 --tables-gb 0.4 --json benchmarks/backup/results-1gb.json

What it measures, all in one run on one throwaway cluster (tests/support/postgres.py):

1. the ceiling: ``pg_dump -Fc --compress=0 > /dev/null`` of the big database (reading it, nothing else);
2. PostgresBackupOperator the way it backed up before zstd (pg_dump's own gzip), and with zstd
   (the default) to file:// and s3:// (moto's server in its own process on loopback, or the S3 endpoint
   given with ``--s3-endpoint``, e.g. a real object store, credentials from the environment), drill
   statistics off and on, and zstd level 3 for the choice of the default level;
3. PostgresRestoreOperator from the gzip backup and from the zstd backups (streamed, jobs 1);
4. peak RSS of the worker process doing each backup or restore (sampled every 50 ms), at two
   database sizes, to show that memory does not grow with the database;
5. a database of many tables with indexes: the zstd single stream (restored streaming, and with
   pg_restore -j from a local copy) against directory format with ``pg_dump -j`` / ``pg_restore -j``;
6. several databases backed up one after another against all at once (one worker process each).

Every backup and restore runs in a fresh worker process (``run.py worker ...``) so its RSS is its
own; seconds are measured inside the worker (interpreter and Airflow import start-up excluded).
The last two lines are for scripts: ``file:// backup vs raw read: 1.08x`` and the same for s3://.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
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


def worker(kind: str, spec_json: str) -> None:
    """Child process: one backup or restore, result as JSON on the last stdout line."""
    import datetime as dt

    # what a task runner has done before execute(): Airflow's plugins and lineage collector are
    # loaded (the first ObjectStoragePath.open loads them: 1-2 s) and the provider's modules imported
    from airflow.sdk.lineage import get_hook_lineage_collector

    import recovery_provider.hooks.dump
    import recovery_provider.hooks.restore  # noqa: F401
    from recovery_provider.operators.postgres import PostgresBackupOperator, PostgresRestoreOperator

    get_hook_lineage_collector()
    waits = _time_the_writer() if kind == "backup" else {}
    spec = json.loads(spec_json)
    op: Any = (PostgresBackupOperator if kind == "backup" else PostgresRestoreOperator)(
        task_id="bench", conn_id="bench_pg", **spec)
    import psutil

    times = psutil.Process().cpu_times()
    cpu0 = times.user + times.system
    started, wall_start = time.monotonic(), time.time()
    result = op.execute({"params": {}, "logical_date": dt.datetime.now(dt.timezone.utc), "run_id": "bench", "ti": None})
    cpu = psutil.Process().cpu_times()  # the worker's own CPU, and its pg_dump's / pg_restore's
    print(json.dumps({"seconds": time.monotonic() - started, "bytes": result.get("total_bytes"),
                      "start": wall_start, "end": time.time(), "cpu_self": round(cpu.user + cpu.system - cpu0, 2),
                      "cpu_children": round(cpu.children_user + cpu.children_system, 2),
                      **{k: round(v, 2) for k, v in waits.items()}}))


def _time_the_writer() -> dict[str, float]:
    """Where a backup's writer waits: inside write() (a local write, or an S3 part's upload) and in
    close() (the last part and, on S3, CompleteMultipartUpload). Filled as the backup runs."""
    from recovery_provider.hooks.store import BackupStore

    waits = {"writer_blocked_s": 0.0, "close_s": 0.0}
    open_write = BackupStore.open_write

    class Timed:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __enter__(self) -> Timed:
            self.inner.__enter__()
            return self

        def __exit__(self, *exc: Any) -> Any:
            began = time.monotonic()
            try:
                return self.inner.__exit__(*exc)
            finally:
                waits["close_s"] += time.monotonic() - began

        def write(self, data: bytes) -> Any:
            began = time.monotonic()
            try:
                return self.inner.write(data)
            finally:
                waits["writer_blocked_s"] += time.monotonic() - began

    BackupStore.open_write = lambda self, path, block_size: Timed(open_write(self, path, block_size))  # type: ignore[method-assign]
    return waits


def settle() -> None:
    """Write every dirty page out before a measurement starts: the kernel writes a finished backup
    (or moto's spooled parts) back later, and that work would land on whichever measurement runs then."""
    os.sync()


def spawn(env: dict[str, str], kind: str, *, checkout: Path = ROOT, **spec: Any) -> subprocess.Popen[str]:
    """A worker running ``checkout``'s code (its own benchmarks/backup/run.py): ab.py compares two."""
    settle()
    worker = checkout / "benchmarks" / "backup" / "run.py"
    return subprocess.Popen([sys.executable, str(worker), "worker", kind, json.dumps(spec)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def watch(procs: list[subprocess.Popen[str]]) -> tuple[list[dict[str, Any]], list[float]]:
    """Wait for workers, sampling each one's RSS; returns (results, peak RSS MiB each)."""
    import psutil

    peaks = [0.0] * len(procs)
    handles = [psutil.Process(p.pid) for p in procs]
    while any(p.poll() is None for p in procs):
        for i, handle in enumerate(handles):
            with contextlib.suppress(psutil.Error):
                peaks[i] = max(peaks[i], handle.memory_info().rss / MB)
        time.sleep(0.05)
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({p.returncode}): {out[-1000:]}{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results, peaks


def one(env: dict[str, str], kind: str, *, checkout: Path = ROOT, **spec: Any) -> dict[str, Any]:
    results, peaks = watch([spawn(env, kind, checkout=checkout, **spec)])
    return {**results[0], "peak_rss_mib": round(peaks[0], 1)}


def raw_read(cluster: Any, database: str) -> float:
    """The ceiling: pg_dump reading the database into /dev/null, no compression."""
    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": database}
    settle()
    started = time.monotonic()
    with open(os.devnull, "wb") as sink:
        subprocess.run([str(cluster.bin("pg_dump")), "--no-password", "--format=custom", "--compress=0"],
                       env=env, stdout=sink, check=True)
    return time.monotonic() - started


def build(cluster: Any, database: str, size_gb: float, table: str = "events") -> int:
    """A table of ~size_gb on disk from generate_series (md5 text: realistic, compressible ~2x)."""
    rows = int(size_gb * 1024**3 / 170)
    if table == "events":
        cluster.create_database(database)
    cluster.psql(f"CREATE TABLE {table} (id bigint, a text, b text, c text, n numeric, at timestamptz)", dbname=database)
    step = 1_000_000
    for start in range(1, rows + 1, step):
        cluster.psql(
            f"INSERT INTO {table} SELECT g, md5(g::text), md5((g * 7)::text), md5((g * 13)::text), g / 7.0,"
            " timestamptz '2024-01-01' + g * interval '1 second' FROM generate_series(%s, %s) g",
            [start, min(rows, start + step - 1)], dbname=database)
    cluster.psql(f"VACUUM ANALYZE {table}", dbname=database)
    return int(cluster.scalar("SELECT pg_database_size(current_database())", dbname=database))


def build_many(cluster: Any, database: str, size_gb: float, tables: int) -> int:
    """``tables`` tables of equal size, each with a primary key and a secondary index (restore builds them)."""
    cluster.create_database(database)
    for i in range(tables):
        build(cluster, database, size_gb / tables, table=f"t{i:03d}")
        cluster.psql(f"ALTER TABLE t{i:03d} ADD PRIMARY KEY (id)", dbname=database)
        cluster.psql(f"CREATE INDEX t{i:03d}_a ON t{i:03d} (a)", dbname=database)
    return int(cluster.scalar("SELECT pg_database_size(current_database())", dbname=database))


def start_moto(port: int, bucket: str) -> subprocess.Popen[bytes]:
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    for _ in range(100):
        try:
            client.create_bucket(Bucket=bucket)
            return proc
        except Exception:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def s3_endpoint(url: str | None, bucket: str) -> tuple[str, str, dict[str, str], subprocess.Popen[bytes] | None]:
    """(endpoint URL, label, credentials, moto process): moto on loopback, or the endpoint given, whose
    credentials come from BENCH_S3_ACCESS_KEY / BENCH_S3_SECRET_KEY (never the command line)."""
    if url is None:
        from tests.support.postgres import free_port

        port = free_port()
        return f"http://127.0.0.1:{port}", "moto", {"login": "bench", "password": "bench"}, start_moto(port, bucket)
    try:
        keys = {"login": os.environ["BENCH_S3_ACCESS_KEY"], "password": os.environ["BENCH_S3_SECRET_KEY"]}
    except KeyError as missing:
        raise SystemExit(f"--s3-endpoint needs {missing} in the environment (the bucket '{bucket}' must exist)") from None
    return url, url, keys, None


def remove_prefix(url: str, keys: dict[str, str], bucket: str, prefix: str) -> None:
    """Delete what the benchmark wrote to an endpoint that outlives it."""
    import boto3

    client = boto3.client("s3", endpoint_url=url, aws_access_key_id=keys["login"], aws_secret_access_key=keys["password"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def connections(cluster: Any, s3: tuple[str, dict[str, str]] | None) -> dict[str, str]:
    """The environment of the workers: the Airflow connections bench_pg and, given (url, keys), bench_s3."""
    env = {**os.environ, "AIRFLOW_CONN_BENCH_PG": json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": cluster.port, "login": "postgres", "schema": "postgres"})}
    if s3 is not None:
        url, keys = s3
        env["AIRFLOW_CONN_BENCH_S3"] = json.dumps(
            {"conn_type": "aws", **keys, "extra": {"endpoint_url": url, "region_name": "us-east-1"}})
    return env


def say(text: str) -> None:
    print(text, flush=True)


def big_database(env: dict[str, str], cluster: Any, work: Path, size: int, rounds: int, s3: tuple[str, str]) -> dict[str, Any]:
    """Backups and restores of the big database, each against raw reads taken right before and after.

    Why pairs and rounds: the machine is shared, its load changes within a minute; a ratio to a
    raw read taken next to the backup (mean of the one before and the one after), median over
    rounds, measures the backup rather than the neighbours.
    """
    rows: list[dict[str, Any]] = []
    reads: list[float] = []
    s3_location, s3_label = s3

    def read() -> float:
        reads.append(raw_read(cluster, "big"))
        say(f"raw read: {reads[-1]:.1f}s")
        return reads[-1]

    def backup(label: str, location: str, run_key: str, **options: Any) -> dict[str, Any]:
        result = one(env, "backup", database="big", location=location, run_key=run_key, **{"drill_stats": False, **options})
        say(f"{label}: {result['seconds']:.1f}s, {result['bytes'] / MB:.0f} MiB, peak RSS {result['peak_rss_mib']:.0f} MiB, "
            f"worker CPU {result['cpu_self']:.1f}s + pg_dump {result['cpu_children']:.1f}s; writer blocked "
            f"{result['writer_blocked_s']:.1f}s in writes, {result['close_s']:.1f}s in close")
        return {"what": label, "location": location, **result}

    paired: dict[str, list[float]] = {"file": [], "s3": []}
    before = read()
    for n in range(rounds):
        for kind, label, location in [("file", "backup zstd:1 -> file://", f"file://{work}/zstd"),
                                      ("s3", f"backup zstd:1 -> s3:// ({s3_label})", s3_location)]:
            row = backup(label, location, f"big{n}")
            after = read()
            row["raw_read_around_seconds"] = round((before + after) / 2, 2)
            paired[kind].append(row["seconds"] / row["raw_read_around_seconds"])
            rows.append(row)
            before = after
    ceiling = statistics.median(reads)
    rows.append(backup("backup gzip in pg_dump (before) -> file://", f"file://{work}/gzip", "big", compression="pg_dump"))
    rows.append(backup("backup zstd:1 -> file:// + drill stats", f"file://{work}/zstd-drill", "big", drill_stats=True))
    rows.append(backup("backup zstd:3 -> file://", f"file://{work}/zstd3", "big", compression="zstd:3"))
    for label, location in [("restore of the gzip backup (before)", f"file://{work}/gzip"),
                            ("restore of the zstd:1 backup from file://", f"file://{work}/zstd"),
                            (f"restore of the zstd:1 backup from s3:// ({s3_label})", s3_location)]:
        target = f"r_{len(rows)}"
        result = one(env, "restore", database="big", location=location, run_key="big" if "gzip" in label else "big0",
                     target_database=target)
        cluster.psql(f'DROP DATABASE "{target}"')
        rows.append({"what": label, **result})
        say(f"{label}: {result['seconds']:.1f}s, peak RSS {result['peak_rss_mib']:.0f} MiB")
    for row in rows:
        row["seconds"] = round(row["seconds"], 2)
        row["vs_median_raw_read"] = round(row["seconds"] / ceiling, 3)
        row["stored_bytes"] = row.pop("bytes", None)
        for key in ("start", "end"):
            row.pop(key, None)
    return {"db_bytes": size, "raw_read_seconds": [round(r, 2) for r in reads], "raw_read_median_seconds": round(ceiling, 2),
            "file_vs_raw_read": round(statistics.median(paired["file"]), 3),
            "s3_vs_raw_read": round(statistics.median(paired["s3"]), 3), "rows": rows}


def many_tables(env: dict[str, str], cluster: Any, work: Path, size_gb: float, tables: int, jobs: int) -> dict[str, Any]:
    """Single zstd stream against directory format with parallel jobs, backup AND restore."""
    size = build_many(cluster, "many", size_gb, tables)
    say(f"built many={size / MB:.0f} MiB in {tables} tables")
    variants = [  # label, backup options, restore jobs
        ("custom zstd:1, restore streamed", {}, 1),
        (f"custom zstd:1, restore -j{jobs} (staged decompressed)", {}, jobs),
        (f"directory -j{jobs} zstd:1, restore -j{jobs}", {"format": "directory", "jobs": jobs}, jobs),
        (f"directory -j{jobs} gzip in pg_dump (before), restore -j{jobs}",
         {"format": "directory", "jobs": jobs, "compression": "pg_dump"}, jobs),
    ]
    rows = []
    done: dict[str, dict[str, Any]] = {}
    for i, (label, options, restore_jobs) in enumerate(variants):
        key = json.dumps(options, sort_keys=True)
        location = f"file://{work}/many{len(done)}" if key not in done else done[key]["location"]
        if key not in done:
            done[key] = {"location": location, **one(env, "backup", database="many", location=location, run_key="m",
                                                     drill_stats=False, **options)}
        backed = done[key]
        restored = one(env, "restore", database="many", location=location, run_key="m", target_database=f"m_{i}",
                       jobs=restore_jobs)
        cluster.psql(f'DROP DATABASE "m_{i}"')
        rows.append({"what": label, "backup_seconds": round(backed["seconds"], 2), "stored_bytes": backed["bytes"],
                     "restore_seconds": round(restored["seconds"], 2),
                     "peak_rss_mib": max(backed["peak_rss_mib"], restored["peak_rss_mib"])})
        say(f"many tables, {label}: backup {backed['seconds']:.1f}s, restore {restored['seconds']:.1f}s, "
            f"{backed['bytes'] / MB:.0f} MiB")
    return {"db_bytes": size, "tables": tables, "jobs": jobs, "raw_read_seconds": round(raw_read(cluster, "many"), 2),
            "rows": rows}


def several(env: dict[str, str], cluster: Any, work: Path, count: int, each_gb: float) -> dict[str, Any]:
    names = [f"db{i}" for i in range(count)]
    for name in names:
        build(cluster, name, each_gb)
    seq = sum(one(env, "backup", database=n, location=f"file://{work}/seq", run_key="seq", drill_stats=False)["seconds"]
              for n in names)
    results, peaks = watch([spawn(env, "backup", database=n, location=f"file://{work}/par", run_key="par",
                                  drill_stats=False) for n in names])
    par = max(r["end"] for r in results) - min(r["start"] for r in results)  # first start to last end
    return {"databases": count, "each_gb": each_gb, "sequential_seconds": round(seq, 1),
            "parallel_seconds": round(par, 1), "speedup": round(seq / par, 2), "peak_rss_each_mib": round(max(peaks), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the big database (default 1.0)")
    parser.add_argument("--small-gb", type=float, default=0.1, help="second size for the memory comparison")
    parser.add_argument("--tables-gb", type=float, default=0.4, help="size of the many-tables database (0: skip)")
    parser.add_argument("--tables", type=int, default=40, help="tables in the many-tables database")
    parser.add_argument("--jobs", type=int, default=2, help="pg_dump/pg_restore jobs for the directory format")
    parser.add_argument("--databases", type=int, default=3, help="databases for sequential vs parallel (0: skip)")
    parser.add_argument("--db-size-gb", type=float, default=0.25, help="size of each of those databases")
    parser.add_argument("--rounds", type=int, default=3, help="backups to file:// and s3:// between raw reads")
    parser.add_argument("--s3-endpoint", help="an S3 endpoint URL to back up to instead of moto on loopback")
    parser.add_argument("--s3-bucket", default="bench", help="its bucket (must exist; moto's is created)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from tests.support.postgres import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    cluster = PostgresCluster("bench", settings={"shared_buffers": "256MB", "max_wal_size": "4GB",
                                                 "checkpoint_timeout": "30min", "maintenance_work_mem": "256MB"})
    cluster.start()
    url, s3_label, keys, moto = s3_endpoint(args.s3_endpoint, args.s3_bucket)
    prefix = f"recovery-bench-{os.getpid()}-{int(time.time())}"
    env = connections(cluster, (url, keys))
    figures: dict[str, Any] = {"cores": os.cpu_count(), "pg_version": cluster.version, "argv": sys.argv[1:], "s3": s3_label,
                               "load_average_start": os.getloadavg()}
    try:
        t0 = time.monotonic()
        size = build(cluster, "big", args.size_gb)
        small = build(cluster, "small", args.small_gb)
        figures["build_seconds"] = round(time.monotonic() - t0, 1)
        say(f"built big={size / MB:.0f} MiB small={small / MB:.0f} MiB in {figures['build_seconds']}s")
        figures["big"] = big_database(env, cluster, work, size, args.rounds, (f"s3://bench_s3@{args.s3_bucket}/{prefix}", s3_label))
        mem = {"small_db_bytes": small}
        mem["backup_peak_rss_mib"] = one(env, "backup", database="small", location=f"file://{work}/mem", run_key="s",
                                           drill_stats=False)["peak_rss_mib"]
        mem["restore_peak_rss_mib"] = one(env, "restore", database="small", location=f"file://{work}/mem", run_key="s",
                                          target_database="small_r")["peak_rss_mib"]
        figures["small"] = mem
        if args.tables_gb > 0:
            figures["many_tables"] = many_tables(env, cluster, work, args.tables_gb, args.tables, args.jobs)
        if args.databases > 0:
            figures["several"] = several(env, cluster, work, args.databases, args.db_size_gb)
        figures["load_average_end"] = os.getloadavg()
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        say(f"file:// backup vs raw read: {figures['big']['file_vs_raw_read']:.2f}x")
        say(f"s3:// backup vs raw read: {figures['big']['s3_vs_raw_read']:.2f}x")
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
        else:
            remove_prefix(url, keys, args.s3_bucket, prefix)
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
