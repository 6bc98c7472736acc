"""Calibrated estimates: what the ledger measured on a deployment (evidence/calibration.py), fed to
the estimate (plan/estimate.py), the `recovery plan --calibrate` command and the run's report."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recovery_provider.cli.main import app
from recovery_provider.evidence.calibration import (
    calibrate,
    expected_run,
    load_calibration,
    measured,
    task_class,
)
from recovery_provider.evidence.html import report_html, seconds
from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import AttemptRecord, PlanEvidence, RunRecord, TaskRecord
from recovery_provider.evidence.report import build_report
from recovery_provider.plan.calibrated import Calibration, TaskTiming
from recovery_provider.plan.estimate import estimate_plan
from recovery_provider.plan.layout import build_layout
from tests.conftest import plan_of

pytestmark = pytest.mark.unit
UTC = dt.timezone.utc
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def ti(task_id: str, start: float, end: float, upstream: Iterable[str] = (), *, operator: str = "BashOperator",
       kind: str = "step", map_index: int = -1, state: str = "success", tries: int = 1, phase: str | None = "p") -> TaskRecord:
    return TaskRecord(task_id=task_id, map_index=map_index, phase=phase, kind=kind, state=state,
                      start=at(start), end=at(end), duration=end - start, tries=tries, operator=operator,
                      upstream=list(upstream))


def run(tasks: list[TaskRecord], *, dag_id: str = "cal", run_id: str = "r1", start: float = 0.0, end: float | None = None,
        offset: float = 0.0, **kw: Any) -> RunRecord:
    """A run record; `offset` shifts every time (a later run of the same graph)."""
    shifted = [t.model_copy(update={"start": t.start + dt.timedelta(seconds=offset) if t.start else None,
                                    "end": t.end + dt.timedelta(seconds=offset) if t.end else None}) for t in tasks]
    last = max(t.end for t in shifted if t.end)
    return RunRecord(dag_id=dag_id, run_id=run_id, state="success", start=at(start + offset),
                     end=at(end + offset) if end is not None else last, recorded_at=last, tasks=shifted, **kw)


# A chain p.s1 -> p.s2 -> p.s3 (5 s of work each), an EmptyOperator gate, the outcome:
# workers start 1 s after they are ready and run 0.5 s beyond their work, the gate 0.2 s after,
# the run ends 0.3 s after its last task.
CHAIN = [
    ti("p.s1", 1.0, 6.5),
    ti("p.s2", 7.5, 13.0, ["p.s1"]),
    ti("p.s3", 14.0, 19.5, ["p.s2"]),
    ti("p.gate", 19.7, 19.7, ["p.s3"], operator="EmptyOperator", kind="gate"),
    ti("outcome", 20.7, 21.2, ["p.gate"], operator="PythonOperator", kind="control", phase=None),
]
CHAIN_SPEC = """
recovery: cal
defaults: {timeout: 1m, retries: 0}
phases:
  - id: p
    steps:
      - {id: s1, uses: empty, expected_duration: 5s}
      - {id: s2, uses: empty, expected_duration: 5s}
      - {id: s3, uses: empty, expected_duration: 5s}
