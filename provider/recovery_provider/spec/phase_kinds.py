"""What each kind of phase takes: fan-out targets, waves, branch cases, approvals, failure policies."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from recovery_provider.spec.alerts import CircuitBreaker
from recovery_provider.spec.base import MAX_TARGETS, Duration, Identifier, SpecModel, _replace_schema
from recovery_provider.spec.expressions import Condition, parse_condition
from recovery_provider.spec.steps import Action


class TargetSource(SpecModel):
    """Where fan-out targets come from: a list, a param, or an earlier step's output (a list)."""

    model_config = ConfigDict(
        json_schema_extra=_replace_schema({
            "oneOf": [
                {"type": "array", "description": "A static list of targets."},
                {"type": "object", "properties": {"param": {"type": "string"}}, "required": ["param"], "additionalProperties": False, "description": "A param whose value is the list of targets."},
                {"type": "object", "properties": {"step": {"type": "string"}}, "required": ["step"], "additionalProperties": False, "description": "An earlier step whose output is the list of targets."},
            ]
        })
    )

    items: list[Any] | None = Field(None, description="A static list of targets.")
    param: Identifier | None = Field(None, description="A param whose value is the list of targets.")
    step: Identifier | None = Field(None, description="An earlier step whose output is the list of targets.")

    @model_validator(mode="before")
    @classmethod
    def _list_is_items(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"items": data}
        if not isinstance(data, dict):
            raise ValueError(f"give the targets as a list, as {{param: <name>}} or as {{step: <step_id>}}, got {data!r}")
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> TargetSource:
        given = [name for name in ("items", "param", "step") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give the targets as a list, as {param: <name>} or as {step: <step_id>}")
        return self

    @property
    def static_count(self) -> int | None:
        return len(self.items) if self.items is not None else None


class FanOut(SpecModel):
    """Run the phase's steps once per target, expanded at run time, at most `max_parallel` at once."""

    over: TargetSource
    as_: Identifier = Field("target", alias="as", description="Argument name each target is passed as.")
    max_parallel: int | None = Field(None, ge=1, description="Most targets running at once.")
    expected_targets: int | None = Field(
        None, ge=0, le=MAX_TARGETS, description="Typical number of targets, for estimates when they are known only at run time."
    )


class Waves(SpecModel):
    """Run the phase's steps over targets in waves: one wave at a time, a pause and a health check between."""

    over: TargetSource
    as_: Identifier = Field("target", alias="as", description="Argument name each target is passed as.")
    size: int = Field(ge=1, description="Targets per wave.")
    pause: Duration = Field(dt.timedelta(0), description="Wait after each wave's health check.")
    health_check: Action | None = Field(None, description="Runs after each wave; a failure is a failed wave.")
    max_failed_waves: int = Field(1, ge=1, description="Stop the remaining waves after this many failed waves.")
    max_targets: int | None = Field(
        None, ge=1, le=MAX_TARGETS, description="Most targets a run-time source may yield (waves are laid out when the DAG is built)."
    )


class BranchCase(SpecModel):
    """`{when: <condition>, then: <phase>}`, or `{otherwise: <phase>}` as the last case."""

    when: str | None = Field(None, description="Condition on params.<name> or steps.<id>.output.")
    then: Identifier | None = Field(None, description="Phase to run when the condition holds.")
    otherwise: Identifier | None = Field(None, description="Phase to run when no condition holds or one cannot be decided.")
    circuit_breaker: CircuitBreaker | None = Field(
        None, description="After this many failures of the case's phase in recent runs, take the fallback instead."
    )

    @field_validator("when")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)
        return value

    @model_validator(mode="after")
    def _shape(self) -> BranchCase:
        if self.otherwise is not None and (self.when is not None or self.then is not None):
            raise ValueError("'otherwise' stands alone: write it as its own case, {otherwise: <phase>}")
        if self.otherwise is None and (self.when is None or self.then is None):
            raise ValueError("a case needs both 'when' and 'then', or is the fallback {otherwise: <phase>}")
        if self.otherwise is not None and self.circuit_breaker is not None:
            raise ValueError("the fallback cannot have a circuit_breaker: it is where an open breaker leads")
        return self

    @property
    def condition(self) -> Condition | None:
        return parse_condition(self.when) if self.when is not None else None


class Approval(SpecModel):
    """A human decision before the phases after it run."""

    subject: str = Field(min_length=1, description="The question put to the approver.")
    body: str = Field("", description="Details shown with the question (markdown).")
    approvers: list[str] = Field(default_factory=list, description="Users who may answer; anyone when empty.")
    timeout: Duration | None = Field(None, description="How long to wait for an answer.")
    on_timeout: Literal["reject", "approve"] = Field("reject", description="Outcome when nobody answers in time.")
    expected_duration: Duration | None = Field(None, description="Typical time to an answer, for estimates.")


class FailurePolicy(SpecModel):
    """What a failure inside a phase means for the run."""

    model_config = ConfigDict(
        json_schema_extra=_replace_schema({
            "oneOf": [
                {"enum": ["fail_fast", "continue"]},
                {
                    "type": "object",
                    "properties": {"tolerate": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"}]}},
                    "required": ["tolerate"],
                    "additionalProperties": False,
                },
            ]
        })
    )

    mode: Literal["fail_fast", "continue", "tolerate"] = "fail_fast"
    max_failures: int | None = Field(None, ge=0)
    max_failure_percent: float | None = Field(None, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _from_spec_form(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data not in ("fail_fast", "continue"):
                close = difflib.get_close_matches(data, ["fail_fast", "continue"], n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"on_failure must be fail_fast, continue or {{tolerate: N | 'P%'}}, got {data!r}{hint}")
            return {"mode": data}
        if isinstance(data, dict) and set(data) == {"tolerate"}:
            tolerate = data["tolerate"]
            if isinstance(tolerate, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*%\s*", tolerate):
                percent = float(tolerate.strip().rstrip("%"))
                if not 0 <= percent <= 100:
                    raise ValueError(f"tolerate takes a percentage between 0% and 100%, got {tolerate!r}")
                return {"mode": "tolerate", "max_failure_percent": percent}
            if isinstance(tolerate, int) and not isinstance(tolerate, bool):
                if tolerate < 0:
                    raise ValueError(f"tolerate takes a count of 0 or more failures, got {tolerate}")
                return {"mode": "tolerate", "max_failures": tolerate}
            raise ValueError(f"tolerate takes a count (2) or a percentage ('25%'), got {tolerate!r}")
        raise ValueError(f"on_failure must be fail_fast, continue or {{tolerate: N | 'P%'}}, got {data!r}")

    def describe(self) -> str:
        if self.mode == "tolerate":
            return f"tolerate {self.max_failures}" if self.max_failures is not None else f"tolerate {self.max_failure_percent:g}%"
        return self.mode
