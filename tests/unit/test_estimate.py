"""Estimates against numbers worked out by hand: each expected value carries its arithmetic."""

from __future__ import annotations

from itertools import pairwise

import pytest

from recovery_provider.plan.compiler import compile_plan
from recovery_provider.plan.estimate import Estimate, ScheduledTask, estimate_plan
from recovery_provider.plan.model import Plan
from recovery_provider.spec.loader import load_spec_text

pytestmark = pytest.mark.unit

M = 60.0  # one minute in seconds


def plan_of(text: str) -> Plan:
    plan, diagnostics = compile_plan(load_spec_text(text).spec)
    assert plan is not None, diagnostics
    assert not [d for d in diagnostics if d.severity == "error"], diagnostics
    return plan


def estimate(text: str, max_scenarios: int = 64) -> Estimate:
    return estimate_plan(plan_of(text), max_scenarios)


def fan_out(targets: int, steps: str, extra: str = "", header: str = "") -> str:
    """A one-phase spec fanning `steps` out over `targets` items."""
    items = ", ".join(f"t{i}" for i in range(targets))
    return f"""
recovery: fan
{header}
phases:
  - id: restore
    for_each: {{over: [{items}]{extra}}}
    steps: {steps}
"""


def by_label(tasks: tuple[ScheduledTask, ...]) -> dict[str, ScheduledTask]:
    return {t.label: t for t in tasks}


def test_sequential_chain_is_the_sum() -> None:
    result = estimate("""
recovery: chain
phases:
  - id: fix
    steps:
      - {id: a, uses: empty, expected_duration: 1m}
      - {id: b, uses: empty, expected_duration: 2m}
      - {id: c, uses: empty, expected_duration: 30s}
      - {id: d, uses: empty}
""")
    worst = result.worst
    assert worst.planned == worst.critical == worst.sequential == 210.0  # 60 + 120 + 30 + 0
    assert worst.critical_path == ("fix.a", "fix.b", "fix.c", "fix.d")
    assert (result.steps_total, result.steps_with_duration) == (4, 3)
    assert result.verdict == "no-rto" and result.rto is None
    assert worst.label == "all phases"
    assert any("count as 0 s" in note and "d" in note for note in result.assumptions)
    tasks = by_label(worst.tasks)
    assert (tasks["fix.b"].start, tasks["fix.b"].end) == (60.0, 180.0)  # after a: 60 .. 60 + 120
    assert worst.phase_windows == {"fix": (0.0, 210.0)}


def test_uncapped_fan_out_takes_one_target_chain() -> None:
    steps = "[{id: restore_shard, uses: empty, expected_duration: 4m}, {id: verify, uses: empty, expected_duration: 1m}]"
    worst = estimate(fan_out(6, steps)).worst
    assert worst.planned == worst.critical == 5 * M  # 4m + 1m, all 6 targets at once (12 tasks <= 16)
    assert worst.sequential == 30 * M  # 6 x (4m + 1m)
    verify = by_label(worst.tasks)["restore.verify[5]"]
    assert (verify.target, verify.step_id, verify.start) == (5, "verify", 4 * M)


def test_pool_smaller_than_fan_out_is_the_bottleneck() -> None:
    header = "pools: {orders_io: {slots: 2}}"
    steps = "[{id: restore_shard, uses: empty, pool: orders_io, expected_duration: 4m}]"
    result = estimate(fan_out(6, steps, header=header))
    assert result.worst.planned == 3 * 4 * M  # 6 targets / 2 slots = 3 rounds of 4m
    assert result.worst.critical == 4 * M  # one target
    assert [b.name for b in result.bottlenecks] == ["pool orders_io"]
    assert result.bottlenecks[0].saves == 8 * M  # 12m - 4m
    running_at_0 = [t for t in result.worst.tasks if t.kind == "step" and t.start == 0]
    assert len(running_at_0) == 2


def test_max_parallel_caps_each_step_as_a_sliding_window() -> None:
    steps = "[{id: a, uses: empty, expected_duration: 1m}, {id: b, uses: empty, expected_duration: 2m}]"
    result = estimate(fan_out(6, steps, extra=", max_parallel: 2"))
    # at most 2 a's and 2 b's at once; b is the slow step: first b's start after a[0..1] at 1m,
    # then 3 rounds of 2 b's: 1m + 3 x 2m = 7m (a per-target window would take 3 x 3m = 9m)
    assert result.worst.planned == 7 * M
    assert result.worst.critical == 3 * M  # 1m + 2m
    assert result.bottlenecks[0].name == "max_parallel of phase restore"
    assert result.bottlenecks[0].saves == 4 * M  # 7m - 3m
    tasks = by_label(result.worst.tasks)
    assert tasks["restore.a[2]"].start == 1 * M  # a keeps going while b[0..1] run
    assert tasks["restore.b[4]"].start == 5 * M  # after b[2..3]: 3m + 2m


