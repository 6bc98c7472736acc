"""The ledger's history of one DAG: what slow-step alerts and circuit breakers learn from.

A small summary object kept beside the DAG's run records (``<ledger>/<dag>/_history.json``, see
:meth:`Ledger.read_history`), folded in by the scheduler's listener each time a run's record is
written: one read and one write, never a scan of the records, so a ledger of 10,000 runs costs
what a ledger of 30 does. Bounded: the DAG's last :data:`HISTORY_RUNS` runs, and per step and per
phase the last :data:`HISTORY_RUNS` runs that ran it. A re-run of a run (same run_id) replaces that
run's contribution. Every reader of history (the slow-step watchdog, the flag in the record, the
circuit breakers, ``recovery breaker``) goes through this module.

What is kept:
- per step (``phase.step``, a fan-out's targets and waves pooled): each run's outcome and its
  successful tries' durations (at most :data:`SAMPLES_PER_RUN` per run, evenly spaced order
  statistics of a large fan-out);
- per phase: each run's result (a branch case's circuit breaker watches its phase);
- per circuit breaker: when it was last reset by hand.

Pure functions over records, except :func:`load_history` and :func:`reset_breaker` which take a
ledger. Nothing here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from recovery_provider.spec.alerts import HISTORY_RUNS, Alerts, CircuitBreaker

if TYPE_CHECKING:  # imported where used: the slow-step watchdog reads history without building them
    from recovery_provider.evidence.ledger import Ledger
    from recovery_provider.evidence.record import BreakerRecord, RunRecord, SlowStepRecord, TaskRecord

SAMPLES_PER_RUN = 20
BREAKER_XCOM_KEY = "recovery_breaker"  # a BreakerRecord, pushed by the task that found a breaker open
Result = Literal["success", "failed", "open"]  # open: the path was not called, its breaker was open


class _Model(BaseModel):
    # built on first use: the slow-step watchdog reads the raw JSON (usual_from_json) without them
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RunMark(_Model):
    run_id: str
    at: dt.datetime  # the run's first queued time: the order of runs
    recorded_at: dt.datetime  # when the listener folded it in (resets compare with this)


class StepRun(_Model):
    run_id: str
    at: dt.datetime
    outcome: Result | None = None  # None: it did not run (skipped, not reached)
    durations: list[float] = Field(default_factory=list)  # successful tries, seconds, sorted


class PhaseRun(_Model):
    run_id: str
    at: dt.datetime
    result: Result


class History(_Model):
    schema_version: int = 1
    dag_id: str
    runs: list[RunMark] = Field(default_factory=list)  # the DAG's last runs, oldest first
    steps: dict[str, list[StepRun]] = Field(default_factory=dict)
    phases: dict[str, list[PhaseRun]] = Field(default_factory=dict)
    resets: dict[str, dt.datetime] = Field(default_factory=dict)  # breaker name -> reset by hand at
    updated_at: dt.datetime | None = None


T = TypeVar("T", RunMark, StepRun, PhaseRun)


def _last(entries: Iterable[T]) -> list[T]:
    return sorted(entries, key=lambda e: e.at)[-HISTORY_RUNS:]


def step_key(task: TaskRecord) -> str | None:
    """A step task's name in the history: ``phase.step`` whatever group or wave it ran in."""
    if task.kind not in ("step", "finally"):
        return None
    step = task.task_id.rsplit(".", 1)[-1]
    return f"{task.phase}.{step}" if task.phase else step


def _seconds(task: TaskRecord) -> float | None:
    if task.duration is not None:
        return float(task.duration)
    return (task.end - task.start).total_seconds() if task.start and task.end else None


def _thin(values: Sequence[float], limit: int = SAMPLES_PER_RUN) -> list[float]:
    ordered = sorted(values)
    if len(ordered) <= limit:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (limit - 1))] for i in range(limit)]


def _run_at(record: RunRecord) -> dt.datetime:
    return record.first_queued_at or record.recorded_at


def step_runs(record: RunRecord) -> dict[str, StepRun]:
    """Each step's outcome in this run (failed when any target failed) and its successful durations."""
    opened = {b.name for b in record.breakers if b.kind == "step"}
    tasks: dict[str, list[TaskRecord]] = {}
    for task in record.tasks:
        key = step_key(task)
        if key is not None:
            tasks.setdefault(key, []).append(task)
    at = _run_at(record)
    found = {}
    for key, members in tasks.items():
        states = {t.state for t in members}
        outcome: Result | None = (
            "open" if key in opened else "failed" if "failed" in states else "success" if "success" in states else None
        )
        durations = [d for t in members if t.state == "success" and (d := _seconds(t)) is not None]
        found[key] = StepRun(run_id=record.run_id, at=at, outcome=outcome, durations=_thin(durations))
    return found


