"""The spec's estimate and the calibrated estimate against the measured run, on a real Airflow.

    .venv/bin/python benchmarks/estimate/run.py [--history 2] [--measure 2] [--shapes chain,levels,waves]
        [--keep DIR] [--json out.json]
    .venv/bin/python benchmarks/estimate/run.py --from DIR      # compare again, no Airflow

Reuses the makespan benchmark's shapes and harness (benchmarks/makespan/run.py: a 20-step chain,
three levels of 5 s steps, 100 targets in waves of 10 with a 5 s pause and a health check) on the
scheduler tier's Airflow (LocalExecutor, PostgreSQL metadata) with the run ledger in DIR/ledger.
Each shape runs `--history` times to build the ledger; the ledger is then copied aside
(DIR/history: only those runs calibrate), and each shape runs `--measure` more times, measured as
the makespan benchmark does (the DAG run's end - start). Then, for each shape, `recovery plan SPEC
--calibrate --ledger DIR/history --json` gives both figures and the table prints
estimate vs calibrated estimate vs actual (median of the measured runs).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.makespan.run import SHAPES, Shape, run_seconds  # noqa: E402  (the makespan harness)

RECOVERY = Path(sys.executable).with_name("recovery")
_SLEEP = re.compile(r'(bash_command: "[^"]*sleep (\d+)"\})')


def with_durations(spec: str) -> str:
    """The makespan spec with each step's expected_duration (its sleep): the spec's own estimate."""
    return _SLEEP.sub(r"\1, expected_duration: \2s", spec)


def _wait_for_records(ledger: Path, expected: dict[str, int], timeout: float = 60) -> None:
    """The scheduler writes a run's record as it closes the run: wait until every run is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(list((ledger / dag_id).glob("*.json"))) >= n for dag_id, n in expected.items()):
            return
        time.sleep(0.5)
    raise SystemExit(f"the ledger at {ledger} did not get every run's record: {expected}")


def measure(shapes: list[Shape], history: int, runs: int, out: Path) -> None:
    """Build the ledger (history runs), copy it aside, then measure `runs` more runs per shape."""
    from tests.support.airflow_cluster import running_cluster

    dags = out / "dags"
    (dags / "specs").mkdir(parents=True)
    shutil.copyfile(ROOT / "dags" / "recovery_dags.py", dags / "recovery_dags.py")
    for shape in shapes:
        (dags / "specs" / f"mk_{shape.name}.yaml").write_text(with_durations(shape.spec))
    ledger = out / "ledger"
    actual: dict[str, list[float]] = {s.name: [] for s in shapes}
    with running_cluster(dags, "estimate-meta", config={"recovery": {"ledger_location": str(ledger)}}) as cluster:
        for shape in shapes:
            cluster.api.wait_for_dag(f"mk_{shape.name}", timeout=180)
            cluster.api.unpause(f"mk_{shape.name}")
        for r in range(history):
            for shape in shapes:
                seconds = run_seconds(cluster, f"mk_{shape.name}", timeout=shape.work_seconds * 6 + 120)
                print(f"history {r + 1} mk_{shape.name}: {seconds:.1f} s", flush=True)
        _wait_for_records(ledger, {f"mk_{s.name}": history for s in shapes})
        shutil.copytree(ledger, out / "history")
        for r in range(runs):
            for shape in shapes:
                seconds = run_seconds(cluster, f"mk_{shape.name}", timeout=shape.work_seconds * 6 + 120)
                actual[shape.name].append(seconds)
                print(f"measured {r + 1} mk_{shape.name}: {seconds:.1f} s", flush=True)
    (out / "actual.json").write_text(json.dumps(actual, indent=2) + "\n")


def compare(out: Path, names: list[str]) -> dict[str, Any]:
    actual: dict[str, list[float]] = json.loads((out / "actual.json").read_text())
    summary: dict[str, Any] = {}
    print(f"\n{'shape':8} {'estimate s':>10} {'calibrated s':>12} {'actual s':>9} {'estimate err':>12} {'calibrated err':>14}")
    for name in names:
        spec = out / "dags" / "specs" / f"mk_{name}.yaml"
        done = subprocess.run([str(RECOVERY), "plan", str(spec), "--calibrate", "--ledger", str(out / "history"), "--json"],
                              capture_output=True, text=True, check=True)
        found = json.loads(done.stdout)
        estimate = found["worst"]["planned_seconds"]
        calibrated = found["calibrated"]["worst"]["planned_seconds"]
        real = statistics.median(actual[name])
        summary[name] = {"estimate_s": estimate, "calibrated_s": calibrated, "actual_s": actual[name], "median_actual_s": real,
                         "estimate_error": estimate / real - 1, "calibrated_error": calibrated / real - 1,
                         "calibration": found["calibrated"]["calibration"]}
        print(f"{name:8} {estimate:10.1f} {calibrated:12.1f} {real:9.1f} {estimate / real - 1:+12.1%} {calibrated / real - 1:+14.1%}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--history", type=int, default=2, help="runs per shape that build the ledger")
    parser.add_argument("--measure", type=int, default=2, help="runs per shape measured afterwards")
    parser.add_argument("--shapes", default="chain,levels,waves")
    parser.add_argument("--keep", type=Path, help="keep the dags, ledgers and actuals in this folder")
    parser.add_argument("--from", dest="source", type=Path, help="compare a kept folder again, without Airflow")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop Airflow on the way out
    names = args.shapes.split(",")
    if args.source is not None:
        out = args.source
    else:
        out = args.keep or Path(tempfile.mkdtemp(prefix="estimate-bench-"))
        out.mkdir(parents=True, exist_ok=True)
        measure([SHAPES[n] for n in names], args.history, args.measure, out)
        print(f"dags, ledgers and actuals kept in {out}", flush=True)
    summary = compare(out, names)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
