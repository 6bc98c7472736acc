"""What a deployment adds to each task, as plain numbers the estimate can take (``--calibrate``).

The spec's own estimate counts only the work it knows (``expected_duration``, pauses, approvals).
On a real deployment every task also waits to be scheduled and started (a worker process, the
scheduler's loop), a deferred task makes a round trip through the triggerer, and the run ends a
little after its last task. ``evidence/calibration.py`` measures those figures in the run ledger
and hands them over as a :class:`Calibration`; nothing here reads the ledger or imports Airflow.

Task classes, as the deployment runs them:

- ``worker``: a task that starts a worker process (steps, health checks, resolvers, slices,
  probes, gates with a policy, branches, approvals, the outcome);
- ``scheduler``: settled by the scheduler alone (an EmptyOperator gate judged by trigger rule, a
  compensation skipped because nothing failed);
- ``deferred``: a wave checkpoint that pauses in the triggerer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TASK_CLASSES = ("worker", "scheduler", "deferred")


@dataclass(frozen=True)
class TaskTiming:
    """What the ledger measured of one task of the DAG being estimated (every instance, every run)."""

    latency: float  # median seconds from ready (the last end of its upstream) to its start
    duration: float  # median seconds an instance ran
    span: float  # median over runs: the slowest instance's time from its own ready to its end
    samples: int  # task instances measured


@dataclass(frozen=True)
class Calibration:
    """Per-class overheads of a deployment and the estimated DAG's own task timings, in seconds."""

    latency: Mapping[str, float]  # class -> median ready-to-start delay
    runtime: Mapping[str, float]  # class -> median time a task runs beyond its own work
    finish: float = 0.0  # the run's end after its last task's end
    stagger: float = 0.0  # each more instance of a fan-out started together adds this to its span
    tasks: Mapping[str, TaskTiming] = field(default_factory=dict)  # task id -> the same DAG's timings
    dag_runs: int = 0  # runs of the estimated DAG measured
    deployment_runs: int = 0  # runs of any DAG that gave the per-class figures

    def overhead(self, task_class: str) -> float:
        """What a task of the class costs beyond its own work when the DAG's history does not know it."""
        return self.latency.get(task_class, 0.0) + self.runtime.get(task_class, 0.0)

    def seconds(self, task_id: str, task_class: str, work: float, *, alongside: int = 1, capacity: int | None = None) -> float:
        """Expected seconds from a task being ready to its end.

        The DAG's own history wins: one instance (or a fan-out that fits its caps, ``alongside`` <=
        ``capacity``) takes the measured span from ready to its slowest instance's end; a fan-out
        queued behind its caps takes the class's latency and the measured duration per instance
        (the simulation queues it). Without history: the class's latency and run time around the
        spec's own work, and the stagger for each more target started alongside.
        """
        timing = self.tasks.get(task_id)
        if timing is None:
            together = min(alongside, capacity) if capacity is not None else alongside
            return self.overhead(task_class) + work + self.stagger * max(0, together - 1)
        if capacity is None or alongside <= capacity:
            return timing.span
        return self.latency.get(task_class, 0.0) + timing.duration

    def describe(self) -> list[str]:
        """One line per figure, for the plan's notes."""
        shown = ", ".join(f"{c} +{self.overhead(c):.2f} s" for c in TASK_CLASSES if c in self.latency)
        lines = [f"calibrated from {self.deployment_runs} run(s) on this deployment: per task {shown or 'nothing measured'}, "
                 f"+{self.stagger:.2f} s per target started alongside in a fan-out; the run ends {self.finish:.2f} s after its last task"]
        if self.tasks:
            lines.append(f"{len(self.tasks)} task(s) timed from {self.dag_runs} earlier run(s) of this DAG")
        else:
            lines.append("no earlier run of this DAG: steps take their expected_duration plus the per-task overhead")
        return lines
