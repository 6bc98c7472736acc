from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import compile_text, plan_of

pytestmark = pytest.mark.unit

HEAD = """
recovery: r
defaults: {timeout: 5m}
"""


def codes(text: str) -> list[str]:
    _, diagnostics = compile_text(text)
    return [d.code for d in diagnostics]


def test_phases_follow_each_other_by_default() -> None:
    plan = plan_of(HEAD + """
phases:
  - {id: a, steps: [{id: s1, uses: empty}]}
  - {id: b, steps: [{id: s2, uses: empty}]}
  - {id: c, after: a, steps: [{id: s3, uses: empty}]}
""")
    assert [(p.id, p.upstream) for p in plan.phases] == [("a", ()), ("b", ("a",)), ("c", ("a",))]
    assert sorted(plan.leaves) == ["b", "c"]


def test_the_phase_after_a_branch_joins_every_path() -> None:
    plan = plan_of(HEAD + """
params: {mode: promote}
phases:
  - id: choose
    branch:
      - {when: "params.mode == 'promote'", then: promote}
      - {otherwise: restore}
  - {id: promote, steps: [{id: p, uses: empty}]}
  - {id: restore, steps: [{id: r, uses: empty}]}
  - {id: verify, after: restore, steps: [{id: v, uses: empty}]}
  - {id: cutover, steps: [{id: c, uses: empty}]}
  - {id: report, steps: [{id: rep, uses: empty}]}
""")
    upstream = {p.id: p.upstream for p in plan.phases}
    assert upstream["promote"] == ("choose",)
    assert upstream["restore"] == ("choose",)
    assert upstream["cutover"] == ("promote", "verify")  # the dangling ends of both paths
    assert upstream["report"] == ("cutover",)  # after the join, order is linear again
    assert plan.phase("promote").chosen_by == "choose"
    assert plan.phase("choose").fallback == "restore"


def test_steps_inherit_step_then_phase_then_defaults() -> None:
    plan = plan_of("""
recovery: r
pools: {io: {slots: 2}, big: {slots: 4}}
defaults: {retries: 5, retry_delay: 10s, timeout: 1m, pool: io, queue: q0}
phases:
  - id: a
    pool: big
    queue: site_a
    steps:
      - {id: own, uses: empty, retries: 0, timeout: 2m, pool: io, queue: q1, pool_slots: 2}
      - {id: inherited, uses: empty}
  - {id: b, steps: [{id: plain, uses: bash}]}
""")
    own, inherited = plan.phase("a").steps
    (plain,) = plan.phase("b").steps
    assert (own.retries, own.timeout, own.pool, own.queue, own.pool_slots) == (0, timedelta(minutes=2), "io", "q1", 2)
    assert (inherited.retries, inherited.timeout, inherited.pool, inherited.queue) == (5, timedelta(minutes=1), "big", "site_a")
    assert (plain.pool, plain.queue, plain.retry_delay) == ("io", "q0", timedelta(seconds=10))
    assert plain.operator == "airflow.providers.standard.operators.bash:BashOperator"


def test_import_paths_are_accepted_as_operators() -> None:
    plan = plan_of(HEAD + """
phases:
  - id: a
    steps:
      - {id: x, uses: "my_company.ops:FlushCache"}
      - {id: y, uses: my_company.ops.FlushCache}
""")
    assert [s.operator for s in plan.phase("a").steps] == ["my_company.ops:FlushCache"] * 2


