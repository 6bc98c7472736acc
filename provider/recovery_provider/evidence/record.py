"""What the ledger keeps of one recovery run: facts read off Airflow when the run ended.

A record holds identifiers, states, times and counts, never task arguments, XCom values or
connection fields: what a step did is told by its state and times. The only values taken from
task results are the recovery points' timestamps (for the RPO), the fan-out targets' labels
(``orders``, ``billing``: what the fan-out ran over), a point-in-time restore's achieved RPO and
restore time (two numbers), and which backup a restore used (a fallback, why). Nothing here
imports Airflow.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

TaskKind = Literal["step", "gate", "approval", "undo", "probe", "control", "finally"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskRecord(_Model):
    """One task instance (one target of a fan-out) as it ended."""

    task_id: str
    map_index: int = -1
    target: str | None = None  # fan-outs: the target's label (rendered map index, else the resolver's target)
    phase: str | None = None  # the spec phase; None for preflight, finally steps and outcome
    kind: TaskKind = "step"
    state: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    duration: float | None = None  # seconds, as Airflow measured them
    tries: int = 0
    operator: str | None = None
    upstream: list[str] = Field(default_factory=list)  # task ids this task waits for

    @property
    def key(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


class ApprovalRecord(_Model):
    """A manual approval: who answered what, and when (or that nobody did)."""

    task_id: str
    subject: str
    options: list[str] = Field(default_factory=list)
    chosen: list[str] | None = None
    responded_by: str | None = None  # the user's name; None when the timeout answered
    asked_at: dt.datetime | None = None
    responded_at: dt.datetime | None = None


class PlanEvidence(_Model):
    """The spec's estimate for the path this run took, estimated when the run was recorded."""

    planned_seconds: float
    scenario: str  # which branch choices the estimate assumed
    critical_path: list[str] = Field(default_factory=list)
    phase_windows: dict[str, tuple[float, float]] = Field(default_factory=dict)  # seconds from run start
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    assumptions: list[str] = Field(default_factory=list)
    # additive: the spec's slow-step settings (spec/alerts.py), so the ledger flags what the alert saw
    slow_step_factor: float | None = None
    min_samples: int | None = None


class SlowStepRecord(_Model):
    """A step's try that ran past its alert threshold (p95 x factor of the history before this run)."""

    task: str  # the task instance's key: task_id, or task_id[map_index]
    step: str  # the step's name in the history: phase.step
    seconds: float
    threshold_seconds: float
    median_seconds: float
    p95_seconds: float
    samples: int

    def describe(self) -> str:
        return (f"{self.task}: {self.seconds:.1f}s, past its alert threshold of {self.threshold_seconds:.1f}s "
                f"(usually {self.median_seconds:.1f}s, p95 {self.p95_seconds:.1f}s over {self.samples} tries)")


class BreakerRecord(_Model):
    """A circuit breaker that was open in this run: the path was not called, and why."""

    name: str  # a branch case's phase, or a step as phase.step
    kind: Literal["branch", "step"]
    reason: str
    fallback: str | None = None  # branches: the phase taken instead

    def describe(self) -> str:
        instead = f"took {self.fallback} instead" if self.fallback else "failed without calling out"
        return f"{self.name}: {instead}; {self.reason}"


class ClearRecord(_Model):
    """A clear that started a re-run, as Airflow's audit log (the ``log`` table) tells it."""

    by: str | None = None  # the user; None when the log did not say
    at: dt.datetime | None = None
    event: str | None = None  # post_clear_task_instances, clear_dag_run, ...


class AttemptRecord(_Model):
    """One attempt of a run: its first run, or a re-run after task instances were cleared.

    ``tasks`` are the task instances this attempt decided (a re-run: those cleared, as they ended
    again); those it did not touch keep their earlier attempt's record.
    """

    number: int  # 1: the first run; n: the (n-1)th re-run (Airflow's clear_number + 1)
    state: str
    outcome: str | None = None
    queued_at: dt.datetime | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    failed_phases: list[str] = Field(default_factory=list)
    partial_phases: list[str] = Field(default_factory=list)
    not_run_phases: list[str] = Field(default_factory=list)
    tasks: list[TaskRecord] = Field(default_factory=list)
    cleared: ClearRecord | None = None  # what started this attempt (attempts after the first)
    reconstructed: bool = False  # rebuilt from Airflow's task instance history: the ledger missed its end

    @property
    def first_time(self) -> dt.datetime | None:
        """When this attempt was asked for: queued, else started."""
        return self.queued_at or self.start


class RunRecord(_Model):
    """One run of a recovery DAG: the evidence the report and the runs page are made of.

    The run's fields describe it as it finally ended (``tasks``: every task instance's last try);
    ``attempts`` keep each attempt, oldest first, so a re-run never overwrites the failure before
    it. ``achieved_seconds`` runs from the first attempt's queued time to the final end: the time
    the recovery really took, however many re-runs it needed.
    """

    schema_version: int = SCHEMA_VERSION
    dag_id: str
    run_id: str
    run_type: str | None = None
    state: str
    queued_at: dt.datetime | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    achieved_seconds: float | None = None  # end - first queued: the recovery time this run achieved
    outcome: str | None = None  # ok | partial | failed (evidence/verdict.py; None: not decided)
    failed_phases: list[str] = Field(default_factory=list)
    partial_phases: list[str] = Field(default_factory=list)
    dry_run: bool = False
    recovery_point: dt.datetime | None = None  # oldest backup the run restored or relied on
    data_age_seconds: float | None = None  # run start - recovery point, 0 when the data is newer
    achieved_rpo_seconds: float | None = None  # point-in-time restores: target - last restored commit
    restore_seconds: float | None = None  # point-in-time restores: pgBackRest's restore time
    tasks: list[TaskRecord] = Field(default_factory=list)
    restores: list[str] = Field(default_factory=list)  # evidence/restores.py: backup restored, fallback and why
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    plan: PlanEvidence | None = None
    recorded_at: dt.datetime
    # additive (schema 1 records without them still load)
    not_run_phases: list[str] = Field(default_factory=list)  # gates failed only because an upstream phase did
    clear_number: int = 0  # Airflow's count of clears of this run
    attempts: list[AttemptRecord] = Field(default_factory=list)  # oldest first; empty in old records
    incident: str | None = None  # the run's `incident` param: runs that share it are one incident
    note: str | None = None  # the verdict the listener put on the DAG run's note
    slow_steps: list[SlowStepRecord] = Field(default_factory=list)  # evidence/history.py, at record time
    breakers: list[BreakerRecord] = Field(default_factory=list)  # circuit breakers open in this run

    @property
    def rto_seconds(self) -> float | None:
        return self.plan.rto_seconds if self.plan else None

    @property
    def first_queued_at(self) -> dt.datetime | None:
        """When the recovery was first asked for: the first attempt's queued (else start) time."""
        first = self.attempts[0] if self.attempts else None
        return (first.first_time if first else None) or self.queued_at or self.start

    @property
    def rpo_seconds(self) -> float | None:
        return self.plan.rpo_seconds if self.plan else None
