"""A/B of the backup (or, with --restore, restore) operator between two checkouts, in alternating pairs.

run.py's three rounds cannot tell 1.10x from 1.20x on a shared 2-core machine (its raw reads vary
by 15 % within minutes). This alternates A and B backups of the same database to file:// (or S3 with
--s3-endpoint, credentials as for run.py), each against the raw reads right before and after it,
and prints the median ratio of each side. Run from the repository root:

    .venv/bin/python benchmarks/backup/ab.py /path/to/checkout-a /path/to/checkout-b --pairs 6

Each backup runs in a worker process of its own checkout (run.py there), so A and B may differ in
any provider code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # benchmarks/backup/run.py: cluster, raw read, worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="checkout A")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--restore", action="store_true", help="restores of one backup (made by A), not backups")
    parser.add_argument("--s3", action="store_true", help="back up to S3 (moto on loopback) instead of file://")
    parser.add_argument("--s3-endpoint", help="back up to this S3 endpoint instead (credentials: see run.py)")
    parser.add_argument("--s3-bucket", default="bench")
    args = parser.parse_args()
    sys.path.insert(0, str(run.ROOT))
    from tests.support.postgres import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    cluster = PostgresCluster("ab", settings={"shared_buffers": "256MB", "max_wal_size": "4GB"}).start()
    moto, remote = None, None
    env = run.connections(cluster, None)
    location = f"file://{work}/store"
    try:
        if args.s3 or args.s3_endpoint:
            url, _, keys, moto = run.s3_endpoint(args.s3_endpoint, args.s3_bucket)
            env = run.connections(cluster, (url, keys))
            remote = (url, keys, args.s3_bucket, f"recovery-bench-ab-{os.getpid()}")
            location = f"s3://bench_s3@{args.s3_bucket}/{remote[3]}"
        run.build(cluster, "big", args.size_gb)
        ratios: dict[str, list[float]] = {"A": [], "B": []}
        if args.restore:
            run.one(env, "backup", checkout=args.a.resolve(), database="big", location=location, run_key="base",
                    drill_stats=False)
        before = run.raw_read(cluster, "big")
        for n in range(args.pairs):
            for side, checkout in (("A", args.a), ("B", args.b)) if n % 2 == 0 else (("B", args.b), ("A", args.a)):
                if args.restore:
                    result = run.one(env, "restore", checkout=checkout.resolve(), database="big", location=location,
                                     run_key="base", target_database=f"r_{side}{n}")
                    cluster.psql(f'DROP DATABASE "r_{side}{n}"')
                else:
                    result = run.one(env, "backup", checkout=checkout.resolve(), database="big", location=location,
                                     run_key=f"{side}{n}", drill_stats=False)
                after = run.raw_read(cluster, "big")
                ratios[side].append(result["seconds"] / ((before + after) / 2))
                run.say(f"{side} {result['seconds']:.2f}s, raw read {before:.2f}/{after:.2f}: {ratios[side][-1]:.2f}x, "
                        f"worker CPU {result['cpu_self']}s")
                before = after
                if location.startswith("file://") and not args.restore:
                    shutil.rmtree(work / "store", ignore_errors=True)
        for side, checkout in (("A", args.a), ("B", args.b)):
            run.say(f"{side} ({checkout}): median {statistics.median(ratios[side]):.3f}x of the raw read "
                    f"({' '.join(f'{r:.2f}' for r in ratios[side])})")
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
        elif remote is not None:
            run.remove_prefix(*remote)
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