@pytest.mark.parametrize(
    ("phases", "code"),
    [
        ("[{id: a, after: nope, steps: [{id: s, uses: empty}]}]", "unknown-phase"),
        ("[{id: a, after: a, steps: [{id: s, uses: empty}]}]", "self-dependency"),
        ("[{id: a, after: b, steps: [{id: s, uses: empty}]}, {id: b, after: a, steps: [{id: t, uses: empty}]}]", "cycle"),
        ("[{id: a, steps: [{id: s, uses: empty}]}, {id: a, steps: [{id: t, uses: empty}]}]", "duplicate-id"),
        ("[{id: a, steps: [{id: s, uses: empty}]}, {id: b, steps: [{id: s, uses: empty}]}]", "duplicate-id"),
        ("[{id: a, steps: [{id: s, uses: empty, pool: nope}]}]", "undefined-pool"),
        ("[{id: a, branch: [{when: 'params.dry_run', then: b}]}, {id: b, steps: [{id: s, uses: empty}]}]", "branch-no-fallback"),
        ("[{id: a, branch: [{when: 'params.dry_run', then: b}, {otherwise: zz}]}, {id: b, steps: [{id: s, uses: empty}]}]", "unknown-phase"),
        ("[{id: a, branch: [{when: 'params.nope', then: b}, {otherwise: b}]}, {id: b, steps: [{id: s, uses: empty}]}]", "unknown-param"),
        ("[{id: a, branch: [{when: 'steps.later.output', then: b}, {otherwise: b}]}, {id: b, steps: [{id: later, uses: empty}]}]", "step-not-upstream"),
        ("[{id: a, for_each: {over: {param: nope}}, steps: [{id: s, uses: empty}]}]", "unknown-param"),
        ("[{id: a, for_each: {over: {param: dry_run}}, steps: [{id: s, uses: empty}]}]", "param-not-list"),
        ("[{id: a, for_each: {over: {step: ghost}}, steps: [{id: s, uses: empty}]}]", "unknown-step"),
        ("[{id: a, waves: {over: {step: s0}, size: 2}, steps: [{id: s, uses: empty}]}]", "waves-need-max-targets"),
        ("[{id: a, branch: [{when: 'params.dry_run', then: b}, {otherwise: c}]}, {id: b, steps: [{id: s, uses: empty}]}, {id: c, steps: [{id: t, uses: empty}]}, {id: d, after: a, steps: [{id: u, uses: empty}]}]", "unreachable-phase"),
        ("[{id: a, branch: [{when: 'params.dry_run', then: b}, {otherwise: c}]}, {id: b, after: c, steps: [{id: s, uses: empty}]}, {id: c, steps: [{id: t, uses: empty}]}]", "branch-target-after"),
    ],
)
def test_whole_spec_errors(phases: str, code: str) -> None:
    assert code in codes(HEAD + "phases: " + phases)


@pytest.mark.parametrize(
    "phases",
    [
        "[{id: preflight, steps: [{id: s, uses: empty}]}]",
        "[{id: a, steps: [{id: gate, uses: empty}]}]",
        "[{id: a, steps: [{id: s__undo, uses: empty}]}]",
        "[{id: a, steps: [{id: s__probe, uses: empty}]}]",
        "[{id: a, steps: [{id: outcome, uses: empty}]}]",
    ],
)
def test_ids_the_factory_uses_itself_are_reserved(phases: str) -> None:
    assert "reserved-id" in codes(HEAD + "phases: " + phases)


def test_pool_slots_beyond_the_pool_can_never_run() -> None:
    assert "pool-too-small" in codes(HEAD + """
pools: {io: {slots: 2}}
phases: [{id: a, steps: [{id: s, uses: empty, pool: io, pool_slots: 3}]}]
""")


def test_a_cycle_names_its_phases() -> None:
    _, diagnostics = compile_text(HEAD + """
phases:
  - {id: a, after: c, steps: [{id: s1, uses: empty}]}
  - {id: b, after: a, steps: [{id: s2, uses: empty}]}
  - {id: c, after: b, steps: [{id: s3, uses: empty}]}
""")
    (cycle,) = [d for d in diagnostics if d.code == "cycle"]
    assert "a -> b -> c -> a" in cycle.message or "c -> b -> a -> c" in cycle.message or "a -> c -> b -> a" in cycle.message


@pytest.mark.parametrize(
    ("over", "extra", "count", "known"),
    [
        ("[x, y, z]", "", 3, True),
        ("{param: dbs}", "", 2, True),
        ("{param: dbs}", ", expected_targets: 40", 40, True),
        ("{step: list_dbs}", "", 1, False),
        ("{step: list_dbs}", ", expected_targets: 7", 7, True),
    ],
)
def test_fan_out_count_for_estimates(over: str, extra: str, count: int, known: bool) -> None:
    plan = plan_of(HEAD + f"""
params: {{dbs: [a, b]}}
phases:
  - {{id: discover, steps: [{{id: list_dbs, uses: empty}}]}}
  - {{id: fan, for_each: {{over: {over}{extra}}}, steps: [{{id: s, uses: empty}}]}}
""")
    fan = plan.phase("fan").fan_out
    assert fan is not None and (fan.count, fan.count_known) == (count, known)


def test_waves_are_laid_out_from_max_targets() -> None:
    plan = plan_of(HEAD + """
params: {services: {type: array, default: [a, b, c]}}
phases:
  - id: w
    waves: {over: {param: services}, size: 4, max_targets: 10, pause: 30s}
    steps: [{id: restart, uses: empty}]
""")
    waves = plan.phase("w").waves
    assert waves is not None and waves.wave_count == 3 and waves.pause == timedelta(seconds=30)
