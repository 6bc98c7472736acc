"""The published JSON Schema of the spec language (docs/spec.schema.json, `recovery schema`)."""

from __future__ import annotations

import json
from typing import Any

from recovery_provider.spec.models import RecoverySpec


def spec_schema() -> dict[str, Any]:
    schema = RecoverySpec.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_json() -> str:
    return json.dumps(spec_schema(), indent=2, sort_keys=False) + "\n"
