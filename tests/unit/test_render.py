"""The shape of generated DAGs: tasks, trigger rules, edges, pools, caps, params, deadline.

Behaviour under a real scheduler is proven in tests/scheduler; these pin the wiring.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from recovery_provider.exceptions import RenderError
from recovery_provider.render import runtime
from recovery_provider.render.dag import build_dag
from tests.conftest import plan_of

pytestmark = pytest.mark.unit

SPEC = """
recovery: shape
objectives: {rto: 10m}
defaults: {timeout: 1m, retries: 3, retry_delay: 5s, backoff: 2.0, max_retry_delay: 1m}
pools: {io: {slots: 2}}
params:
  dbs: {type: array, default: [a, b, c]}
  mode: {enum: [x, y], default: x}
phases:
  - id: seq
    steps:
      - {id: one, uses: bash, with: {bash_command: "echo one"}, critical: false}
      - {id: two, uses: bash, with: {bash_command: "echo two"}, pool: io, pool_slots: 2, queue: site_a}
  - id: par
    on_failure: {tolerate: 1}
    parallel:
      - {id: p1, uses: bash, with: {bash_command: "echo p1"}, compensate: {uses: bash, with: {bash_command: "undo p1"}}}
      - {id: p2, uses: bash, with: {bash_command: "echo p2"}, compensate: {uses: bash, with: {bash_command: "undo p2"}}}
  - id: fan
    for_each: {over: {param: dbs}, as: db, max_parallel: 2}
    steps:
      - {id: dump, uses: bash, with: {bash_command: "echo {{ db }}"}}
  - id: choose
    branch:
      - {when: "params.mode == 'x'", then: left}
      - {otherwise: right}
  - {id: left, steps: [{id: l, uses: empty}]}
  - {id: right, steps: [{id: r, uses: empty}]}
  - id: ok
    approval: {subject: "Go?", timeout: 2m, on_timeout: approve, approvers: [alice]}
finally:
  - {id: report, uses: bash, with: {bash_command: "echo report"}}
"""


@pytest.fixture(scope="module")
def dag() -> Any:
    return build_dag(plan_of(SPEC), "shape.yaml", SPEC)


def upstream(dag: Any, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).upstream_task_ids)


def test_phases_are_task_groups_joined_by_gates(dag: Any) -> None:
    assert upstream(dag, "seq.one") == {"preflight"}
    assert upstream(dag, "par.p1") == upstream(dag, "par.p2") == {"seq.gate"}  # one edge per entry, not N x M
    assert upstream(dag, "seq.gate") == {"seq.one", "seq.two"}
    assert dag.get_task("seq.gate").trigger_rule.value == "all_done"
    assert dag.get_task("par.p1").trigger_rule.value == "none_failed"


def test_after_a_non_critical_step_the_chain_goes_on(dag: Any) -> None:
    assert dag.get_task("seq.two").trigger_rule.value == "all_done"


def test_step_settings_reach_the_task(dag: Any) -> None:
    two = dag.get_task("seq.two")
    assert (two.pool, two.pool_slots, two.queue, two.retries) == ("io", 2, "site_a", 3)
    assert two.retry_delay == timedelta(seconds=5) and two.retry_exponential_backoff == 2.0
    assert two.max_retry_delay == timedelta(minutes=1) and two.execution_timeout == timedelta(minutes=1)


def test_fan_out_is_a_capped_mapped_task_group(dag: Any) -> None:
    dump = dag.get_task("fan.each.dump")
    assert dump.max_active_tis_per_dagrun == 2
    assert upstream(dag, "fan.each.dump") == {"fan.targets"}
    assert upstream(dag, "fan.targets") == {"par.gate"}


def test_compensations_run_newest_first_after_a_failed_gate(dag: Any) -> None:
    assert upstream(dag, "par.p2__undo") == {"par.gate"}
    assert dag.get_task("par.p2__undo").trigger_rule.value == "one_failed"
    assert upstream(dag, "par.p1__undo") == {"par.p2__undo"}
    assert "par.p1__undo" in upstream(dag, "report")


def test_branch_knows_the_entry_of_each_target(dag: Any) -> None:
    choose = dag.get_task("choose.choose")
    assert choose.op_kwargs["entries"] == {"left": ["left.l"], "right": ["right.r"]}
    assert upstream(dag, "ok.approve") == {"left.l", "right.r"}  # the join: what the fail_fast gates wait for


def test_approval_fails_on_reject_and_times_out_to_the_declared_outcome(dag: Any) -> None:
    approve = dag.get_task("ok.approve")
    assert approve.fail_on_reject is True
    assert approve.response_timeout == timedelta(minutes=2) and approve.defaults == ["Approve"]


def test_finally_then_one_outcome_leaf(dag: Any) -> None:
    assert [t.task_id for t in dag.leaves] == ["outcome"]
    assert dag.get_task("report").trigger_rule.value == "all_done"
    assert {"report", "seq.gate", "par.gate", "fan.gate", "ok.approve"} <= upstream(dag, "outcome")


def test_dag_level_settings(dag: Any) -> None:
    assert dag.params["dry_run"] is False and dag.params["mode"] == "x"
    assert dag.max_active_tasks == 16 and "recovery" in dag.tags
    (deadline,) = dag.deadline
    assert deadline.interval == timedelta(minutes=10)
    assert "## Phases" in dag.doc_md and "**fan** (for_each" in dag.doc_md


def test_an_operator_that_rejects_its_arguments_names_the_step() -> None:
    plan = plan_of("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, steps: [{id: s, uses: bash, with: {no_such: 1}}]}]")
    with pytest.raises(RenderError, match=r"step 's': BashOperator rejected its arguments") as raised:
        build_dag(plan, "r.yaml")
    assert raised.value.path == ("phases", 0, "steps", 0)


def test_a_fan_out_step_that_ignores_the_target_is_refused() -> None:
    plan = plan_of("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, for_each: {over: [x, y]}, steps: [{id: s, uses: bash, with: {bash_command: echo}}]}]")
    with pytest.raises(RenderError, match="neither takes 'target' nor uses"):
        build_dag(plan, "r.yaml")


def test_a_probe_precedes_its_step() -> None:
    dag = build_dag(plan_of("""
