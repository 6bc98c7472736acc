"""The verdict the listener decides when a run ends (evidence/verdict.py): outcome, note, estimate."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from recovery_provider.evidence.verdict import RecordedDag, judge_run, plan_evidence, recorded_dag
from recovery_provider.plan.layout import build_layout, layout_record
from recovery_provider.render.dag import build_dag
from tests.conftest import plan_of

pytestmark = pytest.mark.unit

SPEC = """
recovery: r
objectives: {rto: 10m}
defaults: {timeout: 1m}
params: {mode: {enum: [x, y], default: x}}
phases:
  - id: first
    on_failure: continue
    steps: [{id: a, uses: empty, expected_duration: 5s}, {id: b, uses: empty}]
  - id: pick
    branch: [{when: "params.mode == 'x'", then: fast}, {otherwise: slow}]
  - {id: fast, steps: [{id: f, uses: empty, expected_duration: 10s}]}
  - {id: slow, steps: [{id: s, uses: empty, expected_duration: 90s}]}
"""


def recorded(spec: str = SPEC) -> RecordedDag:
    return RecordedDag(layout_record(build_layout(plan_of(spec))), spec)


def test_plan_evidence_is_the_estimate_of_the_path_taken() -> None:
    found = plan_evidence(plan_of(SPEC), {"pick": "fast"})
    slow = plan_evidence(plan_of(SPEC), {"pick": "slow"})
    assert (found["scenario"], found["rto_seconds"]) == ("fast", 600.0)
    assert slow["planned_seconds"] - found["planned_seconds"] == pytest.approx(80.0)


def test_a_partial_phase_and_the_branch_taken() -> None:
    states = {"first.a": "success", "first.b": "failed", "first.gate": "success", "pick.choose": "success",
              "fast.f": "success", "fast.gate": "success", "slow.s": "skipped", "slow.gate": "skipped"}
    returns = {"first.gate": {"outcome": "partial", "reason": "1 of 2 failed; on_failure: continue"},
               "pick.choose": ["fast.f"]}
    verdict = judge_run(recorded(), states, returns)
    assert verdict.result["outcome"] == "partial" and verdict.result["partial_phases"] == ["first"]
    assert verdict.note == "PARTIAL recovery - failures accepted in first: 1 of 2 failed; on_failure: continue"
    assert verdict.plan is not None and verdict.plan["scenario"] == "fast"
    assert verdict.plan == plan_evidence(plan_of(SPEC), {"pick": "fast"})


def test_a_failed_phase_names_only_itself_and_the_outcome_task_is_no_failure() -> None:
    states = {"first.a": "failed", "first.b": "success", "first.gate": "failed", "pick.choose": "upstream_failed",
              "fast.f": "upstream_failed", "fast.gate": "upstream_failed", "slow.s": "upstream_failed",
              "slow.gate": "upstream_failed", "outcome": "failed"}
    verdict = judge_run(recorded(), states, {})
    assert (verdict.result["outcome"], verdict.result["failed_phases"]) == ("failed", ["first"])
    assert verdict.result["failed_tasks"] == []
    assert verdict.note is not None and verdict.note.startswith("FAILED in phase(s) first; not run: ")


def test_a_successful_rerun_says_on_which_attempt_and_how_the_first_failed() -> None:
    states = {"first.a": "success", "first.b": "success", "first.gate": "success", "pick.choose": "success",
              "fast.f": "success", "fast.gate": "success", "slow.s": "skipped", "slow.gate": "skipped"}
    verdict = judge_run(recorded(), states, {"pick.choose": ["fast.f"]}, attempt=2,
                        note_before="FAILED in phase(s) fast")
    assert verdict.note == ("RECOVERED on attempt 2: every phase succeeded after the re-run "
                            "(before: FAILED in phase(s) fast)")
    assert judge_run(recorded(), states, {}).note is None  # nothing to say of a clean first run


def test_the_dag_keeps_what_the_verdict_needs_and_older_dags_still_read() -> None:
    dag = build_dag(plan_of(SPEC), "r.yaml", SPEC)
    found = recorded_dag(dag)
    assert found == recorded()
    assert judge_run(found, {}, {"pick.choose": ["slow.s"]}).plan == plan_evidence(plan_of(SPEC), {"pick": "slow"})
    textless = recorded_dag(build_dag(plan_of(SPEC), "r.yaml"))  # rendered without the file's text
    assert textless is not None and textless.spec_text is None and judge_run(textless, {}, {}).plan is None

    # DAGs rendered before: the bare layout in the outcome task's doc_json
    old_dag = SimpleNamespace(task_dict={"outcome": SimpleNamespace(doc_json=json.dumps(found.layout))})
    old = recorded_dag(old_dag)
    assert old is not None and old.layout == found.layout and old.spec_text is None
    assert judge_run(old, {}, {}).plan is None