"""


def test_task_classes_follow_how_the_deployment_ran_the_task() -> None:
    assert task_class(ti("p.s", 0, 1)) == "worker"
    assert task_class(ti("p.gate", 0, 0, operator="EmptyOperator", kind="gate")) == "scheduler"
    assert task_class(ti("p.s__undo", 0, 0, state="skipped", kind="undo")) == "scheduler"
    assert task_class(ti("p.wave1_checkpoint", 0, 6, operator="WaveCheckpointOperator", kind="control")) == "deferred"


def test_latency_is_start_minus_the_latest_upstream_end() -> None:
    found = {m.task.task_id: m for m in measured(run(CHAIN, end=21.5))}
    assert found["p.s1"].latency == pytest.approx(1.0)  # a first task: from the run's start
    assert found["p.s2"].latency == pytest.approx(1.0)
    assert found["p.gate"].latency == pytest.approx(0.2)
    assert found["outcome"].latency == pytest.approx(1.0)


def test_per_class_figures_and_the_run_s_finish() -> None:
    calibration = calibrate([run(CHAIN, end=21.5)])
    assert calibration.latency == pytest.approx({"worker": 1.0, "scheduler": 0.2})
    assert calibration.runtime["worker"] == pytest.approx(0.5)  # the outcome: no work of its own
    assert calibration.finish == pytest.approx(0.3)
    assert calibration.overhead("worker") == pytest.approx(1.5)
    timing = calibration.tasks["p.s2"]
    assert (timing.latency, timing.duration, timing.span, timing.samples) == pytest.approx((1.0, 5.5, 6.5, 1))


def test_a_mapped_instance_waits_only_for_its_own_target_upstream() -> None:
    tasks = [
        ti("p.each.a", 1.0, 2.0, map_index=0), ti("p.each.a", 1.0, 9.0, map_index=1),
        ti("p.each.b", 3.0, 4.0, ["p.each.a"], map_index=0), ti("p.each.b", 10.0, 11.0, ["p.each.a"], map_index=1),
        ti("p.gate", 12.0, 12.5, ["p.each.b"], operator="PythonOperator", kind="gate"),
    ]
    found = {(m.task.task_id, m.task.map_index): m.latency for m in measured(run(tasks))}
    assert found[("p.each.b", 0)] == pytest.approx(1.0)  # not 9 s behind target 1's a
    assert found[("p.each.b", 1)] == pytest.approx(1.0)
    assert found[("p.gate", -1)] == pytest.approx(1.0)  # after every instance
    calibration = calibrate([run(tasks)])
    timing = calibration.tasks["p.each.a"]
    assert timing.span == pytest.approx(9.0) and timing.duration == pytest.approx(4.5)  # the slowest target sets the span
    assert calibration.tasks["p.each.b"].span == pytest.approx(2.0)  # from its own target's a, not the slowest a
    # a: 2 s and 9 s from ready to end, 3.5 s beyond the usual for its one more target; b: none
    assert calibration.stagger == pytest.approx((3.5 + 0.0) / 2)


def test_retries_re_runs_and_dry_runs_are_not_overhead() -> None:
    retried = [*CHAIN[:1], CHAIN[1].model_copy(update={"tries": 2, "start": at(40.0), "end": at(45.5)}), *CHAIN[2:]]
    assert "p.s2" not in {m.task.task_id for m in measured(run(retried))}
    assert "p.s2" not in calibrate([run(retried)]).tasks  # one instance retried: no usual span from this run
    cleared = run(CHAIN, clear_number=1, attempts=[AttemptRecord(number=1, state="failed"), AttemptRecord(number=2, state="success")])
    assert measured(cleared) == []
    dry = calibrate([run(CHAIN, dry_run=True)])
    assert dry.tasks == {} and dry.latency["worker"] == pytest.approx(1.0)  # latency counts, step durations do not


def test_other_dags_calibrate_the_classes_not_the_steps() -> None:
    slow = [ti("q.a", 3.0, 4.0, phase="q"), ti("q.b", 7.0, 8.0, ["q.a"], phase="q")]  # 3 s latency each
    calibration = calibrate([run(CHAIN, end=21.5)], [run(slow, dag_id="other")])
    assert calibration.latency["worker"] == pytest.approx(1.0)  # median of 1, 1, 1, 1, 3, 3
    assert "q.a" not in calibration.tasks and "p.s1" in calibration.tasks
    assert (calibration.dag_runs, calibration.deployment_runs) == (1, 2)


OVERHEADS = Calibration(latency={"worker": 1.0, "scheduler": 0.2, "deferred": 2.0},
                        runtime={"worker": 0.5, "scheduler": 0.0, "deferred": 0.5}, finish=0.3)


def test_the_estimate_without_calibration_is_the_spec_s_own() -> None:
    plan = plan_of(CHAIN_SPEC)
    assert estimate_plan(plan).worst.planned == 15.0
    gate = build_layout(plan).task("p.gate")
    assert gate.by_trigger_rule  # an EmptyOperator gate: the scheduler settles it


def test_calibrated_estimate_adds_the_deployment_s_overhead_per_task() -> None:
    estimate = estimate_plan(plan_of(CHAIN_SPEC), calibration=OVERHEADS)
    # three steps (1 s latency + 5 s + 0.5 s), the gate (0.2 s), the run's end (0.3 s); no outcome
    # task in this DAG (no `finally`, no compensation), though the recorded run had one
    assert estimate.worst.planned == pytest.approx(3 * 6.5 + 0.2 + 0.3)
    assert estimate.worst.critical_path == ("p.s1", "p.s2", "p.s3")  # control tasks stay off the path's labels
    assert any("calibrated from" in note for note in estimate.assumptions)


def test_the_dag_s_own_history_wins_over_the_spec() -> None:
    calibration = Calibration(latency=OVERHEADS.latency, runtime=OVERHEADS.runtime, finish=0.3,
                              tasks={"p.s2": TaskTiming(latency=1.0, duration=9.0, span=10.0, samples=3)})
    estimate = estimate_plan(plan_of(CHAIN_SPEC), calibration=calibration)
    assert estimate.worst.planned == pytest.approx(6.5 + 10.0 + 6.5 + 0.2 + 0.3)


WAVES_SPEC = """
recovery: calw
defaults: {timeout: 1m, retries: 0}
phases:
  - id: r
    waves:
      over: [a, b, c, d]
      size: 2
      pause: 5s
      health_check: {uses: empty, expected_duration: 1s}
    steps:
      - {id: bounce, uses: empty, expected_duration: 1s}
