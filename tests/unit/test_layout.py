"""The layout: ids, kinds, trigger rules and edges of a plan's DAG, without Airflow."""

from __future__ import annotations

import pytest

from recovery_provider.plan.layout import MAX_LEAVES_FOLLOWED, build_layout, layout_record
from tests.conftest import plan_of

pytestmark = pytest.mark.unit

LOOKALIKES = """
recovery: lookalikes
defaults: {timeout: 1m}
phases:
  - id: before
    steps:
      - {id: fetch_targets, uses: empty}
      - {id: choose, uses: empty}
      - {id: x_checkpoint, uses: empty}
      - {id: wave1_targets, uses: empty}
finally:
  - {id: targets, uses: empty}
"""


def test_steps_named_like_control_tasks_are_steps() -> None:
    layout = build_layout(plan_of(LOOKALIKES))
    kinds = layout.kinds()
    for step in ("fetch_targets", "choose", "x_checkpoint", "wave1_targets"):
        assert kinds[f"before.{step}"] == "step"
    assert kinds["targets"] == "finally"
    assert layout.phase("before").work == ("before.fetch_targets", "before.choose", "before.x_checkpoint", "before.wave1_targets")


def test_sequential_chain_rules_and_edges() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
phases:
  - id: a
    steps:
      - {id: one, uses: empty, critical: false}
      - {id: two, uses: empty, skip_if: {uses: empty}}
      - {id: three, uses: empty}
  - id: b
    parallel: [{id: p, uses: empty}, {id: q, uses: empty, compensate: {uses: empty}}]
"""))
    one, probe, two, three = (layout.task(f"a.{t}") for t in ("one", "two__probe", "two", "three"))
    assert (one.trigger, one.upstream) == ("none_failed", ())  # no pools: no preflight task
    assert (probe.kind, probe.trigger, probe.upstream, probe.serves) == ("probe", "all_done", ("a.one",), "a.two")
    assert (two.trigger, two.upstream) == ("all_success", ("a.two__probe",))
    assert three.trigger == "none_failed"  # after a probed step, which may skip
    assert layout.task("a.gate").upstream == ("a.one", "a.two__probe", "a.two", "a.three")
    assert layout.task("b.p").upstream == layout.task("b.q").upstream == ("a.gate",)
    undo = layout.task("b.q__undo")
    assert (undo.kind, undo.trigger, undo.upstream, undo.serves) == ("undo", "one_failed", ("b.gate",), "b.q")
    assert layout.task("outcome").upstream == ("b.gate", "b.q__undo", "a.gate")


def test_fail_fast_gates_are_judged_by_their_trigger_rule_and_preflight_comes_with_pools() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
pools: {io: {slots: 2}}
phases:
  - {id: plain, parallel: [{id: p, uses: empty}, {id: q, uses: empty}]}
  - id: fan
    for_each: {over: [x, y], as: db}
    steps: [{id: s1, uses: bash, with: {bash_command: "echo {{ db }}"}}]
  - {id: soft, steps: [{id: s2, uses: empty, critical: false}]}
  - {id: undoable, steps: [{id: s3, uses: empty, compensate: {uses: empty}}]}
  - {id: lenient, on_failure: continue, steps: [{id: s4, uses: empty}]}
"""))
    ruled = {t.phase_id: t.trigger for t in layout.tasks if t.kind == "gate" and t.by_trigger_rule}
    assert ruled == {"plain": "none_failed_min_one_success", "fan": "none_failed_min_one_success"}
    assert all(t.trigger == "all_done" for t in layout.tasks if t.kind == "gate" and not t.by_trigger_rule)
    assert layout.task("preflight").kind == "preflight"
    assert layout.task("plain.p").upstream == ("preflight",)


def test_fan_out_chain_is_mapped_and_honours_non_critical_steps() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
params: {dbs: {type: array, default: [x, y]}}
phases:
  - id: f
    for_each: {over: {param: dbs}, as: db}
    steps:
      - {id: s, uses: empty, critical: false, compensate: {uses: empty}}
      - {id: t, uses: empty, compensate: {uses: empty}}
finally:
  - {id: cleanup, uses: empty}
"""))
    s, t = layout.task("f.each.s"), layout.task("f.each.t")
    assert s.mapped_by == t.mapped_by == "f.targets" and layout.task("f.targets").kind == "resolver"
    assert t.trigger == "all_done"  # s may fail without failing its target
    assert t.upstream == ("f.each.s", "f.targets")
    assert layout.task("f.gate").upstream == ("f.each.t",)
    assert layout.phase("f").work == ("f.each.s", "f.each.t")
    assert layout.task("f.undo.t__undo").upstream == ("f.gate", "f.targets")
    assert layout.task("f.undo.s__undo").serves == "f.each.s"
    assert layout.task("cleanup").upstream == ("f.gate", "f.undo.s__undo")


def test_waves_slice_health_and_checkpoint() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
params: {hosts: {type: array, default: [a, b, c]}}
phases:
  - id: w
    waves: {over: {param: hosts}, max_targets: 3, size: 2, health_check: {uses: empty}}
    steps: [{id: bounce, uses: empty, with: {}}]
"""))
    kinds = layout.kinds()
    assert [k for k in kinds if k.startswith("w.")] == [
        "w.targets", "w.wave1_targets", "w.wave1.bounce", "w.wave1_health", "w.wave1_checkpoint",
        "w.wave2_targets", "w.wave2.bounce", "w.wave2_health", "w.gate"]
    assert kinds["w.wave1_checkpoint"] == "wave_checkpoint" and kinds["w.wave1_health"] == "wave_health"
    assert layout.task("w.wave2_targets").upstream == ("w.wave1_checkpoint",)
    assert layout.task("w.wave2.bounce").wave == 1 and layout.task("w.wave2.bounce").mapped_by == "w.wave2_targets"
    assert layout.phase("w").waves == (("w.wave1.bounce", "w.wave1_health"), ("w.wave2.bounce", "w.wave2_health"))
    assert layout.task("w.gate").upstream == ("w.wave2_health",)


