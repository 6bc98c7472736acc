"""The run ledger: one JSON record per run, in a folder or a bucket that outlives runs and workers.

Layout: ``<location>/<dag_id>/<run_id, %-quoted>.json``, and beside the runs the DAG's history
``<location>/<dag_id>/_history.json`` (evidence/history.py), which the runs listing ignores. The location is Airflow's
``[recovery] ledger_location`` (env ``AIRFLOW__RECOVERY__LEDGER_LOCATION``): a path, a ``file://``
URL, or ``s3://conn_id@bucket/prefix`` (credentials from the Airflow connection, never the URL).
Default: ``$AIRFLOW_HOME/recovery-ledger``. The scheduler writes (it sees every run end); the
api-server and the CLI read. A deployment whose scheduler and api-server run on different
machines points both at the same bucket.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from pydantic import ValidationError

if TYPE_CHECKING:  # imported where used: a task reading the history needs no run record model
    from recovery_provider.evidence.history import History
    from recovery_provider.evidence.record import RunRecord

# defined in exceptions.py, one hierarchy; still importable from here
from recovery_provider.exceptions import LedgerError as LedgerError

LOCATION_ENV = "AIRFLOW__RECOVERY__LEDGER_LOCATION"
SUFFIX = ".json"
HISTORY = "_history"  # <dag>/_history.json; a run whose id is "_history" is stored as %5Fhistory.json


def default_location() -> str:
    """Where the ledger lives when nothing says otherwise; reads Airflow's config only if loaded."""
    import sys

    if "airflow.configuration" in sys.modules:  # inside Airflow: honour airflow.cfg too
        from airflow.configuration import conf

        configured = conf.get("recovery", "ledger_location", fallback=None)
        if configured:
            return str(configured)
    if os.environ.get(LOCATION_ENV):
        return os.environ[LOCATION_ENV]
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return str(Path(home) / "recovery-ledger")


def _root(location: str) -> Any:
    """A pathlib-like root: Path for local folders (no Airflow import), ObjectStoragePath otherwise."""
    if location.startswith("file://"):
        return Path(location[len("file://"):])
    if "://" not in location:
        return Path(location)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(location)


def _name(value: str) -> str:
    """A file name for an id: '/' and friends %-quoted, and no '.' or '..' (ids may be made of dots)."""
    name = quote(value, safe="")
    return "%2E" + name[1:] if name.startswith(".") else "%5F" + name[1:] if name == HISTORY else name


class Ledger:
    def __init__(self, location: str | None = None) -> None:
        self.location = location or default_location()
        self.root = _root(self.location)

    def __repr__(self) -> str:
        return f"Ledger({self.location!r})"

    def _path(self, dag_id: str, run_id: str) -> Any:
        return self.root / _name(dag_id) / (_name(run_id) + SUFFIX)

    def write(self, record: RunRecord) -> str:
        """Store the record of one run; returns where. A re-run ends the run again: the listener
        passes the record with every attempt (see evidence/attempts.py), so nothing is lost."""
        return self._write(self._path(record.dag_id, record.run_id), record.model_dump_json(indent=1))

    def _history_path(self, dag_id: str) -> Any:
        return self.root / _name(dag_id) / (HISTORY + SUFFIX)

    def read_history(self, dag_id: str) -> History:
        """The DAG's history summary (evidence/history.py); empty when none was written yet."""
        from recovery_provider.evidence.history import History

        text = self.read_history_text(dag_id)
        if text is None:
            return History(dag_id=dag_id)
        path = self._history_path(dag_id)
        try:
            return History.model_validate_json(text)
        except ValidationError as exc:
            raise LedgerError(f"{path} is not a history summary of this provider ({exc.error_count()} problems): "
                              "delete it, the next recorded run starts a new one") from None

    def read_history_text(self, dag_id: str) -> str | None:
        """The summary's JSON as stored (None when there is none yet)."""
        path = self._history_path(dag_id)
        try:
            return str(path.read_text())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError(f"cannot read {path}: {exc}") from exc

    def write_history(self, history: History) -> str:
        """Replace the DAG's history summary, atomically as a run record."""
        path = self._history_path(history.dag_id)
        return self._write(path, history.model_dump_json())

    def _write(self, path: Any, text: str) -> str:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / (path.name + ".partial")
            tmp.write_text(text)
            tmp.rename(path)  # readers never see half a file
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc}") from exc
        return str(path)

    def read(self, dag_id: str, run_id: str) -> RunRecord:
        path = self._path(dag_id, run_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise LedgerError(
                f"no record of run '{run_id}' of '{dag_id}' in the ledger at {self.location}: "
                f"list the recorded runs with `recovery report {dag_id}`"
            ) from None
        except OSError as exc:
            raise LedgerError(f"cannot read {path}: {exc}") from exc
        return self._parse(text, path)

    def find(self, dag_id: str, run_id: str) -> RunRecord | None:
        """The record of one run, or None when there is none yet."""
        path = self._path(dag_id, run_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LedgerError(f"cannot read {path}: {exc}") from exc
        return self._parse(text, path)

    @staticmethod
    def _parse(text: str, path: Any) -> RunRecord:
        from recovery_provider.evidence.record import RunRecord

        try:
            return RunRecord.model_validate_json(text)
        except ValidationError as exc:
            raise LedgerError(f"{path} is not a run record of this provider ({exc.error_count()} problems)") from None

    def dag_ids(self) -> list[str]:
        try:
            return sorted(unquote(p.name) for p in self.root.iterdir() if p.is_dir())
        except (FileNotFoundError, NotADirectoryError):  # an object store has no empty folders
            return []
        except OSError as exc:
            raise LedgerError(f"cannot list the ledger at {self.location}: {exc}") from exc

    def runs(self, dag_id: str, limit: int | None = None) -> list[RunRecord]:
        """The recorded runs of one DAG, newest first (at most ``limit``); unreadable files are skipped."""
        records = list(self._iter(dag_id))
        records.sort(key=lambda r: (r.start or r.recorded_at, r.run_id), reverse=True)
        return records[:limit] if limit is not None else records

    def _iter(self, dag_id: str) -> Iterator[RunRecord]:
        folder = self.root / _name(dag_id)
        try:
            files = [p for p in folder.iterdir() if p.name.endswith(SUFFIX) and p.name != HISTORY + SUFFIX]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise LedgerError(f"cannot list {folder}: {exc}") from exc
        for path in files:
            try:
                yield self._parse(path.read_text(), path)
            except (LedgerError, OSError):
                continue
