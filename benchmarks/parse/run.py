"""Parse time of generated DAGs against an equivalent hand-written Airflow DAG, in one run.

    .venv/bin/python benchmarks/parse/run.py            # prints a table; RESULTS.md records one run

What is timed is what the dag-processor does for one DAG file: for the factory, reading the spec,
validating, compiling and rendering it (``load_dags`` on a folder holding that one spec); for the
baseline, executing a hand-written DAG file with the same graph and DAG settings: phases as
TaskGroups of 10 parallel tasks, one join task between phases, a start and an end task, the
`dry_run` param and an owner (every task copies the DAG's params, a real share of parse time). Each figure is the median
of several fresh processes, each timing one parse after its imports (as Airflow's dag-processor
parses a file in a new process).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="parse-bench-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")

PER_PHASE = 10

HAND_WRITTEN = '''
import datetime as dt
from airflow.sdk import DAG, Param, TaskGroup
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="hand_{n}", schedule=None, start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), catchup=False,
         params={{"dry_run": Param(False, type="boolean")}}, default_args={{"owner": "recovery"}}) as dag:
    previous = EmptyOperator(task_id="start")
    for p in range({phases}):
        with TaskGroup(group_id=f"phase{{p}}"):
            steps = [EmptyOperator(task_id=f"s{{p}}_{{i}}", trigger_rule="none_failed") for i in range({per_phase})]
            gate = EmptyOperator(task_id="gate", trigger_rule="all_done")
            previous >> steps
            steps >> gate
        previous = gate
    previous >> EmptyOperator(task_id="end", trigger_rule="all_done")
'''


def spec_text(n_steps: int) -> str:
    lines = [f"recovery: gen_{n_steps}", "defaults: {timeout: 5m}", "phases:"]
    for p in range(n_steps // PER_PHASE):
        lines.append(f"  - id: phase{p}")
        lines.append("    parallel:")
        lines += [f"      - {{id: s{p}_{i}, uses: empty, expected_duration: 1m}}" for i in range(PER_PHASE)]
    return "\n".join(lines) + "\n"


def fan_out_spec(targets: int) -> str:
    return (
        f"recovery: fan_{targets}\ndefaults: {{timeout: 5m}}\nphases:\n"
        "  - {id: discover, steps: [{id: list_targets, uses: bash, with: {bash_command: 'echo'}}]}\n"
        f"  - id: fan\n    for_each: {{over: {{step: list_targets}}, expected_targets: {targets}, max_parallel: 8}}\n"
        "    steps: [{id: work, uses: bash, with: {bash_command: 'echo {{ target }}'}}]\n"
    )


def median_seconds(action: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_factory(text: str, repeat: int) -> tuple[float, int]:
    from recovery_provider.loader import load_dags

    folder = Path(tempfile.mkdtemp(prefix="parse-bench-specs-"))
    (folder / "spec.yaml").write_text(text)
    found: dict[str, Any] = {}

    def load() -> None:
        namespace: dict[str, Any] = {}
        found.update(load_dags(str(folder / "loader.py"), folder, namespace))

    seconds = median_seconds(load, repeat)
    return seconds, len(next(iter(found.values())).tasks)


def time_hand_written(n_steps: int, repeat: int) -> tuple[float, int]:
    code = compile(HAND_WRITTEN.format(n=n_steps, phases=n_steps // PER_PHASE, per_phase=PER_PHASE), "hand.py", "exec")
    found: dict[str, Any] = {}

    def run() -> None:
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        found["dag"] = namespace["dag"]

    seconds = median_seconds(run, repeat)
    return seconds, len(found["dag"].tasks)


def one(kind: str, size: int) -> float:
    """One parse in this (fresh) process, after the imports a parsing process already has."""
    import airflow.sdk  # noqa: F401

    import recovery_provider.render.dag  # noqa: F401

    if kind == "hand":
        return time_hand_written(size, 1)[0]
    text = fan_out_spec(size) if kind == "fan" else spec_text(size)
    return time_factory(text, 1)[0]


def fresh(kind: str, size: int, repeat: int) -> float:
    import subprocess

    samples = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(size)], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        print(one(sys.argv[2], int(sys.argv[3])))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; median of fresh processes, one parse each\n")
    print(f"{'steps':>6} {'factory':>10} {'hand-written':>13} {'ratio':>6}")
    for n_steps in (10, 100, 1000):
        factory, hand = fresh("factory", n_steps, 5), fresh("hand", n_steps, 5)
        print(f"{n_steps:>6} {factory:>9.3f}s {hand:>12.3f}s {factory / hand:>5.2f}x")
    print()
    print(f"{'fan-out targets':>16} {'factory':>10}")
    for targets in (1, 10_000):
        print(f"{targets:>16} {fresh('fan', targets, 5):>9.4f}s")


if __name__ == "__main__":
    main()
