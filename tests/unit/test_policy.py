"""Failure policies and fan-out substitution, decided from task states without Airflow."""

from __future__ import annotations

import pytest

from recovery_provider.plan.targets import substitute_target
from recovery_provider.render.policy import judge_phase, run_note, run_outcome
from recovery_provider.spec.phase_kinds import FailurePolicy

pytestmark = pytest.mark.unit


def policy(form: object) -> FailurePolicy:
    return FailurePolicy.model_validate(form)


FAN = {"p.each.dump_0": "success", "p.each.check_0": "success",
       "p.each.dump_1": "failed", "p.each.check_1": "upstream_failed",
       "p.each.dump_2": "success", "p.each.check_2": "failed",
       "p.each.dump_3": "success", "p.each.check_3": "success"}


@pytest.mark.parametrize(
    ("form", "outcome"),
    [("fail_fast", "failed"), ("continue", "partial"), ({"tolerate": 2}, "partial"), ({"tolerate": 1}, "failed"),
     ({"tolerate": "50%"}, "partial"), ({"tolerate": "49%"}, "failed")],
)
def test_fan_out_failures_count_per_target(form: object, outcome: str) -> None:
    verdict = judge_phase(policy(form), FAN, phase_id="p", fan_out=True)
    assert verdict.outcome == outcome
    assert verdict.failed_units == ("each[1]", "each[2]")  # target 1 counts once, not twice
    assert verdict.units == 4


def test_parallel_failures_count_per_step_and_non_critical_steps_never_count() -> None:
    states = {"p.a": "success", "p.b": "failed", "p.c": "failed"}
    assert judge_phase(policy("fail_fast"), states, phase_id="p", fan_out=False, non_critical=["b"]).failed_units == ("c",)
    assert judge_phase(policy("fail_fast"), states, phase_id="p", fan_out=False, non_critical=["b", "c"]).outcome == "ok"


def test_a_phase_that_did_not_run_is_skipped_not_ok() -> None:
    assert judge_phase(policy("fail_fast"), {"p.a": "skipped", "p.b": "skipped"}, phase_id="p", fan_out=False).outcome == "skipped"
    assert judge_phase(policy("fail_fast"), {"p.a": "success", "p.b": "skipped"}, phase_id="p", fan_out=False).outcome == "ok"


def test_run_outcome_fails_on_any_failed_gate_and_flags_partial() -> None:
    assert run_outcome({"a": {"outcome": "partial"}, "b": None}, {"a": "success", "b": "failed"})["outcome"] == "failed"
    result = run_outcome({"a": {"outcome": "partial"}, "b": {"outcome": "ok"}}, {"a": "success", "b": "success"})
    assert result == {"outcome": "partial", "failed_phases": [], "partial_phases": ["a"], "not_run_phases": [],
                      "failed_tasks": []}
    assert run_outcome({"a": None}, {"a": "skipped"})["outcome"] == "ok"


# the run: fan (tolerate 1) lost two targets; after_fan's gate failed only because fan did
FAN_FAILED = {
    "fan.targets": "success", "fan.each.work_0": "success", "fan.each.work_1": "failed", "fan.each.work_2": "failed",
    "fan.gate": "failed", "after_fan.step": "upstream_failed", "after_fan.gate": "failed", "outcome": "running",
}


def test_a_phase_whose_gate_failed_only_because_an_upstream_phase_did_is_not_run_not_failed() -> None:
    result = run_outcome({"fan": None, "after_fan": None}, {"fan": "failed", "after_fan": "failed"}, FAN_FAILED)
    assert (result["outcome"], result["failed_phases"], result["not_run_phases"]) == ("failed", ["fan"], ["after_fan"])
    assert run_note(result) == "FAILED in phase(s) fan; not run: after_fan"
    # without the task states (an older caller) every failed gate is still named
    assert run_outcome({}, {"fan": "failed", "after_fan": "failed"})["failed_phases"] == ["after_fan", "fan"]


def test_a_failed_preflight_is_named_and_no_phase_is_blamed() -> None:
    states = {"preflight": "failed", "a.s": "upstream_failed", "a.gate": "failed", "outcome": "running"}
    result = run_outcome({"a": None}, {"a": "failed"}, states)
    assert (result["outcome"], result["failed_phases"], result["failed_tasks"]) == ("failed", [], ["preflight"])
    assert run_note(result) == "FAILED in preflight; not run: a"


def test_the_note_says_on_which_attempt_a_re_run_recovered() -> None:
    ok = run_outcome({"fan": {"outcome": "ok"}, "after_fan": {"outcome": "ok"}},
                     {"fan": "success", "after_fan": "success"}, {"fan.gate": "success", "after_fan.gate": "success"})
    assert run_note(ok) is None  # a first run that succeeded needs no note
    assert run_note(ok, attempt=2) == "RECOVERED on attempt 2: every phase succeeded after the re-run"
    partial = {**ok, "outcome": "partial", "partial_phases": ["fan"]}
    assert run_note(partial, 1, "fan: 1 of 3 failed") == "PARTIAL recovery - failures accepted in fan: 1 of 3 failed"
    assert run_note(partial, 3, "fan: 1 of 3 failed").startswith("RECOVERED on attempt 3, PARTIAL - ")
    failed = run_outcome({}, {"fan": "failed"}, {"fan.each.work_1": "failed", "fan.gate": "failed"})
    assert run_note(failed, attempt=2) == "FAILED on attempt 2 in phase(s) fan"
    # the earlier attempt's note (ours) says how it failed; a person's own note is not quoted
    before = "FAILED in phase(s) fan; not run: after_fan"
    assert run_note(ok, 2, before=before) == (
        "RECOVERED on attempt 2: every phase succeeded after the re-run (before: FAILED in phase(s) fan; not run: after_fan)")
    assert run_note(ok, 2, before="call Anna") == "RECOVERED on attempt 2: every phase succeeded after the re-run"
    assert run_note(failed, 2, before=before) == "FAILED on attempt 2 in phase(s) fan"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ db }}", {"name": "orders"}),  # alone: the target itself, any type
        ("drill_{{db}}", "drill_{'name': 'orders'}"),
        ("{{ db }} in {{ params.location }}", "{'name': 'orders'} in {{ params.location }}"),
        (["{{ db }}", 3], [{"name": "orders"}, 3]),
        ({"k": "x-{{ db }}"}, {"k": "x-{'name': 'orders'}"}),
        ("{{ dbs }}", "{{ dbs }}"),  # another name is left alone
    ],
)
def test_substitute_target(value: object, expected: object) -> None:
    assert substitute_target(value, "db", {"name": "orders"}) == expected
