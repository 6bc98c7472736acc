"""Parse time of generated DAGs against an equivalent hand-written Airflow DAG, in one run.

    .venv/bin/python benchmarks/parse/run.py            # prints a table; RESULTS.md records one run

What is timed is what the dag-processor does for one DAG file: for the factory, reading the spec,
validating, compiling and rendering it (``load_dags`` on a folder holding that one spec); for the
baseline, executing a hand-written DAG file with the same graph and settings: phases as
TaskGroups of 10 parallel tasks with the spec's default retries, backoff and timeout, a policy
gate (PythonOperator) between phases, a start and an end check, the `dry_run` param and an owner
(every task copies the DAG's params, a real share of parse time). Each figure is the median
of 7 fresh processes, each timing one parse after its imports (as Airflow's dag-processor
parses a file in a new process); the kinds take turns so that load changes hit them alike, and
bytecode is written and used as in a deployment.
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

# What a careful engineer writes by hand for the same spec: the defaults the spec applies to every
# step (retries 2, 30 s delay, exponential backoff, 10 m cap, the 5 m timeout), a gate per phase
# that applies the failure policy from the task states, a start and an end check.
HAND_WRITTEN = '''
import datetime as dt
from airflow.sdk import DAG, Param, TaskGroup
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator

def check(**context):
    """Stands in for the hand-written policy code: the parse never runs it."""

STEP = dict(retries=2, retry_delay=dt.timedelta(seconds=30), retry_exponential_backoff=2.0,
            max_retry_delay=dt.timedelta(minutes=10), execution_timeout=dt.timedelta(minutes=5))

with DAG(dag_id="hand_{n}", schedule=None, start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), catchup=False,
         params={{"dry_run": Param(False, type="boolean")}}, default_args={{"owner": "recovery"}}) as dag:
    previous = PythonOperator(task_id="start", python_callable=check, retries=0)
    for p in range({phases}):
        with TaskGroup(group_id=f"phase{{p}}"):
            steps = [EmptyOperator(task_id=f"s{{p}}_{{i}}", trigger_rule="none_failed", **STEP) for i in range({per_phase})]
            gate = PythonOperator(task_id="gate", python_callable=check, trigger_rule="all_done", retries=0,
                                  op_kwargs={{"phase_id": f"phase{{p}}", "policy": {{"mode": "fail_fast"}},
                                              "work_tasks": [f"phase{{p}}.{{s.task_id}}" for s in steps]}})
            previous >> steps
            steps >> gate
        previous = gate
    previous >> PythonOperator(task_id="end", python_callable=check, trigger_rule="all_done", retries=0)
'''


# The first baseline of this benchmark, kept for comparison: the same graph with EmptyOperators
# only (no retries, backoff or timeouts on the steps, no policy code in the gates).
BARE = '''
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


def time_hand_written(n_steps: int, repeat: int, template: str = HAND_WRITTEN) -> tuple[float, int]:
    code = compile(template.format(n=n_steps, phases=n_steps // PER_PHASE, per_phase=PER_PHASE), "hand.py", "exec")
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
    if kind == "bare":
        return time_hand_written(size, 1, BARE)[0]
    text = fan_out_spec(size) if kind == "fan" else spec_text(size)
    return time_factory(text, 1)[0]


def _child_env() -> dict[str, str]:
    # An installed provider has bytecode: let the children write and use .pyc like a deployment
    # (with PYTHONDONTWRITEBYTECODE every fresh process would compile our modules from source).
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _one_child(kind: str, size: int) -> float:
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--one", kind, str(size)], capture_output=True, text=True,
                         check=True, env=_child_env())
    return float(out.stdout.strip().splitlines()[-1])


def fresh(kinds: tuple[str, ...], size: int, repeat: int) -> dict[str, float]:
    """Median per kind; the kinds take turns in each round, so a load change hits them alike."""
    for kind in kinds:  # warm-up: writes the bytecode, not counted
        _one_child(kind, size)
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(repeat):
        for kind in kinds:
            samples[kind].append(_one_child(kind, size))
    return {kind: statistics.median(values) for kind, values in samples.items()}


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        print(one(sys.argv[2], int(sys.argv[3])))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; median of fresh processes, one parse each\n")
    print(f"{'steps':>6} {'factory':>10} {'hand-written':>13} {'ratio':>6} {'bare baseline':>14} {'ratio':>6}")
    for n_steps in (10, 100, 1000):
        t = fresh(("factory", "hand", "bare"), n_steps, 7)
        factory, hand, bare = t["factory"], t["hand"], t["bare"]
        print(f"{n_steps:>6} {factory:>9.3f}s {hand:>12.3f}s {factory / hand:>5.2f}x {bare:>13.3f}s {factory / bare:>5.2f}x")
    print()
    print(f"{'fan-out targets':>16} {'factory':>10}")
    for targets in (1, 10_000):
        print(f"{targets:>16} {fresh(('fan',), targets, 7)['fan']:>9.4f}s")


if __name__ == "__main__":
    main()