def test_waves_run_one_after_another_with_health_and_pause() -> None:
    items = ", ".join(f"s{i}" for i in range(25))
    result = estimate(f"""
recovery: restart
phases:
  - id: restart
    waves:
      over: [{items}]
      size: 10
      pause: 1m
      health_check: {{uses: empty, expected_duration: 30s}}
    steps: [{{id: bounce, uses: empty, expected_duration: 2m}}]
""")
    worst = result.worst
    assert worst.planned == 3 * (2 * M + 30) + 2 * M  # 3 waves x (2m + 30s health) + 2 pauses x 1m = 570s
    assert worst.critical == worst.planned
    windows = []
    for wave in range(3):
        steps = [t for t in worst.tasks if t.kind == "step" and t.wave == wave]
        assert len(steps) == (10 if wave < 2 else 5)  # 25 = 10 + 10 + 5
        windows.append((min(t.start for t in steps), max(t.end for t in steps)))
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(windows))
    tasks = by_label(worst.tasks)
    assert (tasks["restart.wave1.health"].start, tasks["restart.wave1.pause"].end) == (120.0, 210.0)  # 2m; 2m + 30s + 1m
    assert "restart.wave3.pause" not in tasks  # no pause after the last wave


BRANCHED = """
recovery: failover
objectives: {rto: 5m}
params: {failure: {default: replica_ok}}
phases:
  - id: assess
    steps: [{id: probe, uses: empty, expected_duration: 1m}]
  - id: choose
    branch:
      - {when: "params.failure == 'replica_ok'", then: promote}
      - {otherwise: restore}
  - id: promote
    steps: [{id: promote_replica, uses: empty, expected_duration: 2m}]
  - id: restore
    steps: [{id: restore_db, uses: empty, expected_duration: 10m}]
"""


def test_branches_are_scenarios_and_the_worst_decides() -> None:
    result = estimate(BRANCHED)
    planned = {s.label: s.planned for s in result.scenarios}
    assert planned == {"promote": 3 * M, "restore": 11 * M}  # 1m + 2m; 1m + 10m
    assert result.worst.choices == {"choose": "restore"}
    assert result.rto == 5 * M
    assert result.verdict == "exceeds"  # 11m > 5m
    assert planned["promote"] <= result.rto  # the promote path alone would meet
    assert result.worst.critical_path == ("assess.probe", "choose", "restore.restore_db")
    assert "promote" not in result.worst.phase_windows
    assert "restore" not in result.scenarios[0].phase_windows


def test_scenarios_beyond_the_cap_are_noted() -> None:
    result = estimate(BRANCHED, max_scenarios=1)
    assert [s.label for s in result.scenarios] == ["promote"]
    assert any("only the first 1" in note for note in result.assumptions)


def test_default_max_active_tasks_caps_an_uncapped_fan_out() -> None:
    result = estimate(fan_out(40, "[{id: bounce, uses: empty, expected_duration: 1m}]"))
    assert result.worst.planned == 3 * M  # 40 tasks / 16 at once = 3 rounds of 1m
    assert result.worst.critical == 1 * M
    assert "at most 16 tasks at once (Airflow's max_active_tasks default)" in result.assumptions
    assert [(b.name, b.saves) for b in result.bottlenecks] == [("max_active_tasks (16)", 2 * M)]  # 3m - 1m


def test_finally_steps_run_after_the_last_phase() -> None:
    result = estimate("""
recovery: with_cleanup
phases:
  - id: first
    steps: [{id: a, uses: empty, expected_duration: 1m}]
  - id: second
    parallel:
      - {id: b, uses: empty, expected_duration: 2m}
      - {id: c, uses: empty, expected_duration: 3m}
finally:
  - {id: report, uses: empty, expected_duration: 30s}
""")
    report = by_label(result.worst.tasks)["finally.report"]
    assert (report.kind, report.phase_id) == ("finally", None)
    assert report.start == result.worst.phase_windows["second"][1] == 4 * M  # 1m + max(2m, 3m)
    assert result.worst.planned == 4 * M + 30  # then 30s of report
    assert result.worst.sequential == 6 * M + 30  # 1m + 2m + 3m + 30s
    assert result.worst.critical_path == ("first.a", "second.c", "finally.report")


def test_ten_thousand_targets_estimate() -> None:
    result = estimate("""
recovery: big
params: {hosts: {type: array}}
phases:
  - id: patch
    for_each: {over: {param: hosts}, expected_targets: 10000}
    steps:
      - {id: drain, uses: empty, expected_duration: 1s}
      - {id: patch_host, uses: empty, expected_duration: 1s}
      - {id: undrain, uses: empty, expected_duration: 1s}
""")
    # 16 at once, in priority order: 16 targets run their 3 steps, then the next 16:
    # 10,000 / 16 = 625 rounds x 3s
    assert result.worst.planned == 1875.0
    assert len([t for t in result.worst.tasks if t.kind == "step"]) == 30_000


def test_steps_named_like_control_tasks_are_estimated() -> None:
    result = estimate("""
recovery: lookalikes
phases:
  - id: before
    steps:
      - {id: fetch_targets, uses: empty, expected_duration: 1m}
      - {id: x_checkpoint, uses: empty, expected_duration: 2m}
      - {id: choose, uses: empty, expected_duration: 30s}
""")
    assert result.worst.planned == 210.0  # 60 + 120 + 30
    assert result.worst.critical_path == ("before.fetch_targets", "before.x_checkpoint", "before.choose")
