"""pgBackRest physical backups and restores beside the logical pg_dump path, on one database.

Run from the repository root (PostgreSQL server binaries, pgbackrest, the dev virtualenv):

    .venv/bin/python benchmarks/backup/pgbackrest.py --size-gb 1.0 --json benchmarks/backup/pgbackrest-1gb-run2.json

In one run, on one throwaway cluster (tests/support/postgres.py, archive_mode on, archive_command
feeding pgBackRest through the provider's own hook) holding one table built like run.py's:

1. ceilings: ``pg_dump -Fc -Z0 > /dev/null`` (raw read) and ``pg_dump -Fc`` (gzip, today's path);
2. ``PgBackRestBackupOperator`` full backups into a file repository: lz4 and zst, process-max 1 and 2;
3. ``PgBackRestRestoreOperator`` restores (type immediate, not started) of the lz4 and zst backups,
   process-max 1 and 2.

MiB/s is database bytes (``pg_database_size``) per second for dumps, and cluster bytes (pgBackRest's
"backup size") per second for physical backups and restores; ratio is that size over the stored size.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
CONTEXT: dict[str, Any] = {"params": {}, "logical_date": dt.datetime.now(dt.timezone.utc), "run_id": "bench", "ti": None}


def build(cluster: Any, database: str, size_gb: float) -> int:
    """The same table as run.py's build(): md5 texts, numeric, timestamptz; compressible ~2x."""
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
    cluster.psql("CHECKPOINT")
    return int(cluster.scalar("SELECT pg_database_size(current_database())", dbname=database))


def pg_dump(cluster: Any, database: str, args: list[str], out: Path | None) -> tuple[float, int]:
    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": database}
    started = time.monotonic()
    with open(out or os.devnull, "wb") as sink:
        subprocess.run([str(cluster.bin("pg_dump")), "--no-password", "--format=custom", *args], env=env,
                       stdout=sink, check=True)
    seconds = time.monotonic() - started
    return seconds, (out.stat().st_size if out else 0)


def row(what: str, seconds: float, source_bytes: int, stored: int | None, ceiling: float) -> dict[str, Any]:
    return {"what": what, "seconds": round(seconds, 1), "mib_s": round(source_bytes / MB / seconds, 1),
            "stored_mib": round(stored / MB, 1) if stored else None,
            "ratio": round(source_bytes / stored, 2) if stored else None, "vs_ceiling": round(seconds / ceiling, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the database (default 1.0)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from tests.support.pgbackrest import archiving_cluster, owned_dir
    from tests.support.postgres import _os_user

    from recovery_provider.operators.pgbackrest import (
        PgBackRestBackupOperator,
        PgBackRestCheckOperator,
        PgBackRestRestoreOperator,
        PgBackRestStanzaCreateOperator,
    )

    user = _os_user()
    repo_dir, scratch = owned_dir("bench-repo-", user), owned_dir("bench-scr-", user)
    spool = Path(tempfile.mkdtemp(prefix="bench-dump-"))
    repository = f"file://{repo_dir}"
    rows: list[dict[str, Any]] = []
    try:
        with archiving_cluster(repository) as (cluster, stanza, _config):
            os.environ["AIRFLOW_CONN_BENCH_PG"] = json.dumps({"conn_type": "postgres", "host": "127.0.0.1",
                                                              "port": cluster.port, "login": cluster.superuser})
            started = time.monotonic()
            size = build(cluster, "bench", args.size_gb)
            print(f"==> built 'bench': {size / MB:.0f} MiB in {time.monotonic() - started:.0f}s", flush=True)
            common = {"stanza": stanza, "repository": repository, "conn_id": "bench_pg"}
            PgBackRestStanzaCreateOperator(task_id="stanza", **common).execute(CONTEXT)
            # let the archiver push the build's WAL first, so it does not compete with what is measured
            PgBackRestCheckOperator(task_id="check", archive_timeout="30m", **common).execute(CONTEXT)
            ceiling, _ = pg_dump(cluster, "bench", ["--compress=0"], None)
            rows.append(row("pg_dump -Fc -Z0 > /dev/null (raw-read ceiling)", ceiling, size, None, ceiling))
            dumped, dump_size = pg_dump(cluster, "bench", [], spool / "bench.pgcustom")
            rows.append(row("pg_dump -Fc (gzip, today's logical path)", dumped, size, dump_size, ceiling))
            labels: dict[str, str] = {}
            for compress in ("lz4", "zst"):
                for process_max in (1, 2):
                    out = PgBackRestBackupOperator(task_id="b", type="full", compress_type=compress,
                                                   process_max=process_max, **common).execute(CONTEXT)
                    labels[compress] = out["label"]
                    rows.append(row(f"pgBackRest full backup, {compress}, process-max {process_max}", out["seconds"],
                                    out["size_bytes"], out["repo_size_bytes"], ceiling))
                    print(f"    {rows[-1]}", flush=True)
            cluster_bytes = int(out["size_bytes"])
            for compress in ("lz4", "zst"):
                for process_max in (1, 2):
                    target = scratch / f"{compress}{process_max}"
                    res = PgBackRestRestoreOperator(task_id="r", stanza=stanza, repository=repository, data_dir=str(target),
                                                    type="immediate", backup_set=labels[compress], start=False,
                                                    process_max=process_max).execute(CONTEXT)
                    rows.append(row(f"pgBackRest restore, {compress} backup, process-max {process_max}",
                                    res["restore_seconds"], cluster_bytes, None, ceiling))
                    print(f"    {rows[-1]}", flush=True)
                    shutil.rmtree(target, ignore_errors=True)
    finally:
        for path in (repo_dir, scratch, spool):
            shutil.rmtree(path, ignore_errors=True)
    load = os.getloadavg()
    print(f"\ndatabase {size / MB:.0f} MiB; cluster (pgBackRest backup size) {cluster_bytes / MB:.0f} MiB; "
          f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min, {os.cpu_count()} cores)\n")
    print(f"{'what':<58} {'seconds':>8} {'MiB/s':>7} {'stored MiB':>11} {'ratio':>6} {'x ceiling':>9}")
    for r in rows:
        stored = f"{r['stored_mib']:.0f}" if r["stored_mib"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"{r['what']:<58} {r['seconds']:>8.1f} {r['mib_s']:>7.1f} {stored:>11} {ratio:>6} {r['vs_ceiling']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"database_bytes": size, "cluster_bytes": cluster_bytes, "load_average": load,
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
