"""One exception hierarchy for the whole provider.

Every error a user can cause derives from :class:`RecoveryError`, so callers (the CLI, the DAG
loader) catch one class and never show a traceback for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recovery_provider.spec.diagnostics import Diagnostic


class RecoveryError(Exception):
    """Base class of every error the provider raises on purpose."""


class SpecError(RecoveryError):
    """A spec file is invalid. Carries every problem found in it, not just the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class RenderError(RecoveryError):
    """A valid plan cannot become an Airflow DAG (an operator that cannot be imported or built)."""
