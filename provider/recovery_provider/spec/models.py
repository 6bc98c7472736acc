"""The recovery spec language as typed models (pydantic v2).

These models are the single source of truth for what a spec may say: the loader validates
YAML against them, ``recovery schema`` publishes their JSON Schema, and the plan compiler reads
them. They check the shape of one value at a time; checks that need the whole spec (references,
cycles, pools, RTO) live in :mod:`recovery_provider.plan`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from recovery_provider.retry_rules import check_rules
from recovery_provider.spec.alerts import Alerts, CircuitBreaker
from recovery_provider.spec.durations import DURATION_PATTERN, format_duration, parse_duration
from recovery_provider.spec.expressions import Condition, parse_condition
from recovery_provider.spec.registry import ALIASES, resolve_uses

Duration = Annotated[
    dt.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "15m", "1h30m"]}),
]
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RECOVERY_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
POOL_NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, min_length=1, max_length=100)]
RecoveryId = Annotated[str, StringConstraints(pattern=RECOVERY_ID_PATTERN, min_length=1, max_length=200)]
PoolName = Annotated[str, StringConstraints(pattern=POOL_NAME_PATTERN, min_length=1, max_length=256)]

SCHEDULE_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
PARAM_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
}
DRY_RUN = "dry_run"
# Far above Airflow's max_map_length (1024): a bound that keeps estimates instant.
MAX_TARGETS = 10_000


def _replace_schema(replacement: dict[str, Any]) -> Any:
    """A json_schema_extra hook that publishes the spec form of a model normalised by a validator."""

    def hook(schema: dict[str, Any]) -> None:
        description = schema.get("description")
        schema.clear()
        schema.update(replacement, **({"description": description} if description else {}))

    return hook


def _also_shorthand(schema: dict[str, Any]) -> None:
    """Params may be written as their bare default value."""
    full = dict(schema)
    schema.clear()
    schema["anyOf"] = [full, {"type": ["string", "number", "integer", "boolean", "array", "null"], "description": "Shorthand: the default value."}]


def _date_or_datetime(value: Any) -> Any:
    """One clear error instead of one per member of ``date | datetime``."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value) if "T" in value or " " in value.strip() else dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date: write 2025-01-01 or 2025-01-01T02:00:00+00:00")


def _as_list(value: Any) -> Any:
    """Let a single id stand for a one-element list (``after: assess``)."""
    return [value] if isinstance(value, str) else value


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


class Objectives(SpecModel):
    """Recovery objectives. RTO: how long recovery may take; RPO: how much data may be lost."""

    rto: Duration | None = Field(None, description="Recovery time objective, e.g. 15m.")
    rpo: Duration | None = Field(None, description="Recovery point objective (maximum data age), e.g. 5m.")


class Param(SpecModel):
    """A field of the manual trigger form. A bare value instead of a mapping is its default."""

    model_config = ConfigDict(json_schema_extra=_also_shorthand)

    type: Literal["string", "integer", "number", "boolean", "array", "object"] | None = Field(
        None, description="JSON type of the value; inferred from the default when omitted."
    )
    default: Any = Field(None, description="Value used when the run is triggered without this param.")
    enum: list[Any] | None = Field(None, description="The only values allowed.", min_length=1)
    title: str | None = Field(None, description="Label shown in the trigger form.")
    description: str = Field("", description="Help text shown in the trigger form.")

    @model_validator(mode="after")
    def _default_fits(self) -> Param:
        expected = PARAM_TYPES.get(self.type) if self.type else None
        if self.default is not None and expected is not None:
            is_bool = isinstance(self.default, bool)
            if not isinstance(self.default, expected) or (is_bool and self.type != "boolean"):
                raise ValueError(f"default {self.default!r} is not of type {self.type}")
        if self.enum is not None and self.default is not None and self.default not in self.enum:
            raise ValueError(f"default {self.default!r} is not one of the enum values {self.enum}")
        return self

    @property
    def json_type(self) -> str | None:
        """The declared type, or the one the default implies."""
        if self.type:
            return self.type
        for name, kind in PARAM_TYPES.items():
            if self.default is not None and isinstance(self.default, kind):
                if isinstance(self.default, bool):
                    return "boolean"
                return name
        return None


class Pool(SpecModel):
    """A pool caps how many tasks use a shared resource at once (one database, one NFS mount)."""

    slots: int = Field(ge=1, description="How many task slots the pool has.")
    description: str = Field("", description="What the pool protects.")


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


PHASE_KINDS = ("steps", "parallel", "for_each", "waves", "branch", "approval")
PhaseKind = Literal["sequential", "parallel", "for_each", "waves", "branch", "approval"]