"""


def test_calibrated_waves_count_the_deferred_pause_and_the_policy_gate() -> None:
    plan = plan_of(WAVES_SPEC)
    assert estimate_plan(plan).worst.planned == pytest.approx(2 * (1 + 1) + 5)
    estimate = estimate_plan(plan, calibration=OVERHEADS)
    # per wave: bounce (2.5 s) and health (2.5 s); one checkpoint: 2 s latency + 5 s + 0.5 s;
    # a policy gate (a worker: 1.5 s), the run's end (0.3 s)
    assert estimate.worst.planned == pytest.approx(2 * (2.5 + 2.5) + 7.5 + 1.5 + 0.3)


def test_a_fan_out_beyond_its_caps_takes_the_measured_duration_per_target() -> None:
    timing = TaskTiming(latency=4.0, duration=2.0, span=8.0, samples=10)
    calibration = Calibration(latency={"worker": 1.0}, runtime={"worker": 0.0}, tasks={"t": timing})
    assert calibration.seconds("t", "worker", 0.0, alongside=4, capacity=16) == 8.0  # all at once: the usual span
    assert calibration.seconds("t", "worker", 0.0, alongside=40, capacity=16) == 3.0  # queued: latency + duration
    assert calibration.seconds("u", "worker", 5.0) == 6.0  # no history: overhead around the spec's work
    staggered = Calibration(latency={"worker": 1.0}, runtime={"worker": 0.0}, stagger=0.5)
    assert staggered.seconds("u", "worker", 5.0, alongside=10, capacity=16) == 6.0 + 9 * 0.5  # 9 more started alongside
    assert staggered.seconds("u", "worker", 5.0, alongside=40, capacity=4) == 6.0 + 3 * 0.5  # 4 at once, then queued


def test_expected_run_replays_the_recorded_graph_with_usual_timings() -> None:
    history = run(CHAIN, run_id="r0", end=21.5)
    slow = [*CHAIN[:1], ti("p.s2", 7.5, 33.0, ["p.s1"]), ti("p.s3", 34.0, 39.5, ["p.s2"]),
            ti("p.gate", 39.7, 39.7, ["p.s3"], operator="EmptyOperator", kind="gate"),
            ti("outcome", 40.7, 41.2, ["p.gate"], operator="PythonOperator", kind="control", phase=None)]
    record = run(slow, run_id="r1", end=41.5, offset=100.0, start=0.0)
    expected = expected_run(record, calibrate([history]))
    assert expected is not None
    assert expected.seconds == pytest.approx(21.5)  # the usual run, though this one took 41.5 s
    assert expected.phases["p"] == pytest.approx(19.7 - 0.0)
    assert expected.timed_tasks == 5


def write_ledger(root: Path) -> Ledger:
    ledger = Ledger(str(root))
    plan = PlanEvidence(planned_seconds=15.0, scenario="all phases", phase_windows={"p": (0.0, 15.0)})
    for i in range(3):
        ledger.write(run(CHAIN, run_id=f"r{i}", end=21.5, offset=100.0 * i, plan=plan))
    return ledger


def test_load_calibration_reads_bounded_and_leaves_out_the_reported_run(tmp_path: Path) -> None:
    ledger = write_ledger(tmp_path)
    slow = [ti("q.a", 3.0, 4.0, phase="q")]
    ledger.write(run(slow, dag_id="other", run_id="o1"))
    assert load_calibration(ledger, "cal", exclude="r2").dag_runs == 2
    assert load_calibration(ledger, "cal", dag_runs=1).dag_runs == 1
    assert load_calibration(ledger, "cal").deployment_runs == 4


runner = CliRunner()


def test_plan_calibrate_prints_what_to_expect_beside_the_spec_s_figure(tmp_path: Path) -> None:
    write_ledger(tmp_path / "ledger")
    spec = tmp_path / "cal.yaml"
    spec.write_text(CHAIN_SPEC)
    result = runner.invoke(app, ["plan", str(spec), "--calibrate", "--ledger", str(tmp_path / "ledger")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # the DAG's history: s1..s3 6.5 s each, the gate 0.2 s, the end 0.3 s (the spec has no outcome task)
    assert "expected on this deployment: 20.0s (the spec's own estimate: 15s, +33%)" in result.output
    result = runner.invoke(app, ["plan", str(spec), "--calibrate", "--json", "--ledger", str(tmp_path / "ledger")])
    found = json.loads(result.output)
    assert found["worst"]["planned_seconds"] == 15.0
    assert found["calibrated"]["worst"]["planned_seconds"] == pytest.approx(20.0)
    assert found["calibrated"]["calibration"]["latency"]["worker"] == pytest.approx(1.0)


def test_plan_calibrate_without_runs_says_so_and_keeps_the_spec_s_estimate(tmp_path: Path) -> None:
    spec = tmp_path / "cal.yaml"
    spec.write_text(CHAIN_SPEC)
    result = runner.invoke(app, ["plan", str(spec), "--calibrate", "--ledger", str(tmp_path / "empty")])
    assert result.exit_code == 0
    assert "no run in the ledger" in result.output and "expected on this deployment" not in result.output


def test_the_report_shows_the_calibrated_figure(tmp_path: Path) -> None:
    write_ledger(tmp_path / "ledger")
    report = build_report(Ledger(str(tmp_path / "ledger")).read("cal", "r2"),
                          load_calibration(Ledger(str(tmp_path / "ledger")), "cal", exclude="r2"))
    assert report.planned_seconds == 15.0 and report.expected_seconds == pytest.approx(21.5)
    assert "2 other run(s) of this DAG" in (report.expected_basis or "")
    assert next(b for b in report.phases if b.label == "p").expected == pytest.approx(19.7)
    assert f'id="expected-seconds">{seconds(21.5)}<' in report_html(report)
    result = runner.invoke(app, ["report", "cal", "r2", "--ledger", str(tmp_path / "ledger")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert re.search(rf"expected on this deployment +{re.escape(seconds(21.5))}\b", result.output), result.output
    assert re.search(r"\bp +success +\+1s +19s +15s +20s", result.output), result.output  # actual, planned, expected
