"""What every spec model shares: the base model, value types (durations, ids) and schema hooks."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from recovery_provider.spec.durations import DURATION_PATTERN, format_duration, parse_duration

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


def _as_list(value: Any) -> Any:
    """Let a single id stand for a one-element list (``after: assess``)."""
    return [value] if isinstance(value, str) else value


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False, defer_build=True)


