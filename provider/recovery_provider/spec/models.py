"""The recovery spec language as typed models (pydantic v2).

These models (with spec/base.py, spec/steps.py, spec/phase_kinds.py and spec/alerts.py, which
hold their parts) are the single source of truth for what a spec may say: the loader validates
YAML against them, ``recovery schema`` publishes their JSON Schema, and the plan compiler reads
them. They check the shape of one value at a time; checks that need the whole spec (references,
cycles, pools, RTO) live in :mod:`recovery_provider.plan`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from recovery_provider.spec.alerts import Alerts
from recovery_provider.spec.base import (
    Duration,
    Identifier,
    PoolName,
    RecoveryId,
    SpecModel,
    _also_shorthand,
    _as_list,
)
from recovery_provider.spec.phase_kinds import Approval, BranchCase, FailurePolicy, FanOut, Waves
from recovery_provider.spec.steps import Defaults, Step

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
