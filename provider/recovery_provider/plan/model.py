"""The plan: an Airflow-free graph compiled from a spec, with every inherited setting resolved.

The renderer turns a Plan into a DAG without looking back at the spec; lint and estimates read
it too. Nothing here imports Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from recovery_provider.spec.alerts import CircuitBreaker
from recovery_provider.spec.diagnostics import Path
from recovery_provider.spec.expressions import Condition
from recovery_provider.spec.models import PhaseKind, RecoverySpec
from recovery_provider.spec.phase_kinds import Approval, FailurePolicy, TargetSource

DEFAULT_POOL = "default_pool"
# Airflow's [core] max_active_tasks_per_dag default: a cap every run has unless the spec sets one.
AIRFLOW_MAX_ACTIVE_TASKS = 16
# Task ids the DAG factory gives its own tasks: at the top level, and inside each phase's group.
RESERVED_TOP_LEVEL = frozenset({"preflight", "outcome"})
RESERVED_IN_PHASE = frozenset({"gate"})
PROBE_SUFFIX = "__probe"  # the skip_if probe of step X is task X__probe
UNDO_SUFFIX = "__undo"  # the compensation of step X is task X__undo
# Airflow's [core] max_map_length default: a fan-out over more targets fails at run time.
AIRFLOW_MAX_MAP_LENGTH = 1024


@dataclass(frozen=True)
class PlanAction:
    """A compensation, idempotency probe or health check: an operator call with its arguments."""

    operator: str  # "module:attribute"
    uses: str
    args: dict[str, Any]
    timeout: timedelta | None
    expected_duration: timedelta | None
    path: Path


@dataclass(frozen=True)
class PlanStep:
    id: str
    phase_id: str | None  # None for `finally` steps
    operator: str  # "module:attribute"
    uses: str
    args: dict[str, Any]
    display_name: str
    description: str
    retries: int
    retry_delay: timedelta
    backoff: float
    max_retry_delay: timedelta | None
    timeout: timedelta | None
    pool: str | None
    pool_slots: int
    queue: str | None
    expected_duration: timedelta | None
    critical: bool
    compensate: PlanAction | None
    skip_if: PlanAction | None
    path: Path
    retry_on: tuple[str, ...] = ()  # retry_rules: which errors are worth a retry
    no_retry_on: tuple[str, ...] = ()
    breaker: CircuitBreaker | None = None  # fail at once after repeated failures (evidence/history.py)

    @property
    def key(self) -> str:
        """The step's name in the ledger's history: `phase.step` (`step` for finally steps)."""
        return f"{self.phase_id}.{self.id}" if self.phase_id else self.id


@dataclass(frozen=True)
class FanOutPlan:
    """Targets of a for_each or waves phase; `count` is what estimates assume."""

    source: TargetSource
    arg_name: str
    count: int
    count_known: bool  # False when `count` is a guess (run-time source without a hint)
    max_parallel: int | None = None
    # The targets, when the DAG maps over them as written (plan.targets.literal_targets): no
    # resolver task. None: a resolver task gives them at run time.
    static_targets: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class WavesPlan:
    size: int
    pause: timedelta
    health_check: PlanAction | None
    max_failed_waves: int
    wave_count: int  # waves laid out when the DAG is built (from max_targets); estimates use the count


@dataclass(frozen=True)
class BranchChoice:
    condition: Condition | None  # None: the fallback
    target: str
    path: Path
    breaker: CircuitBreaker | None = None  # take the fallback after repeated failures of `target`


@dataclass(frozen=True)
class PlanPhase:
    id: str
    kind: PhaseKind
    description: str
    upstream: tuple[str, ...]
    on_failure: FailurePolicy
    steps: tuple[PlanStep, ...]
    path: Path
    fan_out: FanOutPlan | None = None
    waves: WavesPlan | None = None
    choices: tuple[BranchChoice, ...] = ()
    approval: Approval | None = None
    chosen_by: str | None = None  # the branch phase that may choose this phase

    @property
    def fallback(self) -> str | None:
        return next((c.target for c in self.choices if c.condition is None), None)


@dataclass(frozen=True)
class Plan:
    spec: RecoverySpec
    phases: tuple[PlanPhase, ...]  # in a topological order
    finally_steps: tuple[PlanStep, ...]
    downstream: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    def phase(self, phase_id: str) -> PlanPhase:
        for phase in self.phases:
            if phase.id == phase_id:
                return phase
        raise KeyError(f"plan {self.id!r} has no phase {phase_id!r}")

    @property
    def steps(self) -> list[PlanStep]:
        return [s for p in self.phases for s in p.steps] + list(self.finally_steps)

    @property
    def leaves(self) -> list[str]:
        """Phases no other phase waits for: the run's last phases."""
        return [p.id for p in self.phases if not self.downstream.get(p.id)]

    @property
    def max_active_tasks(self) -> int:
        return self.spec.max_active_tasks or AIRFLOW_MAX_ACTIVE_TASKS
