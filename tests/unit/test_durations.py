from __future__ import annotations

from datetime import timedelta

import pytest

from recovery_provider.spec.durations import format_duration, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("500ms", 0.5), (" 1h 5m ", 3900), ("1.5h", 5400)],
)
def test_parses_human_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(30, "has no unit: write 30s"), ("5x", "is not a duration"), ("", "empty duration"), ("m5", "is not a duration"),
     ("400d", "longer than a year"), (True, "expected a duration"), ([1], "expected a duration")],
)
def test_rejects_with_a_fix(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)


@pytest.mark.parametrize("text", ["30s", "15m", "1h30m", "2d3h", "1h0m5s"])
def test_format_round_trips(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_format_is_compact() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(0.25) == "250ms"
