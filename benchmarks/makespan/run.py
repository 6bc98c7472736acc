"""Makespan of generated DAGs against the same graphs written by hand, on a real Airflow.

    .venv/bin/python benchmarks/makespan/run.py [--rounds 3] [--shapes levels,chain,waves] [--json out.json]

Starts the scheduler tier's Airflow (LocalExecutor, PostgreSQL metadata, tests/support), puts the
factory's loader file with three specs and three hand-written DAGs (same operators, same graph, no
extras) in its dags folder, and runs each pair interleaved, `--rounds` times. Prints per shape the
median makespan (run start to run end), the ratio generated / hand-written, the overhead per task
(makespan minus the critical path's work, per task on that path), per wave for the waves shape,
and the worker-startup parse of one task's DAG file (fresh process, Airflow already imported, as a
task process does), measured in the same run. Not a timed test: it prints its figures; RESULTS.md
records one run with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.airflow_cluster import AirflowCluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WAVE_TARGETS = [f"s{i:03d}" for i in range(1, 101)]


@dataclass(frozen=True)
class Shape:
    name: str
    spec: str  # the recovery spec (YAML)
    hand: str  # the same graph as a plain Airflow DAG
    work_seconds: float  # the critical path's sleeps and pauses
    path_tasks: int  # tasks on the critical path of the hand-written DAG
    waves: int = 0


HEADER = '''import datetime as dt
from airflow.sdk import DAG
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.sensors.time_delta import WaitSensor

START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
'''

LEVELS = Shape(
    "levels",
    spec="""recovery: mk_levels
defaults: {timeout: 5m, retries: 0}
phases:
  - id: level1
    parallel:
""" + "".join(f"      - {{id: w{i}, uses: bash, with: {{bash_command: \"sleep 5\"}}}}\n" for i in range(4)) + """  - id: level2
    for_each: {over: [a, b, c, d], as: t}
    steps:
      - {id: work, uses: bash, with: {bash_command: "echo {{ t }}; sleep 5"}}
  - id: level3
    parallel:
""" + "".join(f"      - {{id: x{i}, uses: bash, with: {{bash_command: \"sleep 5\"}}}}\n" for i in range(2)),
    hand=HEADER + '''
with DAG("hand_levels", schedule=None, start_date=START, catchup=False):
    level1 = [BashOperator(task_id=f"level1_w{i}", bash_command="sleep 5") for i in range(4)]
    level2 = BashOperator.partial(task_id="level2_work").expand(bash_command=[f"echo {t}; sleep 5" for t in "abcd"])
    level3 = [BashOperator(task_id=f"level3_w{i}", bash_command="sleep 5") for i in range(2)]
    level1 >> level2 >> level3
''',
    work_seconds=15, path_tasks=3,
)

CHAIN = Shape(
    "chain",
    spec="""recovery: mk_chain
defaults: {timeout: 5m, retries: 0}
phases:
  - id: chain
    steps:
""" + "".join(f"      - {{id: s{i:02d}, uses: bash, with: {{bash_command: \"sleep 1\"}}}}\n" for i in range(20)),
    hand=HEADER + '''
from airflow.sdk import chain

with DAG("hand_chain", schedule=None, start_date=START, catchup=False):
    chain(*[BashOperator(task_id=f"s{i:02d}", bash_command="sleep 1") for i in range(20)])
''',
    work_seconds=20, path_tasks=20,
)

WAVES = Shape(
    "waves",
    spec="""recovery: mk_waves
defaults: {timeout: 5m, retries: 0}
phases:
  - id: restart
    waves:
      over: [""" + ", ".join(WAVE_TARGETS) + """]
      as: service
      size: 10
      pause: 5s
      health_check: {uses: bash, with: {bash_command: "true"}}
    steps:
      - {id: bounce, uses: bash, with: {bash_command: "echo {{ service }}; sleep 1"}}
