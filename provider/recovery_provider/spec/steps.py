"""Steps and the actions around them (compensations, probes, health checks), and their settings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from recovery_provider.retry_rules import check_rules
from recovery_provider.spec.alerts import CircuitBreaker
from recovery_provider.spec.base import Duration, Identifier, PoolName, SpecModel, _as_list
from recovery_provider.spec.registry import ALIASES, resolve_uses


class StepSettings(SpecModel):
    """Execution settings a step inherits from `defaults` and its phase unless it sets its own."""

    retries: int | None = Field(None, ge=0, le=100, description="How many times a failed try is retried.")
    retry_delay: Duration | None = Field(None, description="Wait before the first retry.")
    backoff: float | None = Field(
        None, ge=1.0, le=10.0, description="Multiplier of the delay after each retry (1 = constant delay)."
    )
    max_retry_delay: Duration | None = Field(None, description="Cap of the retry delay under backoff.")
    timeout: Duration | None = Field(None, description="A try running longer than this fails.")
    pool: PoolName | None = Field(None, description="Pool the step's tasks take slots from.")
    queue: str | None = Field(None, description="Worker queue the step's tasks are sent to.")


class Defaults(StepSettings):
    """Settings for every step that does not set its own. Safe values for 3 a.m. when omitted."""

    retries: int | None = Field(2, ge=0, le=100, description="How many times a failed try is retried.")
    retry_delay: Duration | None = Field(dt.timedelta(seconds=30), description="Wait before the first retry.")
    backoff: float | None = Field(
        2.0, ge=1.0, le=10.0, description="Multiplier of the delay after each retry (1 = constant delay)."
    )
    max_retry_delay: Duration | None = Field(
        dt.timedelta(minutes=10), description="Cap of the retry delay under backoff."
    )


def _check_uses(value: str) -> str:
    resolve_uses(value)
    return value


Uses = Annotated[
    str,
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    Field(
        description="Operator: a registered alias such as postgres.backup, or an import path "
        "package.module:ClassName.",
        examples=sorted(ALIASES),
    ),
]


class Action(SpecModel):
    """An operator call that is not a full step: a compensation, a probe, a health check."""

    uses: Uses
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Operator arguments.")
    timeout: Duration | None = Field(None, description="A try running longer than this fails.")
    expected_duration: Duration | None = Field(None, description="Typical run time, for estimates.")

    _uses_known = field_validator("uses")(_check_uses)


class Step(StepSettings):
    """One unit of work: an operator with its arguments and execution settings."""

    id: Identifier = Field(description="Unique step id in the spec; becomes the task id.")
    uses: Uses
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Operator arguments.")
    name: str | None = Field(None, description="Display name in the Airflow UI.")
    description: str = Field("", description="What the step does, for the runbook.")
    pool_slots: int = Field(1, ge=1, description="Slots of the pool one try takes.")
    expected_duration: Duration | None = Field(None, description="Typical run time, for estimates.")
    compensate: Action | None = Field(
        None, description="Undoes this step when a later step of the phase fails (runs only if this one succeeded)."
    )
    skip_if: Action | None = Field(
        None, description="Idempotency probe: when it reports the work already done, the step is skipped."
    )
    critical: bool = Field(True, description="A non-critical step's failure never fails its phase.")
    retry_on: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list,
        description="Retry only errors matching one of these (exception class names such as "
        "psycopg.OperationalError, matched with their base classes, or /message patterns/); any other "
        "error fails the step at once.",
    )
    no_retry_on: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list,
        description="Errors that fail the step at once, without retries (class names or /message "
        "patterns/). Corrupt or missing backups, bad arguments and missing connections never retry anyway.",
    )

    circuit_breaker: CircuitBreaker | None = Field(
        None, description="After this many failed runs of the step in recent runs, its tries (every target of a "
        "fan-out) fail at once without calling out, and the phase's on_failure decides.",
    )

    _uses_known = field_validator("uses")(_check_uses)
    _rules_valid = field_validator("retry_on", "no_retry_on")(check_rules)