class Phase(SpecModel):
    """An ordered stage of the recovery. Exactly one of: steps, parallel, for_each (+steps),
    waves (+steps), branch, approval."""

    id: Identifier = Field(description="Unique phase id; becomes the TaskGroup id.")
    description: str = Field("", description="What the phase achieves, for the runbook.")
    after: Annotated[
        list[Identifier] | None,
        BeforeValidator(_as_list),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}),
    ] = Field(
        None, description="Phases this one waits for. Default: the phase before it (after a branch: its targets)."
    )
    on_failure: FailurePolicy = Field(
        default_factory=lambda: FailurePolicy.model_validate("fail_fast"), description="fail_fast (default), continue, or {tolerate: N | 'P%'}."
    )
    pool: PoolName | None = Field(None, description="Pool for every step of the phase that names none.")
    queue: str | None = Field(None, description="Worker queue for every step of the phase that names none.")
    steps: list[Step] | None = Field(None, min_length=1, description="Steps run one after the other (per target under for_each/waves).")
    parallel: list[Step] | None = Field(None, min_length=1, description="Steps run at the same time.")
    for_each: FanOut | None = Field(None, description="Fan the steps out over targets at run time.")
    waves: Waves | None = Field(None, description="Run the steps over targets in batched waves.")
    branch: list[BranchCase] | None = Field(None, min_length=1, description="Choose the next phase by condition.")
    approval: Approval | None = Field(None, description="Wait for a human decision.")

    @model_validator(mode="after")
    def _one_kind(self) -> Phase:
        fan = [k for k in ("for_each", "waves") if getattr(self, k) is not None]
        shapes = [k for k in ("parallel", "branch", "approval") if getattr(self, k) is not None]
        if len(fan) > 1:
            raise ValueError("a phase is either for_each or waves, not both")
        if fan and shapes:
            raise ValueError(f"{fan[0]} runs 'steps' per target; it cannot be combined with {shapes[0]}")
        if fan and self.steps is None:
            raise ValueError(f"{fan[0]} needs 'steps': the steps to run for each target")
        if len(shapes) + (self.steps is not None and not fan) > 1:
            given = [*shapes, *(["steps"] if self.steps is not None else [])]
            raise ValueError(f"a phase has exactly one of steps, parallel, branch, approval; got {', '.join(given)}")
        if not fan and not shapes and self.steps is None:
            raise ValueError("a phase needs one of: steps, parallel, for_each + steps, waves + steps, branch, approval")
        return self

    @property
    def kind(self) -> PhaseKind:
        if self.for_each is not None:
            return "for_each"
        if self.waves is not None:
            return "waves"
        if self.parallel is not None:
            return "parallel"
        if self.branch is not None:
            return "branch"
        if self.approval is not None:
            return "approval"
        return "sequential"

    @property
    def all_steps(self) -> list[Step]:
        return list(self.steps or self.parallel or [])


class RecoverySpec(SpecModel):
    """A recovery or backup procedure: one spec becomes one Airflow DAG."""

    model_config = ConfigDict(title="Recovery spec", json_schema_extra={"$id": "https://recovery-provider/spec.schema.json"})

    id: RecoveryId = Field(alias="recovery", description="The recovery's id; becomes the DAG id.")
    description: str = Field("", description="One line shown in DAG lists.")
    owner: str = Field("recovery", description="Team or person who owns the procedure.")
    tags: list[str] = Field(default_factory=list, description="Tags shown in the Airflow UI.")
    runbook: str = Field("", description="Runbook text (markdown), shown as the DAG's documentation.")
    schedule: str | None = Field(
        None, description="Cron expression or preset (@daily ...); null for manual runs during incidents."
    )
    catchup: bool = Field(False, description="Run missed schedule intervals.")
    start_date: Annotated[dt.date | dt.datetime, BeforeValidator(_date_or_datetime)] = Field(
        dt.date(2025, 1, 1), description="First logical date: 2025-01-01 or 2025-01-01T02:00:00+00:00."
    )
    objectives: Objectives = Field(default_factory=Objectives, description="RTO and RPO.")
    alerts: Alerts = Field(default_factory=Alerts, description="Slow-step alerts learnt from the run ledger.")
    run_timeout: Duration | None = Field(None, description="Hard limit of a whole run: past it the run fails.")
    max_active_tasks: int | None = Field(None, ge=1, description="Most tasks of one run at once.")
    params: dict[Identifier, Param] = Field(default_factory=dict, description="Trigger-form fields.")
    pools: dict[PoolName, Pool] = Field(default_factory=dict, description="Pools the steps use.")
    defaults: Defaults = Field(default_factory=Defaults, description="Settings for every step.")
    phases: list[Phase] = Field(min_length=1, description="The phases, in order.")
    finally_: list[Step] = Field(
        default_factory=list, alias="finally", description="Steps that always run at the end, even after a failure."
    )

    @field_validator("params", mode="before")
    @classmethod
    def _param_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, dict) else {"default": v} for k, v in value.items()}
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_valid(cls, value: str | None) -> str | None:
        if value is None or value in SCHEDULE_PRESETS:
            return value
        if value.startswith("@"):
            raise ValueError(f"unknown schedule preset {value!r}: use one of {', '.join(SCHEDULE_PRESETS)}")
        from croniter import croniter  # small, and only needed when a cron schedule is given

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression (e.g. '0 2 * * *' for 02:00 daily)")
        return value

    @property
    def all_params(self) -> dict[str, Param]:
        """The declared params plus the built-in ``dry_run`` switch."""
        params = dict(self.params)
        params.setdefault(DRY_RUN, Param(type="boolean", default=False, description="Log what would be done; change nothing."))
        return params

    def iter_steps(self) -> list[tuple[Phase | None, Step]]:
        """Every step with its phase (None for `finally` steps), in spec order."""
        found: list[tuple[Phase | None, Step]] = [(p, s) for p in self.phases for s in p.all_steps]
        return found + [(None, s) for s in self.finally_]