recovery: r
defaults: {timeout: 1m}
phases:
  - id: a
    steps:
      - {id: first, uses: empty}
      - {id: make, uses: bash, with: {bash_command: "make it"}, skip_if: {uses: bash, with: {bash_command: "check"}}}
"""), "r.yaml")
    assert upstream(dag, "a.make__probe") == {"a.first"}
    assert upstream(dag, "a.make") == {"a.make__probe"}
    assert upstream(dag, "a.gate") == {"a.first", "a.make__probe", "a.make"}


def test_fan_out_steps_get_per_target_probes_and_compensations() -> None:
    dag = build_dag(plan_of("""
recovery: r
defaults: {timeout: 1m}
params: {dbs: {type: array, default: [x, y]}}
phases:
  - id: a
    for_each: {over: {param: dbs}, as: db}
    steps:
      - id: s
        uses: bash
        with: {bash_command: "change {{ db }}"}
        skip_if: {uses: bash, with: {bash_command: "done? {{ db }}"}}
        compensate: {uses: bash, with: {bash_command: "undo {{ db }}"}}
      - {id: t, uses: bash, with: {bash_command: "more {{ db }}"}, compensate: {uses: bash, with: {bash_command: "unmore {{ db }}"}}}
finally:
  - {id: cleanup, uses: bash, with: {bash_command: "echo"}}
"""), "r.yaml")
    assert upstream(dag, "a.each.s__probe") == {"a.targets"}
    assert upstream(dag, "a.each.s") == {"a.each.s__probe", "a.targets"}
    assert upstream(dag, "a.each.t") == {"a.each.s", "a.targets"}
    assert dag.get_task("a.each.t").trigger_rule == "none_failed"  # s may be skipped as already done
    # the compensations: a second group mapped over the same targets, newest step first, after the gate
    assert upstream(dag, "a.undo.t__undo") == {"a.gate", "a.targets"}
    assert upstream(dag, "a.undo.s__undo") == {"a.undo.t__undo", "a.targets"}
    assert dag.get_task("a.undo.t__undo").trigger_rule == "one_failed"
    assert "a.undo.s__undo" in upstream(dag, "cleanup")  # finally waits for them


def test_compensation_in_waves_is_refused_rather_than_ignored() -> None:
    plan = plan_of("""
