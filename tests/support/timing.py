"""What scheduler tests read from task-instance timestamps: windows and peak concurrency."""

from __future__ import annotations

from datetime import datetime

from tests.support.airflow_cluster import TaskInstance


def window(ti: TaskInstance) -> tuple[datetime, datetime]:
    assert ti.start_date is not None and ti.end_date is not None, ti
    return ti.start_date, ti.end_date


def peak_concurrency(instances: list[TaskInstance]) -> int:
    """Most of `instances` running at one instant; an end sorts before a start at the same
    instant, so back-to-back tasks do not count as overlapping."""
    events = sorted([(window(t)[0], 1) for t in instances] + [(window(t)[1], -1) for t in instances])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak
