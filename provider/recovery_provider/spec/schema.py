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


def _type_of(prop: dict[str, Any]) -> str:
    """A short human reading of a JSON Schema property: `string`, `list of Step`, `Duration`..."""
    if "$ref" in prop:
        return f"[{prop['$ref'].rsplit('/', 1)[-1]}](#{prop['$ref'].rsplit('/', 1)[-1].lower()})"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "pattern" in prop and prop.get("type") == "string" and "examples" in prop:
        return "duration (" + ", ".join(f"`{e}`" for e in prop["examples"]) + ")"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [_type_of(p) for p in prop[key] if p.get("type") != "null"]
            return " or ".join(dict.fromkeys(parts)) or "null"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    values = prop.get("additionalProperties") or next(iter(prop.get("patternProperties", {}).values()), None)
    if kind == "object" and isinstance(values, dict):
        return f"map of name to {_type_of(values)}"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _section(name: str, model: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", "", model.get("description", "").strip(), ""]
    properties = model.get("properties")
    if not properties:
        variants = model.get("oneOf") or model.get("anyOf") or []
        for variant in variants:
            form = "`{" + ", ".join(f"{k}: ..." for k in variant["required"]) + "}`" if "required" in variant else _type_of(variant)
            lines.append(f"- {form}: {variant.get('description', '')}".rstrip(": "))
        return [*lines, ""]
    required = set(model.get("required", []))
    lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, prop in properties.items():
        default = "required" if key in required else ("" if prop.get("default") in (None, [], {}) else f"`{json.dumps(prop['default'])}`")
        meaning = prop.get("description", "").replace("|", "\\|")
        lines.append(f"| `{key}` | {_type_of(prop)} | {default} | {meaning} |")
    return [*lines, ""]


def reference_markdown() -> str:
    """The spec reference, generated from the JSON Schema so that the two never disagree."""
    schema = spec_schema()
    lines = [
        "# Spec reference",
        "",
        "Generated from the JSON Schema by `recovery schema --markdown`; do not edit by hand. The guide",
        "with examples is [spec-language.md](spec-language.md).",
        "",
        *_section("RecoverySpec", schema),
    ]
    for name, model in schema.get("$defs", {}).items():
        if name == "Param" and "anyOf" in model:
            model = {**model["anyOf"][0], "description": model["anyOf"][0].get("description", "")}
        lines += _section(name, model)
    return "\n".join(lines).rstrip() + "\n"