def phase_results(record: RunRecord) -> dict[str, Result]:
    """Each phase's result in this run; phases that did not run (not chosen, not reached) have none.
    A partial phase (failures its policy accepted) counts as a success."""
    opened = {b.name for b in record.breakers if b.kind == "branch"}
    ran: set[str] = set()
    gate_failed: set[str] = set()
    for task in record.tasks:
        if task.phase is None:
            continue
        if task.kind == "gate" and task.state in ("failed", "upstream_failed"):  # a fail_fast gate: upstream_failed
            gate_failed.add(task.phase)
        elif task.kind == "step" and task.state in ("success", "failed"):
            ran.add(task.phase)
    failed = set(record.failed_phases) if record.outcome is not None else gate_failed
    results: dict[str, Result] = {p: "open" for p in opened}
    for phase in ran | failed:
        if phase not in record.not_run_phases:
            results[phase] = "failed" if phase in failed else "success"
    return results


def without(history: History, run_id: str) -> History:
    """The history before ``run_id`` was folded in (for a re-run: before its earlier attempts)."""
    return history.model_copy(update={
        "runs": [r for r in history.runs if r.run_id != run_id],
        "steps": {k: [e for e in v if e.run_id != run_id] for k, v in history.steps.items()},
        "phases": {k: [e for e in v if e.run_id != run_id] for k, v in history.phases.items()},
    })


def fold(history: History, record: RunRecord, now: dt.datetime | None = None) -> History:
    """``history`` with ``record``'s run in it (replacing what an earlier end of the same run left).
    Dry runs are left out: their steps change nothing and take no time, they would skew both."""
    if record.dry_run:
        return history
    base = without(history, record.run_id)
    at = _run_at(record)
    steps = dict(base.steps)
    for key, entry in step_runs(record).items():
        steps[key] = _last([*steps.get(key, []), entry])
    phases = dict(base.phases)
    for phase, result in phase_results(record).items():
        phases[phase] = _last([*phases.get(phase, []), PhaseRun(run_id=record.run_id, at=at, result=result)])
    stamp = now or dt.datetime.now(dt.timezone.utc)
    return base.model_copy(update={
        "runs": _last([*base.runs, RunMark(run_id=record.run_id, at=at, recorded_at=stamp)]),
        "steps": {k: v for k, v in steps.items() if v}, "phases": {k: v for k, v in phases.items() if v},
        "updated_at": stamp,
    })


# -- usual durations and slow steps ----------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between order statistics."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Usual:
    """A step's usual duration: its successful tries in the history, pooled over targets and runs."""

    median: float
    p95: float
    samples: int

    def threshold(self, factor: float) -> float:
        return self.p95 * factor

    def describe(self, factor: float) -> str:
        return (f"usually {self.median:.1f}s (median), p95 {self.p95:.1f}s over {self.samples} tries: "
                f"alert past {self.threshold(factor):.1f}s")


def usual_duration(history: History, step: str, min_samples: int) -> Usual | None:
    """None until the history holds ``min_samples`` successful tries of the step."""
    return _usual([d for entry in history.steps.get(step, []) for d in entry.durations], min_samples)


def usual_from_json(text: str, step: str, min_samples: int, run_id: str | None = None) -> Usual | None:
    """:func:`usual_duration` straight from the summary's JSON (``run_id``'s own entry left out): what
    a task reads in the background while its step runs, without building the models."""
    entries = json.loads(text).get("steps", {}).get(step, [])
    return _usual([float(d) for e in entries if e.get("run_id") != run_id for d in e.get("durations", [])], min_samples)


def _usual(samples: list[float], min_samples: int) -> Usual | None:
    if len(samples) < max(min_samples, 1):
        return None
    return Usual(median=statistics.median(samples), p95=percentile(samples, 0.95), samples=len(samples))


def alert_settings(record: RunRecord) -> tuple[float | None, int]:
    """(factor, min_samples) the run's spec set, as its outcome task recorded them; defaults without."""
    if record.plan is None:
        defaults = Alerts()
        return defaults.slow_step_factor, defaults.min_samples
    return record.plan.slow_step_factor, record.plan.min_samples or Alerts().min_samples


def slow_steps(record: RunRecord, history: History) -> list[SlowStepRecord]:
    """The run's step tries that ran past their threshold, judged by the history before this run."""
    from recovery_provider.evidence.record import SlowStepRecord

    factor, min_samples = alert_settings(record)
    if factor is None or record.dry_run:
        return []
    before = without(history, record.run_id)
    usual: dict[str, Usual | None] = {}
    found = []
    for task in record.tasks:
        key, took = step_key(task), _seconds(task)
        if key is None or took is None:
            continue
        if key not in usual:
            usual[key] = usual_duration(before, key, min_samples)
        known = usual[key]
        if known is not None and took > known.threshold(factor):
            found.append(SlowStepRecord(
                task=task.key, step=key, seconds=round(took, 2), threshold_seconds=round(known.threshold(factor), 2),
                median_seconds=round(known.median, 2), p95_seconds=round(known.p95, 2), samples=known.samples,
            ))
    return found


