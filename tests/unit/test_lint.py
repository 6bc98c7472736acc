from __future__ import annotations

import pytest

from recovery_provider.plan.lint import lint_plan
from tests.conftest import plan_of

pytestmark = pytest.mark.unit


def lint_codes(text: str) -> list[str]:
    return [d.code for d in lint_plan(plan_of(text))]


CLEAN = """
recovery: r
objectives: {rto: 1h}
defaults: {timeout: 5m}
phases:
  - {id: a, steps: [{id: s, uses: empty, expected_duration: 1m}]}
"""


def test_a_clean_spec_has_no_findings() -> None:
    assert lint_codes(CLEAN) == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("recovery: r\nphases: [{id: a, steps: [{id: s, uses: empty}]}]", "step-no-timeout"),
        ("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, approval: {subject: go?}}]", "approval-no-timeout"),
        ("recovery: r\nobjectives: {rto: 10m}\ndefaults: {timeout: 1h}\nphases: [{id: a, steps: [{id: s, uses: empty}]}]", "timeout-beyond-rto"),
        ("recovery: r\nobjectives: {rto: 10m}\ndefaults: {timeout: 5m}\nphases: [{id: a, steps: [{id: s, uses: empty, expected_duration: 20m}]}]", "step-beyond-rto"),
        ("recovery: r\nobjectives: {rto: 1h}\nrun_timeout: 30m\ndefaults: {timeout: 1m}\nphases: [{id: a, steps: [{id: s, uses: empty}]}]", "run-timeout-below-rto"),
        ("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, for_each: {over: [x, y, z]}, on_failure: {tolerate: 3}, steps: [{id: s, uses: empty}]}]", "tolerance-too-large"),
        ("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, parallel: [{id: s, uses: empty}, {id: t, uses: empty}], on_failure: {tolerate: '100%'}}]", "tolerance-too-large"),
        ("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, on_failure: continue, steps: [{id: s, uses: empty, compensate: {uses: empty}}]}]", "compensation-never-runs"),
        ("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, for_each: {over: {param: xs}}, steps: [{id: s, uses: empty}]}]\nparams: {xs: {type: array}}", "uncapped-fan-out"),
        ("recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, for_each: {over: {param: xs}, expected_targets: 2000, max_parallel: 4}, steps: [{id: s, uses: empty}]}]\nparams: {xs: {type: array}}", "fan-out-over-map-length"),
        ("recovery: r\npools: {io: {slots: 2}}\ndefaults: {timeout: 1m}\nphases: [{id: a, pool: io, for_each: {over: [x, y, z], max_parallel: 3}, steps: [{id: s, uses: empty}]}]", "cap-above-pool"),
        ("recovery: r\nschedule: '0 2 * * *'\nobjectives: {rpo: 1h}\ndefaults: {timeout: 1m}\nphases: [{id: a, steps: [{id: s, uses: empty}]}]", "schedule-beyond-rpo"),
        ("recovery: r\nschedule: '@weekly'\nobjectives: {rpo: 1d}\ndefaults: {timeout: 1m}\nphases: [{id: a, steps: [{id: s, uses: empty}]}]", "schedule-beyond-rpo"),
    ],
)
def test_each_rule_fires(text: str, code: str) -> None:
    assert code in lint_codes(text)


@pytest.mark.parametrize(
    "text",
    [
        # within bounds: tolerance below the fan-out, capped fan-out, hourly schedule under a 2h RPO
        "recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, for_each: {over: [x, y, z]}, on_failure: {tolerate: 2}, steps: [{id: s, uses: empty}]}]",
        "recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, for_each: {over: {param: xs}, max_parallel: 3}, steps: [{id: s, uses: empty}]}]\nparams: {xs: {type: array}}",
        "recovery: r\nschedule: '@hourly'\nobjectives: {rpo: 2h}\ndefaults: {timeout: 1m}\nphases: [{id: a, steps: [{id: s, uses: empty}]}]",
        "recovery: r\ndefaults: {timeout: 1m}\nphases: [{id: a, approval: {subject: go?, timeout: 5m}}]",
    ],
)
def test_rules_stay_quiet_within_bounds(text: str) -> None:
    assert lint_codes(text) == []