def test_branch_and_approval_are_their_phase_exit() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
params: {mode: {enum: [x, y], default: x}}
phases:
  - id: pick
    branch: [{when: "params.mode == 'x'", then: left}, {otherwise: right}]
  - {id: left, steps: [{id: l, uses: empty}]}
  - {id: right, steps: [{id: r, uses: empty}]}
  - {id: ok, approval: {subject: "Go?"}}
"""))
    assert layout.task("pick.choose").kind == "branch" and layout.phase("pick").exit == "pick.choose"
    assert layout.task("left.l").upstream == ("pick.choose",)
    assert layout.task("ok.approve").kind == "approval"
    # fail_fast phases: what comes next waits for the gate's own upstream, not for the gate
    assert layout.task("ok.approve").upstream == ("left.l", "right.r")
    assert layout.task("left.gate").by_trigger_rule and layout.task("left.gate").upstream == ("left.l",)
    # no `finally`, no compensation: no outcome task, the verdict is the listener's
    assert layout.get("outcome") is None


def test_a_wide_fail_fast_phase_is_followed_through_its_gate() -> None:
    """Up to MAX_LEAVES_FOLLOWED last tasks, the next phase waits for them (no scheduler loop at the
    boundary); past it, for the gate: leaves x entries edges would make wide specs slow to render."""
    def spec(width: int) -> str:
        def steps(name: str) -> str:
            return ", ".join(f"{{id: {name}{i}, uses: empty}}" for i in range(width))
        return f"""
recovery: r
defaults: {{timeout: 1m}}
phases:
  - {{id: a, parallel: [{steps("s")}]}}
  - {{id: b, parallel: [{steps("t")}]}}
"""
    narrow = build_layout(plan_of(spec(MAX_LEAVES_FOLLOWED)))
    assert narrow.task("b.t0").upstream == tuple(f"a.s{i}" for i in range(MAX_LEAVES_FOLLOWED))
    wide = build_layout(plan_of(spec(MAX_LEAVES_FOLLOWED + 1)))
    assert wide.task("a.gate").by_trigger_rule
    assert all(wide.task(f"b.t{i}").upstream == ("a.gate",) for i in range(MAX_LEAVES_FOLLOWED + 1))


def test_an_outcome_task_only_where_a_leaf_could_hide_a_failed_phase() -> None:
    base = """
recovery: r
defaults: {timeout: 1m}
phases:
  - {id: a, steps: [{id: s, uses: empty%s}]}
"""
    assert build_layout(plan_of(base % "")).get("outcome") is None
    undo = build_layout(plan_of(base % ", compensate: {uses: empty}"))
    assert undo.task("outcome").upstream == ("a.gate", "a.s__undo")
    final = build_layout(plan_of(base % "" + "finally: [{id: tidy, uses: empty}]\n"))
    assert final.task("outcome").upstream == ("tidy", "a.gate")


def test_a_non_critical_step_fails_no_wave() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
phases:
  - id: w
    waves: {over: [a, b], size: 1}
    steps:
      - {id: maybe, uses: empty, critical: false, with: {}}
      - {id: must, uses: empty, with: {}}
"""))
    assert layout.task("w.wave1.must").trigger == "all_done"
    assert layout.phase("w").waves == (("w.wave1.must",), ("w.wave2.must",))
    assert "w.wave1.maybe" in layout.phase("w").work  # the gate sees it, and knows it is non-critical


def test_literal_targets_map_without_a_resolver_unless_a_template_needs_one() -> None:
    layout = build_layout(plan_of("""
recovery: r
defaults: {timeout: 1m}
params: {tag: {type: string, default: t}}
phases:
  - id: f
    for_each: {over: [x, y], as: db}
    steps: [{id: s, uses: bash, with: {bash_command: "echo {{ db }}"}, compensate: {uses: bash, with: {bash_command: "undo {{ db }}"}}}]
  - id: w
    waves: {over: [a, b, c], size: 2, health_check: {uses: empty}}
    steps: [{id: bounce, uses: bash, with: {bash_command: "restart {{ item }}"}}]
  - id: t
    for_each: {over: [x], as: db}
    steps: [{id: u, uses: bash, with: {bash_command: "echo {{ db }} {{ params.tag }}"}}]
"""))
    kinds = layout.kinds()
    assert "f.targets" not in kinds and "w.targets" not in kinds and "w.wave1_targets" not in kinds
    s = layout.task("f.each.s")
    assert s.mapped and s.mapped_by is None and s.targets == ("x", "y") and s.upstream == ()
    assert layout.task("f.undo.s__undo").targets == ("x", "y")
    assert layout.phase("f").entries == ("f.each.s",)
    assert layout.task("w.wave1.bounce").targets == ("a", "b") and layout.task("w.wave2.bounce").targets == ("c",)
    assert layout.task("w.wave2.bounce").upstream == ("w.wave1_checkpoint",)
    assert layout.task("w.wave1.bounce").upstream == ("f.gate",)
    # {{ params.tag }} beside the target must be rendered at run time: the resolver stays
    assert kinds["t.targets"] == "resolver" and layout.task("t.each.u").mapped_by == "t.targets"
    assert layout_record(layout)["f.each.s"] == ["step", "f", "each", None, ["x", "y"]]
