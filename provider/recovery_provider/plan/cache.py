"""Compiled plans kept on disk, so a task's start renders its DAG without validating the spec again.

Every task process parses its DAG file; reading YAML, validating it with the spec models and
compiling it costs more than rendering the DAG (the models' validators alone are about 10 ms).
The plan of a spec depends only on the spec's text and on this package's spec and plan code, so
it is kept under a key made of both: the SHA-256 of the text and a fingerprint of the code (size
and modification time of every module the plan comes from, the versions of Python and pydantic).
An edited spec or an upgraded provider is a different key: an entry is never trusted without its
hash. Only plans that rendered into a DAG Airflow accepts are stored.

Entries are pickles, so the folder must be this user's alone: it is created 0700, and one that is
owned by another user or writable by others is not read or written. Nothing here raises: a cache
that cannot be used is a cache miss.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

from recovery_provider.plan.model import Plan

MAX_ENTRIES = 256  # about a kilobyte to a few hundred per entry; the oldest half goes past this
_PACKAGE = Path(__file__).resolve().parents[1]
# What a plan is computed from, besides the spec text (plan/compiler.py and what it imports).
_SOURCES = ("spec", "plan", "exceptions.py", "retry_rules.py", "__init__.py")


def code_fingerprint() -> str:
    """Changes whenever the code a plan is computed from, or the objects it is made of, may have."""
    import pydantic

    digest = hashlib.sha256(f"{sys.version}|{pydantic.VERSION}".encode())
    for name in _SOURCES:
        path = _PACKAGE / name
        files = sorted(path.glob("*.py")) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            digest.update(f"|{file.relative_to(_PACKAGE)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


class PlanCache:
    """Plans by spec text, in `folder` (created on first write). `read=False` only stores: the
    dag-processor, whose verdict on a spec (errors located at file:line) must come from the spec."""

    def __init__(self, folder: Path, *, read: bool = True) -> None:
        self.folder = folder
        self.read = read
        self._fingerprint: str | None = None

    def key(self, text: str) -> str:
        if self._fingerprint is None:
            self._fingerprint = code_fingerprint()
        return hashlib.sha256(f"{self._fingerprint}\n{text}".encode()).hexdigest()

    def get(self, text: str) -> Plan | None:
        try:
            if not self.read or not self._private():
                return None
            data = (self.folder / f"{self.key(text)}.pickle").read_bytes()
            plan = pickle.loads(data)
        except Exception:  # absent, unreadable, or written by other code: compile instead
            return None
        return plan if isinstance(plan, Plan) else None

    def put(self, text: str, plan: Plan) -> None:
        try:
            entry = self.folder / f"{self.key(text)}.pickle"
            if entry.exists():
                return
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._private():
                return
            data = pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL)
            # write then rename: a task starting meanwhile reads a whole entry or none
            fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, entry)
            self._prune()
        except Exception:  # a read-only or full disk costs the next task start a compile, nothing more
            return

    def _private(self) -> bool:
        """Whether the folder is ours alone: a pickle is code, so nobody else may write one here."""
        stat = self.folder.stat()
        return stat.st_uid == os.getuid() and not stat.st_mode & 0o022

    def _prune(self) -> None:
        entries = list(self.folder.glob("*.pickle"))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda e: e.stat().st_mtime)
        for old in entries[: len(entries) // 2]:
            old.unlink(missing_ok=True)