recovery: r
defaults: {timeout: 1m}
phases:
  - id: a
    waves: {over: [x, y], size: 1}
    steps:
      - {id: s, uses: bash, with: {bash_command: "echo {{ target }}"}, compensate: {uses: empty}}
""")
    with pytest.raises(RenderError, match="'compensate' on a step of a waves phase is not supported yet"):
        build_dag(plan, "r.yaml")


def test_the_dag_carries_its_layout_and_spec_text_and_the_outcome_only_judges(dag: Any) -> None:
    import json

    from recovery_provider.evidence.verdict import recorded_dag

    carried = json.loads(dag.get_task("seq.gate").doc_json)  # the first phase's exit
    assert carried["recovery_layout"]["fan.each.dump"] == ["step", "fan", "each", "fan.targets"]
    assert carried["recovery_layout"]["choose.choose"][0] == "branch"
    assert carried["spec"] == SPEC  # the text, so the evidence never re-reads an edited spec
    found = recorded_dag(dag)
    assert found is not None and found.spec_text == SPEC and found.layout == carried["recovery_layout"]
    outcome = dag.get_task("outcome")
    assert outcome.op_kwargs == {"gate_ids": ["seq.gate", "par.gate", "fan.gate", "choose.choose", "left.gate",
                                              "right.gate", "ok.approve"]}
    assert outcome.python_callable is runtime.outcome  # no plan in the task: the listener estimates


def test_non_critical_steps_work_alike_in_fan_outs_and_waves() -> None:
    dag = build_dag(plan_of("""
recovery: r
defaults: {timeout: 1m}
phases:
  - id: f
    for_each: {over: [x, y], as: db}
    steps:
      - {id: maybe, uses: bash, critical: false, with: {bash_command: "try {{ db }}"}}
      - {id: must, uses: bash, with: {bash_command: "do {{ db }}"}}
  - id: w
    waves: {over: [x, y], size: 1, as: db}
    steps:
      - {id: maybe2, uses: bash, critical: false, with: {bash_command: "try {{ db }}"}}
      - {id: must2, uses: bash, with: {bash_command: "do {{ db }}"}}
"""), "r.yaml")
    assert dag.get_task("f.each.must").trigger_rule == "all_done"
    assert dag.get_task("w.wave1.must2").trigger_rule == "all_done"
    assert dag.get_task("f.gate").op_kwargs["non_critical"] == ["maybe"]
    assert dag.get_task("w.wave1_checkpoint").waves == [["w.wave1.must2"]]


def test_breakers_and_slow_step_settings_reach_the_tasks() -> None:
    dag = build_dag(plan_of("""
        recovery: learns
        alerts: {slow_step_factor: 3.0, min_samples: 6}
        defaults: {timeout: 1m}
        phases:
          - id: choose
            branch:
              - {when: "params.dry_run == false", then: primary, circuit_breaker: {failures: 2, within: 5}}
              - {otherwise: fallback}
          - id: primary
            for_each: {over: [a, b]}
            steps: [{id: copy, uses: bash, with: {bash_command: "echo {{ target }}"}, circuit_breaker: {failures: 1, within: 3}}]
          - {id: fallback, steps: [{id: page, uses: empty}]}
    """))
    choices = dag.task_dict["choose.choose"].op_kwargs["choices"]
    assert choices[0]["breaker"] == {"failures": 2, "within": 5} and "breaker" not in choices[1]
    hook = dag.task_dict["primary.each.copy"]._pre_execute_hook
    cells = {type(c.cell_contents).__name__: c.cell_contents for c in hook.__closure__ or ()}
    assert (cells["float"], cells["int"], cells["str"]) == (3.0, 6, "primary.copy")
    assert cells["dict"] == {"failures": 1, "within": 3}
    off = build_dag(plan_of("""
        recovery: quiet
        alerts: {slow_step_factor: null}
        phases: [{id: p, steps: [{id: s, uses: empty}]}]
    """))
    assert off.task_dict["p.s"]._pre_execute_hook.__name__ == "skip_in_dry_run"  # no watchdog, only the dry-run skip
