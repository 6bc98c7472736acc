"""Throwaway PostgreSQL clusters started from the server binaries, for tests.

Why not the machine's own service: a developer's machine may have none, and tests must own the
server they break, back up, restore or promote. Why not pytest-postgresql: as root (these
machines run everything as root) `initdb` refuses to run, and so does its process fixture. Here
the data directory belongs to an unprivileged OS user and the server binaries run through
`runuser` when (and only when) we are root.

Every cluster listens on 127.0.0.1 on a free port, keeps its unix socket in its data directory,
trusts local connections (fast, no secrets in test code) and can hold roles that must give a
password (`create_role`), so tests can check that secrets never leak.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import psycopg

HOST = "127.0.0.1"
APT_PACKAGE = "postgresql"  # Debian: pulls postgresql-<N> (server binaries in /usr/lib/postgresql/<N>/bin)
OWNER_FILE = ".harness-owner"  # '<pid>@<create time>' of the test process that made the cluster
_HBA_MARKER = "# --- password-only roles go above this line (tests/support/postgres.py) ---"


class PostgresError(RuntimeError):
    """A server binary failed or the cluster did not come up; the message carries the log tail."""


def find_bin_dir() -> Path:
    """Directory of the newest installed server binaries (initdb, pg_ctl, postgres, pg_basebackup).

    `RECOVERY_PG_BINDIR` wins; then /usr/lib/postgresql/<newest>/bin (Debian puts only some
    binaries on PATH); then wherever `initdb` on PATH really lives.
    """
    override = os.environ.get("RECOVERY_PG_BINDIR")
    if override:
        return Path(override)
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/<N>/bin/initdb, no initdb on PATH). "
        f"Install them: apt-get install -y {APT_PACKAGE}  (or set RECOVERY_PG_BINDIR)."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and ask)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _os_user() -> str | None:
    """The unprivileged OS user that owns data directories when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("RECOVERY_PG_OS_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresError(
        "running as root but neither a 'postgres' nor a 'nobody' user exists to own the cluster"
    )


def _owner_tag() -> str:
    import psutil

    return f"{os.getpid()}@{psutil.Process().create_time():.2f}"


def _owner_alive(tag: str) -> bool:
    import psutil

    pid_text, _, created = tag.strip().partition("@")
    try:
        return f"{psutil.Process(int(pid_text)).create_time():.2f}" == created
    except (psutil.Error, ValueError):
        return False


