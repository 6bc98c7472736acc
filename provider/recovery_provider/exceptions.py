"""One exception hierarchy for the whole provider.

Every error a user can cause derives from :class:`RecoveryError`, so callers (the CLI, the DAG
loader) catch one class and never show a traceback for bad input. Errors survive pickling (task
processes and the triggerer ship them between processes): those that carry more than a message
say how to rebuild themselves (``__reduce__``).

::

    RecoveryError
    ├── ArgumentError (also ValueError)   a caller passed a value an API cannot take
    ├── SpecError                         a spec file is invalid: every diagnostic of it
    ├── RenderError                       a valid plan cannot become an Airflow DAG
    ├── SpecLoadErrors                    the broken specs of a folder (the loader's import error)
    ├── UnknownState                      a branch condition cannot be decided: take the fallback
    ├── PostgresUnavailable, PgToolError  PostgreSQL unreachable; pg_dump / pg_restore failed
    ├── StorageError, BackupIncomplete, BackupCorrupt   the backup store and what it holds
    ├── ConnectionMissing                 an Airflow connection a step names is not defined
    ├── AirflowApiError                   the Airflow REST API refused or was unreachable
    ├── LedgerError                       the run ledger cannot be read or written
    └── PgBackRestError                   a pgBackRest command failed (``fatal``: no retry can help)

``permanent`` marks the errors no retry can fix (a bad argument, a missing connection, a missing,
incomplete or corrupt backup, a fatal pgBackRest error): the operators' retry policy
(``operators/base.py``) fails the task at once on them instead of spending the RTO on retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recovery_provider.spec.diagnostics import Diagnostic, Path


class RecoveryError(Exception):
    """Base class of every error the provider raises on purpose."""

    permanent: bool = False  # True: retrying cannot fix it (see is_permanent)


class ArgumentError(RecoveryError, ValueError):
    """A value an API cannot take; a ValueError too, as callers (and pydantic validators) expect."""

    permanent = True


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


class UnknownState(RecoveryError):
    """The condition cannot be decided (missing output, probe failed): take the fallback."""


class PostgresUnavailable(RecoveryError):
    """The server could not be reached or refused us after every attempt."""


class PgToolError(RecoveryError):
    """A libpq tool (pg_dump, pg_restore) failed; the message carries its stderr, password redacted."""


class StorageError(RecoveryError):
    """Backup storage could not be read or written."""


class ConnectionMissing(RecoveryError):
    """An Airflow connection a step names is not defined: create it, then re-run."""

    permanent = True


class BackupIncomplete(RecoveryError):
    """A backup has no (valid) manifest: it was interrupted and must never be restored."""

    permanent = True


class BackupCorrupt(RecoveryError):
    """A stored object does not match its manifest (size or SHA-256)."""

    permanent = True


class AirflowApiError(RecoveryError):
    """The Airflow API refused or could not be reached; the message says which and what to do."""


class LedgerError(RecoveryError):
    """The ledger cannot be read or written (location unreachable, record unreadable)."""


class PgBackRestError(RecoveryError):
    """A pgBackRest command failed; ``fatal`` when retrying cannot help (hooks/pgbackrest.py FATAL_CODES)."""

    def __init__(self, message: str, *, code: int | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal
        self.permanent = fatal

    def __reduce__(self) -> tuple[Any, ...]:
        return (_pgbackrest_error, (str(self), self.code, self.fatal))


def _pgbackrest_error(message: str, code: int | None, fatal: bool) -> PgBackRestError:
    return PgBackRestError(message, code=code, fatal=fatal)


def is_permanent(exc: BaseException) -> bool:
    """Whether no retry can fix ``exc``: a permanent provider error, or Airflow's missing connection."""
    if isinstance(exc, RecoveryError):
        return bool(exc.permanent)
    return type(exc).__name__ == "AirflowNotFoundException" and "conn_id" in str(exc)
