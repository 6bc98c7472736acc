"""PostgreSQL access for recovery operators: one place that knows connections, secrets and binaries.

Why not only PostgresHook: the operators need two things it does not give in one piece: a psycopg 3
connection with retries that end in a message saying what to do, and an environment for libpq
tools (pg_dump, pg_restore) where the password travels in the child's environment only, never on a
command line, in a log or in XCom. The Airflow connection (any secrets backend, ``AIRFLOW_CONN_*`` included) is
read once through ``BaseHook.get_connection``; the password stays in this process and in the
environment of the one child that needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recovery_provider.exceptions import ConnectionMissing, RecoveryError

# defined in exceptions.py, one hierarchy; still importable from here
from recovery_provider.exceptions import PgToolError as PgToolError
from recovery_provider.exceptions import PostgresUnavailable as PostgresUnavailable

if TYPE_CHECKING:
    import psycopg

# libpq settings an Airflow connection's extra may carry, mapped to the tools' environment.
_EXTRA_TO_ENV = {
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


@dataclasses.dataclass(frozen=True)
class PgTarget:
    """Where and as whom to connect. ``password`` never appears in repr, logs or manifests."""

    conn_id: str
    host: str
    port: int
    user: str
    dbname: str
    password: str | None = dataclasses.field(default=None, repr=False)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_conn_id(cls, conn_id: str, database: str | None = None) -> PgTarget:
        """Read an Airflow connection; ``database`` overrides the connection's schema."""
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:  # not found: no retry helps; a secrets backend down: a retry may
            error = ConnectionMissing if type(exc).__name__ == "AirflowNotFoundException" else RecoveryError
            raise error(
                f"Airflow connection '{conn_id}' is not defined ({type(exc).__name__}): create it "
                f"(UI, `airflow connections add`, or AIRFLOW_CONN_{conn_id.upper()})"
            ) from None
        return cls(
            conn_id=conn_id,
            host=conn.host or "localhost",
            port=int(conn.port or 5432),
            user=conn.login or "postgres",
            dbname=database or conn.schema or "postgres",
            password=conn.password or None,
            extra=dict(conn.extra_dejson or {}),
        )

    def with_database(self, dbname: str) -> PgTarget:
        return dataclasses.replace(self, dbname=dbname)

    @property
    def where(self) -> str:
        """Human description without secrets, for logs and errors."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname} (conn_id '{self.conn_id}')"

    def public(self) -> dict[str, Any]:
        """Secret-free description for manifests and XCom."""
        return {"conn_id": self.conn_id, "host": self.host, "port": self.port, "user": self.user}

    def redact(self, text: str) -> str:
        """Remove the password from text that came from a child process (belt and braces)."""
        return text.replace(self.password, "***") if self.password else text

    # -- psycopg ----------------------------------------------------------------------------------

    def connect(
        self,
        *,
        attempts: int = 3,
        retry_delay: float = 1.0,
        connect_timeout: int = 10,
        autocommit: bool = True,
    ) -> psycopg.Connection[Any]:
        """Connect with a few attempts (exponential delay); fail with a message that says what to do."""
        import psycopg

        last: Exception | None = None
        attempts = max(1, attempts)
        for attempt in range(attempts):
            try:
                return psycopg.connect(
                    host=self.host,
                    port=self.port,
                    user=self.user,
                    dbname=self.dbname,
                    password=self.password,
                    autocommit=autocommit,
                    connect_timeout=int(self.extra.get("connect_timeout", connect_timeout)),
                    application_name="recovery_provider",
                    **{k: v for k, v in self.extra.items() if k.startswith("ssl")},
                )
            except psycopg.OperationalError as exc:
                last = exc
                if attempt < attempts - 1:
                    time.sleep(retry_delay * (2**attempt))
        reason = self.redact(str(last).strip().splitlines()[0] if last else "unknown error")
        raise PostgresUnavailable(
            f"cannot connect to PostgreSQL {self.where} after {attempts} attempt(s): {reason}. "
            "Check that the server is up and that the connection's host, port, user, password and "
            "database are right; Airflow retries the task as its `retries` setting says."
        )

    # -- libpq tools ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def tool_env(self) -> Iterator[dict[str, str]]:
        """Environment for pg_dump/pg_restore, the password in PGPASSWORD of that child only.

        Why not a passfile: a worker killed with SIGKILL cannot remove it, leaving the password on
        disk; a child's environment dies with the child and is readable only by its owner (and
        root) through /proc. Inherited PG* variables are dropped so a stray PGPASSWORD or PGSERVICE
        of the worker cannot redirect or authenticate the child. The database is not set here:
        callers pass it in a way libpq never parses as a connection string.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user})
        env["PGAPPNAME"] = "recovery_provider"
        env["PGPASSFILE"] = os.devnull  # never read the worker user's ~/.pgpass by accident
        for key, var in _EXTRA_TO_ENV.items():
            if key in self.extra:
                env[var] = str(self.extra[key])
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        yield env


def conninfo_dbname(dbname: str) -> str:
    """``dbname='...'`` for a tool's -d: quoted so libpq never treats a hostile name as a URI or options."""
    return "dbname='" + dbname.replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_tool(tool: str, bin_dir: str | None = None) -> str:
    """Path of a libpq tool, newest version first (pg_dump must not be older than the server).

    Order: the ``bin_dir`` argument, ``RECOVERY_PG_BINDIR``, the newest /usr/lib/postgresql/<N>/bin
    (Debian puts versioned binaries there), then PATH.
    """
    for candidate in (bin_dir, os.environ.get("RECOVERY_PG_BINDIR")):
        if candidate:
            path = Path(candidate) / tool
            if path.exists():
                return str(path)
            raise RecoveryError(f"{tool} not found in {candidate}: point pg_bin_dir at the PostgreSQL bin directory")
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob(f"*/bin/{tool}") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    if versions:
        return str(versions[-1])
    found = shutil.which(tool)
    if found:
        return found
    raise RecoveryError(
        f"{tool} not found: install the PostgreSQL client (apt-get install postgresql-client) "
        "or set pg_bin_dir / RECOVERY_PG_BINDIR"
    )


def tool_version(path: str) -> str:
    import subprocess

    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else out.strip()