def reap_orphans(parent: Path | None = None) -> list[Path]:
    """Stop and remove clusters whose test process died without stopping them (a killed pytest).

    Only directories carrying our owner file are touched, and only when that owner is gone, so a
    concurrent test session keeps its clusters. Returns the removed directories.
    """
    removed = []
    for owner_file in Path(parent or tempfile.gettempdir()).glob(f"*/{OWNER_FILE}"):
        base = owner_file.parent
        with contextlib.suppress(OSError):
            pid_file = base / "data" / "postmaster.pid"
            kept = os.environ.get("RECOVERY_KEEP_TMP") == "1" and not pid_file.exists()
            if kept or _owner_alive(owner_file.read_text()):
                continue
            if pid_file.exists():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGQUIT)  # immediate shutdown
                    time.sleep(0.5)
            shutil.rmtree(base, ignore_errors=True)
            removed.append(base)
    return removed


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def scram_sha256_verifier(password: str, *, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password`, computed here.

    Why: `CREATE ROLE ... PASSWORD '<verifier>'` keeps the plain password out of the server's
    statement text and logs, which matters for tests that grep logs for leaked secrets.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclasses.dataclass(frozen=True)
class ReplicationLag:
    """How far a standby is behind its primary, read from both servers."""

    primary_lsn: str
    receive_lsn: str | None
    replay_lsn: str | None
    lag_bytes: int | None  # primary's current WAL position minus the standby's replay position
    replay_delay_seconds: float | None  # now() - last replayed commit timestamp (None: nothing replayed)


class PostgresCluster:
    """One PostgreSQL server in a temporary directory, owned by the test that started it.

    Use as a context manager or call `start()` / `stop()`; `stop()` removes the directory
    (set RECOVERY_KEEP_TMP=1 to keep it for a post-mortem).
    """

    def __init__(
        self,
        name: str = "pg",
        *,
        base_dir: Path | None = None,
        superuser: str = "postgres",
        settings: Mapping[str, str | int] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.superuser = superuser
        self.bin_dir = bin_dir or find_bin_dir()
        self.os_user = _os_user()
        self.port = 0
        self.primary: PostgresCluster | None = None  # set on a standby made by start_replica
        self._parent_dir = base_dir
        self._extra_settings = dict(settings or {})
        self._base: Path | None = None
        self._running = False

    # -- paths --------------------------------------------------------------------------------

    @property
    def base(self) -> Path:
        if self._base is None:
            raise PostgresError(f"cluster {self.name!r} has no directory yet: call start()")
        return self._base

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    def bin(self, tool: str) -> Path:
        """Path of a binary of the same version as the server (pg_dump, pg_restore, psql, ...)."""
        return self.bin_dir / tool

    @property
    def version(self) -> int:
        """Server major version (the /usr/lib/postgresql/<N> number, or from `postgres --version`)."""
        out = subprocess.run(
            [str(self.bin("postgres")), "--version"], capture_output=True, text=True, check=True
        )
        match = re.search(r"(\d+)", out.stdout)
        return int(match.group(1)) if match else 0

    # -- running binaries ---------------------------------------------------------------------

    def run_as_owner(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the data directory's owner (through runuser when we are root)."""
        cmd = [str(a) for a in argv]
        if self.os_user is not None:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            cmd, cwd=self.base, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise PostgresError(
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
                f"server log ({self.log_path}):\n{_tail(self.log_path)}"
            )
        return proc

    def _make_base(self) -> None:
        parent = self._parent_dir or Path(tempfile.gettempdir())
        # Short paths: the unix socket path (data dir + ".s.PGSQL.<port>") must fit in 107 bytes.
        self._base = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=parent))
        if self.os_user is not None:
            info = pwd.getpwnam(self.os_user)
            os.chown(self._base, info.pw_uid, info.pw_gid)
        (self._base / OWNER_FILE).write_text(_owner_tag())
        if len(str(self.data_dir / ".s.PGSQL.65535")) > 107:
            raise PostgresError(
                f"{self.data_dir} is too long for a unix socket path: pass a shorter base_dir"
            )

    def _append_settings(self, settings: Mapping[str, str | int]) -> None:
        lines = ["", "# --- tests/support/postgres.py ---"]
        for key, value in settings.items():
            text = str(value).replace("'", "''")
            lines.append(f"{key} = '{text}'")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")

    def _listen_settings(self) -> dict[str, str | int]:
        return {"listen_addresses": HOST, "port": self.port, "unix_socket_directories": str(self.socket_dir)}

    def _write_hba(self) -> None:
        (self.data_dir / "pg_hba.conf").write_text(
            "\n".join(
                [
                    "# Written by tests/support/postgres.py: trust for local test use, except roles",
                    "# created with create_role(..., password=...), which must authenticate.",
                    _HBA_MARKER,
                    "local   all          all                 trust",
                    f"host    all          all  {HOST}/32    trust",
                    "local   replication  all                 trust",
                    f"host    replication  all  {HOST}/32    trust",
                    "",
                ]
            )
        )

    def _pg_ctl_start(self) -> None:
        self.run_as_owner(
            [self.bin("pg_ctl"), "-D", self.data_dir, "-l", self.log_path, "-w", "-t", "60", "start"],
            timeout=90,
        )
        self._running = True

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """initdb, configure for tests (replication-ready, fsync off) and start; returns self."""
        self._make_base()
        self.run_as_owner(
            [
                self.bin("initdb"),
                "-D",
                self.data_dir,
                "-A",
                "trust",
                "-U",
                self.superuser,
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
        )
        self._write_hba()
        settings: dict[str, str | int] = {
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "wal_keep_size": "128MB",
            "hot_standby": "on",
            "fsync": "off",  # throwaway data; full_page_writes stays on, pg_basebackup needs it
            "max_connections": 200,  # Airflow's components each keep a pool
            "shared_buffers": "64MB",
            "password_encryption": "scram-sha-256",
        }
        settings.update(self._extra_settings)
        self._append_settings(settings)
        self._start_on_free_port()
        return self

    def _start_on_free_port(self, attempts: int = 3) -> None:
        """Pick a free port and start; retry when another process grabbed the port meanwhile."""
        for attempt in range(attempts):
            self.port = free_port()
            self._append_settings(self._listen_settings())
            try:
                self._pg_ctl_start()
                return
            except PostgresError:
                if attempt == attempts - 1 or "could not bind" not in _tail(self.log_path):
                    raise

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and remove its directory."""
        if self._base is None:
            return
        if self._running:
            for mode in ("fast", "immediate"):
                try:
                    self.run_as_owner(
                        [self.bin("pg_ctl"), "-D", self.data_dir, "-m", mode, "-w", "-t", "30", "stop"],
                        timeout=45,
                    )
                    break
                except (PostgresError, subprocess.TimeoutExpired):
                    continue
            else:
                self._kill_postmaster()
            self._running = False
        if remove and os.environ.get("RECOVERY_KEEP_TMP") != "1":
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self._running

    def __enter__(self) -> PostgresCluster:
        if not self._running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connecting ---------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None) -> str:
        """A libpq URI over TCP; the password is included only when you pass one."""
        auth = quote(user or self.superuser, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{HOST}:{self.port}/{quote(dbname, safe='')}"

    def sqlalchemy_url(self, dbname: str = "postgres", *, driver: str = "psycopg") -> str:
        """`postgresql+<driver>://` form, e.g. for Airflow's [database] sql_alchemy_conn."""
        return self.dsn(dbname).replace("postgresql://", f"postgresql+{driver}://", 1)

    def libpq_env(
        self, *, dbname: str | None = None, user: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        """Environment for libpq tools (pg_dump, psql): passwords travel here, never on a command line."""
        env = {"PGHOST": HOST, "PGPORT": str(self.port), "PGUSER": user or self.superuser}
        if dbname:
            env["PGDATABASE"] = dbname
        if password is not None:
            env["PGPASSWORD"] = password
        return env

    def connect(
        self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None
    ) -> psycopg.Connection[Any]:
        """An autocommit psycopg 3 connection (the caller closes it)."""
        import psycopg

        return psycopg.connect(
            host=HOST,
            port=self.port,
            dbname=dbname,
            user=user or self.superuser,
            password=password,
            autocommit=True,
            connect_timeout=10,
        )

    def psql(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        dbname: str = "postgres",
        user: str | None = None,
        password: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode and return its rows ([] when it returns none)."""
        with self.connect(dbname, user=user, password=password) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []

    def scalar(self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres") -> Any:
        rows = self.psql(sql, params, dbname=dbname)
        return rows[0][0] if rows else None

    # -- objects ------------------------------------------------------------------------------

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """CREATE DATABASE and return its DSN (as the superuser)."""
        from psycopg import sql

        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt = sql.SQL("{} OWNER {}").format(stmt, sql.Identifier(owner))
        with self.connect() as conn:
            conn.execute(stmt)
        return self.dsn(name)

    def create_role(
        self,
        name: str,
        password: str | None = None,
        *,
        superuser: bool = False,
        replication: bool = False,
        createdb: bool = False,
    ) -> None:
        """CREATE ROLE ... LOGIN; with a password the role must authenticate (scram-sha-256).

        The plain password never reaches the server: the SCRAM verifier is computed here. pg_hba
        gets lines for this role above the trust lines, and the server reloads them.
        """
        from psycopg import sql

        options = ["LOGIN", "SUPERUSER" if superuser else "NOSUPERUSER"]
        if replication:
            options.append("REPLICATION")
        if createdb:
            options.append("CREATEDB")
        stmt = sql.SQL("CREATE ROLE {} " + " ".join(options)).format(sql.Identifier(name))
        if password is not None:
            stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(scram_sha256_verifier(password)))
        with self.connect() as conn:
            conn.execute(stmt)
        if password is not None:
            self._require_password(name)

    def _require_password(self, role: str) -> None:
        hba = self.data_dir / "pg_hba.conf"
        quoted = '"' + role.replace('"', '""') + '"'
        lines = [
            f"local   all          {quoted}                 scram-sha-256",
            f"host    all          {quoted}  {HOST}/32    scram-sha-256",
            f"host    replication  {quoted}  {HOST}/32    scram-sha-256",
        ]
        hba.write_text(hba.read_text().replace(_HBA_MARKER, "\n".join([*lines, _HBA_MARKER]), 1))
        self.reload()

    def reload(self) -> None:
        """Re-read postgresql.conf and pg_hba.conf; fail loudly if pg_hba has an error."""
        self.psql("SELECT pg_reload_conf()")
        errors = self.psql("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
        if errors:
            raise PostgresError(f"pg_hba.conf errors in {self.name}: {errors}")

    # -- replication --------------------------------------------------------------------------

    def is_in_recovery(self) -> bool:
        return bool(self.scalar("SELECT pg_is_in_recovery()"))

    def current_wal_lsn(self) -> str:
        """Primary: pg_current_wal_lsn(); standby: the last replayed position."""
        if self.is_in_recovery():
            return str(self.scalar("SELECT pg_last_wal_replay_lsn()"))
        return str(self.scalar("SELECT pg_current_wal_lsn()"))

    def replication_lag(self) -> ReplicationLag:
        """Standby only: how far it is behind its primary, in bytes of WAL and in seconds."""
        if self.primary is None:
            raise PostgresError(f"{self.name} is not a standby made by start_replica()")
        receive, replay, delay = self.psql(
            "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
            " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
        )[0]
        primary_lsn = str(self.primary.scalar("SELECT pg_current_wal_lsn()::text"))
        lag = None
        if replay is not None:
            lag = int(
                self.primary.scalar("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [primary_lsn, replay])
            )
        return ReplicationLag(primary_lsn, receive, replay, lag, delay)

    def replication_status(self) -> list[dict[str, Any]]:
        """Primary only: pg_stat_replication rows (state, lsns, write/flush/replay lag intervals)."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT application_name, state, sent_lsn::text, replay_lsn::text, replay_lag, sync_state"
                " FROM pg_stat_replication"
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def wait_for_replay(self, timeout: float = 30.0) -> ReplicationLag:
        """Standby only: wait until it has replayed everything the primary had written when called."""
        if self.primary is None:
            raise PostgresError(f"{self.name} is not a standby made by start_replica()")
        target = str(self.primary.scalar("SELECT pg_current_wal_lsn()::text"))
        deadline = time.monotonic() + timeout
        while True:
            replay = self.scalar("SELECT pg_last_wal_replay_lsn()::text")
            if (
                replay is not None
                and int(
                    self.primary.scalar("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [target, replay])
                )
                <= 0
            ):
                return self.replication_lag()
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"{self.name} did not replay up to {target} within {timeout}s (at {replay}); "
                    f"primary sees {self.primary.replication_status()}\nstandby log:\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def promote(self, timeout: float = 60.0) -> None:
        """Standby only: pg_ctl promote and wait until it accepts writes."""
        self.run_as_owner([self.bin("pg_ctl"), "-D", self.data_dir, "-w", "-t", str(int(timeout)), "promote"])


def start_replica(
    primary: PostgresCluster,
    name: str = "replica",
    *,
    user: str | None = None,
    password: str | None = None,
    base_dir: Path | None = None,
) -> PostgresCluster:
    """A streaming standby of `primary`: pg_basebackup -R -X stream, then start it.

    The primary is started with wal_level=replica and a pg_hba replication entry, so this needs
    nothing else. `user`/`password` pick the replication role (default: the superuser, trusted);
    a password travels in the environment, and -R writes it into the standby's
    postgresql.auto.conf, as PostgreSQL itself does.
    """
    replica = PostgresCluster(name, base_dir=base_dir, superuser=primary.superuser, bin_dir=primary.bin_dir)
    replica._make_base()
    env = primary.libpq_env(user=user, password=password)
    replica.run_as_owner(
        [
            replica.bin("pg_basebackup"),
            "-h",
            HOST,
            "-p",
            str(primary.port),
            "-U",
            env["PGUSER"],
            "-D",
            replica.data_dir,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "-d",
            f"application_name={name}",
        ],
        env={k: v for k, v in env.items() if k == "PGPASSWORD"},
        timeout=300,
    )
    replica.primary = primary
    replica._start_on_free_port()
    return replica


@contextlib.contextmanager
def cluster(name: str = "pg", **kwargs: Any) -> Iterator[PostgresCluster]:
    """`with cluster() as pg:` a started cluster that is stopped and removed afterwards."""
    pg = PostgresCluster(name, **kwargs)
    try:
        yield pg.start()
    finally:
        pg.stop()
