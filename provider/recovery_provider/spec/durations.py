"""Human durations (``30s``, ``15m``, ``1h30m``, ``2d``) as used throughout specs."""

from __future__ import annotations

import functools
import re
from datetime import timedelta

from recovery_provider.exceptions import ArgumentError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w)\s*)+$"


def parse_duration(value: object) -> timedelta:
    """Parse ``1h30m`` style text into a timedelta; reject bare numbers, which hide their unit."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ArgumentError(f"expected a duration such as 30s, 15m or 1h30m, got {type(value).__name__}")
    if isinstance(value, (int, float)):
        raise ArgumentError(f"'{value}' has no unit: write {value}s, {value}m or {value}h")
    return _parse_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_text(value: str) -> timedelta:
    """Cached: a spec repeats the same few durations on every step, and DAG files are parsed often."""
    text = value.replace(" ", "").lower()
    if not text:
        raise ArgumentError("empty duration: write something like 30s, 15m or 1h30m")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ArgumentError(
            f"'{value}' is not a duration: use a number and a unit (ms, s, m, h, d, w), e.g. 90s, 15m, 1h30m"
        )
    if total > 366 * 86400:
        raise ArgumentError(f"'{value}' is longer than a year: that is not a recovery duration")
    return timedelta(seconds=total)


def format_duration(delta: timedelta | float) -> str:
    """Inverse of :func:`parse_duration`, compact: 5400s -> ``1h30m``."""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            count, rest = divmod(rest, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)
