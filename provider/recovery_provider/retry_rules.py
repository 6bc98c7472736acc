"""Which errors are worth a retry: a step's ``retry_on`` / ``no_retry_on``, and the permanent ones.

A rule is an exception class name (``BackupCorrupt``, ``psycopg.OperationalError``), matched
against the class of the error and every class it derives from, or a message pattern between
slashes (``/timed out/``, ``/(?i)connection refused/``), searched in the error's message.

:func:`decide` is the whole decision, a plain function so every case is testable without Airflow;
``operators/base.py`` hands it to Airflow as the task's retry policy. Order:

1. the error matches ``no_retry_on``: fail now;
2. ``retry_on`` is given: retry when the error matches it (within ``retries``), else fail now;
3. the error is permanent (:func:`recovery_provider.exceptions.is_permanent`: a corrupt or
   missing backup, a bad argument, a missing connection): fail now;
4. otherwise Airflow's own rule: retry while tries are left.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from recovery_provider.exceptions import ArgumentError, is_permanent

CLASS_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
MAX_RULES = 50


def check_rule(rule: str) -> str:
    """The rule as written, or an ArgumentError saying what a rule may be."""
    text = rule.strip() if isinstance(rule, str) else rule
    if not isinstance(text, str) or not text:
        raise ArgumentError(f"{rule!r} is not an error rule: write a class name such as BackupCorrupt or a /message pattern/")
    if _is_pattern(text):
        try:
            re.compile(text[1:-1])
        except re.error as exc:
            raise ArgumentError(f"{text} is not a valid regular expression ({exc}): e.g. /timed out/ or /(?i)refused/") from None
        return text
    if text.startswith("/"):
        raise ArgumentError(f"{text!r}: a message pattern starts and ends with '/', e.g. /timed out/")
    if not CLASS_NAME.match(text):
        raise ArgumentError(
            f"{text!r} is not an exception class name (BackupCorrupt, psycopg.OperationalError) nor a "
            "/message pattern/"
        )
    return text


def check_rules(rules: Sequence[str]) -> list[str]:
    if len(rules) > MAX_RULES:
        raise ArgumentError(f"{len(rules)} error rules: keep at most {MAX_RULES}")
    return [check_rule(r) for r in rules]


def _is_pattern(text: str) -> bool:
    return len(text) >= 2 and text.startswith("/") and text.endswith("/")


def _class_matches(name: str, cls: type) -> bool:
    """``Name`` matches the class name; ``pkg.Name`` also wants the class's module under ``pkg``
    (``psycopg.OperationalError`` is defined in ``psycopg.errors``)."""
    module, _, short = name.rpartition(".")
    if cls.__name__ != short and cls.__qualname__ != short:
        return False
    return not module or cls.__module__ == module or cls.__module__.startswith(module + ".")


def matching_rule(exc: BaseException, rules: Sequence[str]) -> str | None:
    """The first rule that matches ``exc`` (its class, a class it derives from, or its message)."""
    message = str(exc)
    for rule in rules:
        if _is_pattern(rule):
            if re.search(rule[1:-1], message):
                return rule
        elif any(_class_matches(rule, cls) for cls in type(exc).__mro__):
            return rule
    return None


Action = Literal["fail", "retry", "default"]


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""


def decide(exc: BaseException, retry_on: Sequence[str] = (), no_retry_on: Sequence[str] = ()) -> Decision:
    """Fail now, retry, or leave it to the task's ``retries`` (see the module's docstring)."""
    name = type(exc).__name__
    found = matching_rule(exc, no_retry_on)
    if found:
        return Decision("fail", f"{name} matches no_retry_on {found}: failing now, without retries")
    if retry_on:
        found = matching_rule(exc, retry_on)
        if found:
            return Decision("retry", f"{name} matches retry_on {found}")
        return Decision("fail", f"{name} matches none of retry_on {list(retry_on)}: failing now, without retries")
    if is_permanent(exc):
        return Decision("fail", f"{name}: no retry can fix this error, failing now without retries")
    return Decision("default")
