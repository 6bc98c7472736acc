"""Fan-out targets in step arguments: substitution, and whether a literal list can map at parse time.

Pure functions (no Airflow): the compiler decides here which fan-outs need a resolver task at run
time, and the resolver uses the same substitution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


def substitute_target(value: Any, arg_name: str, target: Any) -> Any:
    """Put one fan-out target into a step argument.

    ``"{{ database }}"`` alone becomes the target itself (any type); inside text it is replaced as
    text, and every other template (``{{ params.x }}``) is left for Airflow to render.
    """
    pattern = re.compile(r"\{\{\s*" + re.escape(arg_name) + r"\s*\}\}")
    if isinstance(value, str):
        if pattern.fullmatch(value.strip()):
            return target
        return pattern.sub(lambda _: str(target), value)
    if isinstance(value, list):
        return [substitute_target(v, arg_name, target) for v in value]
    if isinstance(value, dict):
        return {k: substitute_target(v, arg_name, target) for k, v in value.items()}
    return value


def target_kwargs(target: Any, arg_name: str, step_args: dict[str, dict[str, Any]], takes_target: list[str]) -> dict[str, Any]:
    """One target's kwargs row for a mapped task group: the resolver's at run time, or a literal one."""
    kwargs: dict[str, Any] = {"target": target}
    for step, args in step_args.items():
        for name, value in args.items():
            kwargs[f"{step}__{name}"] = substitute_target(value, arg_name, target)
        if step in takes_target:
            kwargs[f"{step}__{arg_name}"] = target
    return kwargs


def mentions_target(value: Any, arg_name: str) -> bool:
    return bool(substitute_target(value, arg_name, _Marker) != value)


def is_templated(value: Any) -> bool:
    """Whether Jinja would render something in this value."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, (list, tuple)):
        return any(is_templated(v) for v in value)
    if isinstance(value, dict):
        return any(is_templated(v) for v in value.values())
    return False


def literal_targets(items: list[Any] | None, arg_name: str, arguments: Iterable[dict[str, Any]]) -> tuple[Any, ...] | None:
    """The targets, when the DAG can map over them as written: a literal list whose substitution
    leaves no other template in any argument that receives the target.

    Airflow does not render values a task group is mapped over, so a template beside the target
    (``{{ params.x }}``) must be rendered at run time by a resolver task; everything else maps
    at parse time and saves that task (about a second of the RTO).
    """
    if items is None or is_templated(items):
        return None
    for args in arguments:
        for value in args.values():
            if mentions_target(value, arg_name) and is_templated(substitute_target(value, arg_name, "")):
                return None
    return tuple(items)


class _Marker:
    """A sentinel target that makes any substitution visible."""
