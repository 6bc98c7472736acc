"""One exception hierarchy for the whole provider.

Every error a user can cause derives from :class:`RecoveryError`, so callers (the CLI, the DAG
loader) catch one class and never show a traceback for bad input. Errors survive pickling (task
processes and the triggerer ship them between processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recovery_provider.spec.diagnostics import Diagnostic, Path


class RecoveryError(Exception):
    """Base class of every error the provider raises on purpose."""


class SpecError(RecoveryError):
    """A spec file is invalid. Carries every problem found in it, not just the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.diagnostics,))


class RenderError(RecoveryError):
    """A valid plan cannot become an Airflow DAG (an operator that cannot be imported or built).

    `path` is where in the spec the problem is (e.g. the step), so it can be shown as file:line:col.
    """

    def __init__(self, message: str, path: Path = ()) -> None:
        self.message = message
        self.path = path
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.path))


class SpecLoadErrors(RecoveryError):
    """The broken specs of a folder, as Airflow shows them: the import error of the errors file."""
