"""YAML text -> validated :class:`RecoverySpec`, with every error of a file at once.

Each error names file:line:column, what is wrong, and what to write instead. Nothing but
:class:`~recovery_provider.exceptions.SpecError` ever leaves :func:`load_spec` for bad input.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from recovery_provider.exceptions import SpecError
from recovery_provider.spec.base import IDENTIFIER_PATTERN, POOL_NAME_PATTERN, RECOVERY_ID_PATTERN
from recovery_provider.spec.diagnostics import Diagnostic, Location, display_path
from recovery_provider.spec.diagnostics import Path as DataPath
from recovery_provider.spec.models import RecoverySpec
from recovery_provider.spec.yamlsource import SourceMap, load_yaml

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec and the source map that locates its parts for later diagnostics."""

    spec: RecoverySpec
    source: SourceMap

    @property
    def file(self) -> str:
        return self.source.file

    def locate(self, diagnostic: Diagnostic) -> Diagnostic:
        """Attach file:line:column to a diagnostic that only knows its path in the spec."""
        if diagnostic.location is not None:
            return diagnostic
        location = self.source.locate(diagnostic.path)
        return Diagnostic(diagnostic.severity, diagnostic.code, diagnostic.message, location, diagnostic.path)


def load_spec_text(text: str, file: str = "<spec>") -> LoadedSpec:
    """Validate spec text; raise SpecError listing every problem."""
    document, problems = load_yaml(text, file)
    if document is None:
        raise SpecError(problems)
    if not isinstance(document.data, dict):
        raise SpecError([*problems, Diagnostic(
            "error", "not-a-mapping",
            "a spec is a mapping of keys, starting with 'recovery: <id>'",
            document.source.locate(()),
        )])
    try:
        spec = RecoverySpec.model_validate(document.data)
    except ValidationError as exc:
        problems += [_diagnostic(error, document.data, document.source) for error in exc.errors()]
    else:
        if not problems:
            return LoadedSpec(spec, document.source)
    raise SpecError(sorted(problems, key=_position))


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and validate one spec file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic("error", "encoding", f"{file} is not UTF-8 text: save it as UTF-8", Location(file, exc.object.count(b"\n", 0, exc.start) + 1, exc.start - exc.object.rfind(b"\n", 0, exc.start)))]) from None
    except OSError as exc:
        raise SpecError([Diagnostic("error", "unreadable", f"cannot read {file}: {exc.strerror or exc}", Location(file, 1, 1))]) from None
    return load_spec_text(text, file)


def find_spec_files(paths: list[Path]) -> list[Path]:
    """Spec files named directly, plus every *.yaml / *.yml under the folders given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


def _position(diagnostic: Diagnostic) -> tuple[int, int]:
    loc = diagnostic.location
    return (loc.line, loc.column) if loc else (0, 0)


def _data_path(loc: tuple[int | str, ...], data: Any) -> DataPath:
    """Map a pydantic error location onto the YAML document's path.

    Pydantic adds parts that are not in the document (union member names, validator names,
    fields that a before-validator introduced); those are skipped.
    """
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
            path.append(part)
        elif last and isinstance(part, str) and isinstance(current, dict) and part != "[key]":
            path.append(part)  # a missing key: point at its parent, name the key
    return tuple(path)


def _diagnostic(error: ErrorDetails, data: Any, source: SourceMap) -> Diagnostic:
    path = _data_path(tuple(error["loc"]), data)
    kind = error["type"]
    where = display_path(path)
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = _allowed_keys(path[:-1])
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f", did you mean '{close[0]}'?" if close else (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        return Diagnostic("error", "unknown-key", f"{display_path(path[:-1]) or 'top level'}: unknown key '{key}'{hint}", source.locate(path, key=True), path)
    if kind == "missing":
        key = str(path[-1]) if path else "?"
        parent = display_path(path[:-1]) or "top level"
        return Diagnostic("error", "missing-key", f"{parent}: missing required key '{key}'", source.locate(path[:-1]), path)
    message = error["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        message = f"{error['input']!r} {_PATTERN_HELP.get(str(error.get('ctx', {}).get('pattern')), 'has characters that are not allowed here')}"
    elif kind == "literal_error":
        expected = str(error.get("ctx", {}).get("expected", ""))
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        close = difflib.get_close_matches(str(error["input"]), options, n=1, cutoff=0.6)
        message = f"{error['input']!r} is not allowed: use {expected}" + (f" (did you mean '{close[0]}'?)" if close else "")
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping (key: value), got {_describe(error['input'])}"
    elif kind == "list_type":
        message = f"expected a list (- item), got {_describe(error['input'])}"
    elif not kind.startswith("value_error") and "input" in error and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    code = "invalid-value" if kind == "value_error" else f"invalid-{kind.replace('_', '-')}"
    return Diagnostic("error", code, f"{where or 'top level'}: {message}", source.locate(path, key=error["loc"][-1:] == ("[key]",)), path)


_PATTERN_HELP = {
    IDENTIFIER_PATTERN: "is not a valid id: use letters, digits and '_', starting with a letter or '_'",
    RECOVERY_ID_PATTERN: "is not a valid recovery id: use letters, digits, '_', '.' and '-', starting with a letter, digit or '_'",
    POOL_NAME_PATTERN: "is not a valid pool name: use letters, digits, '_', '.' and '-'",
}


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{value!r}"


def _allowed_keys(path: DataPath) -> list[str]:
    """The keys the model at `path` accepts (aliases as written in YAML), for did-you-mean."""
    current: Any = RecoverySpec
    for part in path:
        current = _step_into(current, part)
        if current is None:
            return []
    model = _as_model(current)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _unwrap(arg)]
    return [annotation]


def _as_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _step_into(annotation: Any, part: str | int) -> Any:
    model = _as_model(annotation)
    if model is not None and isinstance(part, str):
        hints = typing.get_type_hints(model, include_extras=True)
        for name, info in model.model_fields.items():
            if part in (info.alias, name):
                return hints[name]
        return None
    for candidate in _unwrap(annotation):
        origin, args = typing.get_origin(candidate), typing.get_args(candidate)
        if origin is list and isinstance(part, int):
            return args[0]
        if origin is dict and isinstance(part, str):
            return args[1]
    return None