""",
    hand=HEADER + f'''
TARGETS = {WAVE_TARGETS!r}

with DAG("hand_waves", schedule=None, start_date=START, catchup=False, max_active_tasks=16):
    previous = None
    for w in range(10):
        bounce = BashOperator.partial(task_id=f"wave{{w + 1}}_bounce").expand(
            bash_command=[f"echo {{t}}; sleep 1" for t in TARGETS[w * 10:(w + 1) * 10]])
        health = BashOperator(task_id=f"wave{{w + 1}}_health", bash_command="true")
        if previous is not None:
            previous >> bounce
        bounce >> health
        previous = health
        if w < 9:  # the pause holds no worker slot: a deferred sensor
            pause = WaitSensor(task_id=f"wave{{w + 1}}_pause", time_to_wait=dt.timedelta(seconds=5), deferrable=True)
            health >> pause
            previous = pause
''',
    work_seconds=10 * 1 + 9 * 5, path_tasks=10 * 3 - 1, waves=10,
)

SHAPES = {s.name: s for s in (LEVELS, CHAIN, WAVES)}

WARMUP = '''
from airflow.sdk import chain

with DAG("warmup", schedule=None, start_date=START, catchup=False):
    chain(BashOperator(task_id="a", bash_command="true"), BashOperator.partial(task_id="b").expand(bash_command=["true", "true"]))
'''
WARMUP_SPEC = """recovery: mk_warmup
phases:
  - id: a
    steps: [{id: a, uses: bash, with: {bash_command: "true"}}]
  - id: b
    for_each: {over: [x, y], as: t}
    steps: [{id: b, uses: bash, with: {bash_command: "echo {{ t }}"}}]