# -- circuit breakers ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BreakerState:
    name: str
    kind: Literal["branch", "step"]
    breaker: CircuitBreaker
    failures: tuple[str, ...]  # run ids of the failures that count, oldest first
    reset_at: dt.datetime | None = None

    @property
    def open(self) -> bool:
        return len(self.failures) >= self.breaker.failures

    def reason(self, dag_id: str) -> str:
        what = f"phase '{self.name}'" if self.kind == "branch" else f"step '{self.name}'"
        return (f"circuit breaker '{self.name}' is open: {what} failed in {len(self.failures)} of the last "
                f"{self.breaker.within} runs (runs {', '.join(self.failures[-3:])}; opens at "
                f"{self.breaker.failures}); close it with `recovery breaker reset {dag_id} {self.name}`")


def breaker_state(history: History, name: str, kind: Literal["branch", "step"], breaker: CircuitBreaker,
                  run_id: str | None = None) -> BreakerState:
    """The breaker over the DAG's last ``within`` runs (``run_id``, the run asking, left out): the
    failures since the last success of the path and since the last reset. Runs in which the path
    was not called (not chosen, or blocked by this breaker) take a place in the window too, so
    failures age out: a breaker left open lets a trial through once fewer than ``failures`` of them
    remain among the last ``within`` runs (a half-open state counted in runs)."""
    window = [r for r in history.runs if r.run_id != run_id][-breaker.within:]
    entries = history.steps.get(name, []) if kind == "step" else history.phases.get(name, [])
    results: dict[str, Result | None] = {
        e.run_id: e.outcome if isinstance(e, StepRun) else e.result for e in entries
    }
    reset_at = history.resets.get(name)
    failures: list[str] = []
    for mark in window:
        if reset_at is not None and mark.recorded_at <= reset_at:
            continue
        result = results.get(mark.run_id)
        if result == "success":
            failures = []
        elif result == "failed":
            failures.append(mark.run_id)
    return BreakerState(name, kind, breaker, tuple(failures), reset_at)


def breaker_note(breakers: Sequence[BreakerRecord]) -> str:
    """One line for the DAG run's note: which breakers were open and what was done instead."""
    if not breakers:
        return ""
    parts = [f"{b.name} -> {b.fallback}" if b.fallback else f"{b.name} (not called)" for b in breakers]
    return "circuit breaker open: " + "; ".join(parts)


def reset(history: History, name: str, now: dt.datetime | None = None) -> History:
    """Close a breaker by hand: failures folded in before now no longer count."""
    stamp = now or dt.datetime.now(dt.timezone.utc)
    return history.model_copy(update={"resets": {**history.resets, name: stamp}, "updated_at": stamp})


def known_paths(history: History) -> list[str]:
    return sorted({*history.phases, *history.steps})


@dataclass(frozen=True)
class PathStatus:
    name: str
    results: list[str]  # oldest first
    streak: int  # failures since the last success or reset
    reset_at: str | None


def recent_results(history: History, last: int = 10) -> list[PathStatus]:
    """Per phase and step: its last results (oldest first) and the failures since its last success
    or reset (what a breaker counts; the window is the spec's), for ``recovery breaker status``."""
    rows: list[PathStatus] = []
    for name in known_paths(history):
        kind: Literal["branch", "step"] = "branch" if name in history.phases else "step"
        results = ([e.result for e in history.phases[name]] if kind == "branch"
                   else [e.outcome or "-" for e in history.steps[name]])
        everything = CircuitBreaker(failures=HISTORY_RUNS, within=HISTORY_RUNS)
        streak = len(breaker_state(history, name, kind, everything).failures)
        reset_at = history.resets.get(name)
        rows.append(PathStatus(name, list(results[-last:]), streak, reset_at.isoformat() if reset_at else None))
    return rows


# -- through a ledger ------------------------------------------------------------------------------

def load_history(dag_id: str, ledger: Ledger | None = None) -> History:
    """The DAG's history from ``ledger`` (default: the configured one); empty when there is none yet."""
    from recovery_provider.evidence.ledger import Ledger

    return (ledger or Ledger()).read_history(dag_id)


def reset_breaker(ledger: Ledger, dag_id: str, name: str, now: dt.datetime | None = None) -> History:
    """Reset one breaker in the ledger's history (``recovery breaker reset``); returns the new history."""
    history = ledger.read_history(dag_id)
    updated = reset(history, name, now)
    ledger.write_history(updated)
    return updated


def record_run(record: RunRecord, history: History, opened: Sequence[BreakerRecord] = ()) -> RunRecord:
    """The record with what history says of it: the breakers open in the run and its slow steps."""
    with_breakers = record.model_copy(update={"breakers": list(opened)}) if opened else record
    return with_breakers.model_copy(update={"slow_steps": slow_steps(with_breakers, history)})
