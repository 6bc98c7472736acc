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
    """The spec's estimate for the path this run took, recorded by the run's outcome task."""

    planned_seconds: float
    scenario: str  # which branch choices the estimate assumed
    critical_path: list[str] = Field(default_factory=list)
    phase_windows: dict[str, tuple[float, float]] = Field(default_factory=dict)  # seconds from run start
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    assumptions: list[str] = Field(default_factory=list)


class RunRecord(_Model):
    """One run of a recovery DAG: the evidence the report and the runs page are made of."""

    schema_version: int = SCHEMA_VERSION
    dag_id: str
    run_id: str
    run_type: str | None = None
    state: str
    queued_at: dt.datetime | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    achieved_seconds: float | None = None  # end - start: the recovery time this run achieved
    outcome: str | None = None  # ok | partial | failed, from the outcome task (None: it did not decide)
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

    @property
    def rto_seconds(self) -> float | None:
        return self.plan.rto_seconds if self.plan else None

    @property
    def rpo_seconds(self) -> float | None:
        return self.plan.rpo_seconds if self.plan else None