"""


def run_seconds(cluster: AirflowCluster, dag_id: str, timeout: float) -> float:
    api = cluster.api
    run_id = api.trigger(dag_id, {})
    state = api.wait_for_run(dag_id, run_id, timeout=timeout, poll=0.25)
    if state != "success":
        kept = Path(tempfile.mkdtemp(prefix="makespan-failed-logs-"))
        shutil.copytree(cluster.logs_dir, kept, dirs_exist_ok=True)
        print(f"logs of the failed run kept in {kept}", flush=True)
        logs = {c: cluster.log_path(c).read_text(errors="replace").splitlines()[-40:] for c in ("triggerer", "scheduler")}
        raise SystemExit(f"{dag_id} run {run_id} ended {state}\n{cluster.describe_run(dag_id, run_id, lines=60)}\n"
                         + "\n".join(f"--- {c}\n" + "\n".join(lines) for c, lines in logs.items()))
    run = api.dag_run(dag_id, run_id)
    from tests.support.airflow_cluster import parse_dt

    start, end = parse_dt(run["start_date"]), parse_dt(run["end_date"])
    assert start is not None and end is not None
    return (end - start).total_seconds()


def startup_parse(dags: Path, file: str, dag_id: str, samples: int = 5) -> float:
    """Median seconds to execute one DAG file in a fresh process that has Airflow imported, as a task
    process does (the parsing context names the DAG, so the loader renders only that spec)."""
    code = (
        "import time, runpy, airflow.sdk, airflow.providers.standard.operators.bash\n"
        f"t = time.perf_counter(); runpy.run_path({str(dags / file)!r}); print(time.perf_counter() - t)"
    )
    env = {**os.environ, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": dag_id, "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "x",
           "AIRFLOW__RECOVERY__PLAN_CACHE": str(dags / ".plan-cache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as deployed (and as the harness runs Airflow): bytecode cached
    times = []
    # one untimed start first: bytecode written, and the plan stored as the dag-processor stores it
    for _ in range(samples + 1):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="levels,chain,waves")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    shapes = [SHAPES[n] for n in args.shapes.split(",")]

    from tests.support.airflow_cluster import running_cluster

    dags = Path(tempfile.mkdtemp(prefix="makespan-dags-"))
    (dags / "specs").mkdir()
    shutil.copyfile(ROOT / "dags" / "recovery_dags.py", dags / "recovery_dags.py")
    for shape in shapes:
        (dags / "specs" / f"mk_{shape.name}.yaml").write_text(shape.spec)
        (dags / f"hand_{shape.name}.py").write_text(shape.hand)
    (dags / "warmup.py").write_text(HEADER + WARMUP)
    (dags / "specs" / "mk_warmup.yaml").write_text(WARMUP_SPEC)
    subprocess.run([str(Path(sys.executable).with_name("recovery")), "validate", str(dags / "specs")], check=True)

    parse = {s.name: {"generated": startup_parse(dags, "recovery_dags.py", f"mk_{s.name}"),
                      "hand": startup_parse(dags, f"hand_{s.name}.py", f"hand_{s.name}")} for s in shapes}
    results: dict[str, dict[str, list[float]]] = {s.name: {"generated": [], "hand": []} for s in shapes}
    with running_cluster(dags, "makespan-meta") as cluster:
        api = cluster.api
        for shape in shapes:
            for dag_id in (f"mk_{shape.name}", f"hand_{shape.name}"):
                api.wait_for_dag(dag_id, timeout=180)
                api.unpause(dag_id)
        # The first run in a fresh Airflow paid one-off costs (26.7 s for the three levels, 18.5
        # after): take them with runs that are not counted, one of each kind.
        for dag_id in ("warmup", "mk_warmup"):
            api.wait_for_dag(dag_id, timeout=180)
            api.unpause(dag_id)
            print(f"warm-up run of {dag_id}: {run_seconds(cluster, dag_id, timeout=300):.1f} s (not counted)", flush=True)
        for r in range(args.rounds):
            for shape in shapes:
                # alternate who goes first, so drift in load hits both alike
                order = ("generated", "hand") if r % 2 == 0 else ("hand", "generated")
                for kind in order:
                    dag_id = f"mk_{shape.name}" if kind == "generated" else f"hand_{shape.name}"
                    seconds = run_seconds(cluster, dag_id, timeout=shape.work_seconds * 6 + 120)
                    results[shape.name][kind].append(seconds)
                    print(f"round {r + 1} {dag_id}: {seconds:.1f} s", flush=True)

    summary = {}
    print(f"\n{'shape':8} {'generated s':>11} {'hand s':>8} {'ratio':>6} {'ovh/task gen':>12} {'ovh/task hand':>13}"
          f" {'ovh/wave gen':>12} {'ovh/wave hand':>13} {'parse gen s':>11} {'parse hand s':>12}")
    for shape in shapes:
        gen, hand = (statistics.median(results[shape.name][k]) for k in ("generated", "hand"))
        over = {k: (v - shape.work_seconds) for k, v in (("generated", gen), ("hand", hand))}
        per_task = {k: v / shape.path_tasks for k, v in over.items()}
        per_wave = {k: v / shape.waves for k, v in over.items()} if shape.waves else None
        summary[shape.name] = {"generated_s": results[shape.name]["generated"], "hand_s": results[shape.name]["hand"],
                               "median_generated_s": gen, "median_hand_s": hand, "ratio": gen / hand,
                               "overhead_per_task_s": per_task, "overhead_per_wave_s": per_wave,
                               "startup_parse_s": parse[shape.name]}
        wave_cols = f"{per_wave['generated']:12.2f} {per_wave['hand']:13.2f}" if per_wave else f"{'-':>12} {'-':>13}"
        print(f"{shape.name:8} {gen:11.1f} {hand:8.1f} {gen / hand:6.2f} {per_task['generated']:12.2f} "
              f"{per_task['hand']:13.2f} {wave_cols} {parse[shape.name]['generated']:11.3f} {parse[shape.name]['hand']:12.3f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(dags, ignore_errors=True)


if __name__ == "__main__":
    main()
