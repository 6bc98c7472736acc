from __future__ import annotations

import pytest

from recovery_provider.spec.expressions import UnknownState, parse_condition

pytestmark = pytest.mark.unit


def test_collects_references() -> None:
    condition = parse_condition("params.kind == 'a' and steps.lag.output.seconds < 30 or steps.probe.output['ok']")
    assert condition.params == {"kind"}
    assert condition.steps == {"lag", "probe"}


@pytest.mark.parametrize(
    ("text", "params", "outputs", "expected"),
    [
        ("params.kind == 'replica_healthy'", {"kind": "replica_healthy"}, {}, True),
        ("params.kind == 'replica_healthy'", {"kind": "primary_lost"}, {}, False),
        ("params.region in ['eu', 'us']", {"region": "eu"}, {}, True),
        ("not params.dry_run", {"dry_run": False}, {}, True),
        ("steps.lag.output.seconds <= 30", {}, {"lag": {"seconds": 12}}, True),
        ("steps.lag.output['seconds'] > 30", {}, {"lag": {"seconds": 12}}, False),
        ("1 < params.n < 5", {"n": 3}, {}, True),
        ("steps.ok.output == true", {}, {"ok": True}, True),
        ("params.x != null", {"x": None}, {}, False),
    ],
)
def test_evaluates(text: str, params: dict[str, object], outputs: dict[str, object], expected: bool) -> None:
    assert parse_condition(text).evaluate(params, outputs) is expected


@pytest.mark.parametrize(
    ("text", "params", "outputs"),
    [
        ("steps.lag.output.seconds < 30", {}, {}),  # the probe never ran or failed
        ("steps.lag.output.seconds < 30", {}, {"lag": None}),
        ("steps.lag.output.seconds < 30", {}, {"lag": {"seconds": None}}),  # None < 30: a type clash
        ("params.missing == 1", {}, {}),
    ],
)
def test_undecidable_is_an_unknown_state(text: str, params: dict[str, object], outputs: dict[str, object]) -> None:
    with pytest.raises(UnknownState):
        parse_condition(text).evaluate(params, outputs)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os').system('id')", "is not allowed"),
        ("params.x.__class__ == 1", None),
        ("open('/etc/passwd')", "is not allowed"),
        ("os.environ", "not a reference"),
        ("lambda: 1", "is not allowed"),
        ("params.kind ==", "not a valid expression"),
        ("x == 1", "'x' is not known"),
        ("params.a if params.b else params.c", "is not allowed"),
    ],
)
def test_rejects_anything_but_the_small_language(text: str, fragment: str | None) -> None:
    if fragment is None:  # attribute chains are plain lookups of keys, never Python attributes
        assert parse_condition(text).params == {"x"}
        with pytest.raises(UnknownState):
            parse_condition(text).evaluate({"x": 1}, {})
        return
    with pytest.raises(ValueError, match=fragment):
        parse_condition(text)
