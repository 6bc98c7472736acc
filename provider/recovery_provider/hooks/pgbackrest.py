"""pgBackRest, driven from Airflow: the binary, a generated configuration, secrets in its environment.

Why a generated configuration: a task must not depend on whatever ``/etc/pgbackrest`` holds on the
worker, and the same repository is named the way the rest of the provider names storage
(``file:///path`` or ``s3://<aws conn id>@<bucket>/<prefix>``). Each command gets its own
``--config-path`` (a private folder, removed afterwards), so the machine's files are never read.

Secrets never reach a command line, a log or the configuration file: the S3 key pair (from the
AWS connection's login/password) and the PostgreSQL password travel in the child's environment
only (``PGBACKREST_REPO1_S3_KEY``, ``PGBACKREST_REPO1_S3_KEY_SECRET``, ``PGPASSWORD``); pgBackRest's
own output redacts them, and every line we log or raise is redacted again (belt and braces).

pgBackRest must run as the cluster's owner (it reads the data directory and is called back by the
server's ``archive_command``). As root we run it through ``runuser -u <owner>``; as any other user we
run it directly and refuse when the owner differs. Exit codes are pgBackRest's error codes; the
ones no retry can fix (bad options, checksums, a missing or invalid backup) are marked ``fatal`` so
operators fail the task at once instead of spending the RTO on retries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from recovery_provider.exceptions import PgBackRestError, RecoveryError

# pgBackRest error codes (src/build/error/error.yaml, 2.45) that no retry can fix. Not here, so
# retried: connections (49, 56), locks (50), archive timeouts (82), I/O and 5xx service errors (101).
FATAL_CODES = {
    26: "checksum mismatch", 27: "configuration", 28: "invalid file", 29: "format", 30: "command required",
    31: "invalid option", 32: "invalid option value", 37: "option required", 38: "PostgreSQL is running there",
    40: "path not empty", 44: "archive mismatch", 46: "version not supported", 48: "invalid command",
    51: "backup mismatch", 55: "file missing", 58: "database mismatch", 67: "feature not supported",
    68: "archive_command invalid", 75: "backup set invalid", 80: "database missing", 81: "database invalid",
    87: "archiving disabled", 89: "user missing", 95: "encryption", 96: "invalid parameter",
    105: "access denied (credentials)",
}
_ERROR_LINE = re.compile(r"ERROR: \[(\d{3})\]: (.*)")
_OPTION_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_SECRET_OPTIONS = re.compile(r"(key|secret|pass|token)", re.I)
COMPRESS_TYPES = ("none", "gz", "lz4", "zst", "bz2")
BACKUP_TYPES = ("full", "diff", "incr")


def argument_error(message: str) -> PgBackRestError:
    """Bad input from the spec or DAG: never worth a retry."""
    return PgBackRestError(message, fatal=True)


def find_pgbackrest(path: str | None = None) -> str:
    found = path or os.environ.get("RECOVERY_PGBACKREST") or shutil.which("pgbackrest")
    if not found or not Path(found).exists():
        raise argument_error(
            "pgbackrest not found: install it (Debian/Ubuntu: apt-get install pgbackrest; scripts/_env.sh "
            "does so) or pass pgbackrest_bin / set RECOVERY_PGBACKREST"
        )
    return found


@dataclasses.dataclass(frozen=True)
class Repository:
    """Where backups and WAL live, as pgBackRest's repo1 options; credentials kept apart."""

    location: str
    type: str  # posix | s3
    path: str
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, location: str, *, verify_tls: bool | None = None) -> Repository:
        """``file:///abs/path``, ``/abs/path`` or ``s3://<aws conn id>@<bucket>/<prefix>``."""
        text = str(location or "").strip()
        if text.startswith("file://") or text.startswith("/"):
            path = text.removeprefix("file://")
            if not path.startswith("/"):
                raise argument_error(f"repository {location!r}: a file repository needs an absolute path (file:///srv/pgbackrest)")
            return cls(location=text, type="posix", path=path.rstrip("/") or "/")
        match = re.fullmatch(r"s3://([^@/]+)@([^/]+)(/.*)?", text)
        if not match:
            raise argument_error(
                f"repository {location!r} is not understood: use file:///absolute/path or "
                "s3://<aws conn id>@<bucket>/<prefix> (the connection gives keys, endpoint_url and region_name)"
            )
        conn_id, bucket, prefix = match.group(1), match.group(2), (match.group(3) or "/").rstrip("/") or "/"
        return cls._s3(text, conn_id, bucket, prefix, verify_tls)

    @classmethod
    def _s3(cls, location: str, conn_id: str, bucket: str, prefix: str, verify_tls: bool | None) -> Repository:
        from urllib.parse import urlsplit

        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:
            raise argument_error(
                f"Airflow connection '{conn_id}' (named by repository {location}) is not defined "
                f"({type(exc).__name__}): create it (an aws connection: login = access key, password = secret "
                f"key, extra endpoint_url/region_name), e.g. AIRFLOW_CONN_{conn_id.upper()}"
            ) from None
        extra = dict(conn.extra_dejson or {})
        endpoint = str(extra.get("endpoint_url") or "")
        region = str(extra.get("region_name") or "us-east-1")
        options = {"repo1-s3-bucket": bucket, "repo1-s3-region": region}
        if endpoint:
            split = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            if split.scheme != "https":
                raise argument_error(
                    f"connection '{conn_id}': endpoint_url {endpoint} is plain HTTP, and pgBackRest's S3 driver "
                    "speaks HTTPS only: serve the endpoint over TLS (verify: false in the extra skips the check)"
                )
            options["repo1-s3-endpoint"] = split.hostname or ""
            if split.port:
                options["repo1-storage-port"] = str(split.port)
            options["repo1-s3-uri-style"] = str(extra.get("s3_uri_style") or "path")
        else:
            options["repo1-s3-endpoint"] = f"s3.{region}.amazonaws.com"
        verify = extra.get("verify") if verify_tls is None else verify_tls
        if verify is False or str(verify).lower() in ("false", "n", "no", "0"):
            options["repo1-storage-verify-tls"] = "n"
        elif isinstance(verify, str) and verify.startswith("/"):
            options["repo1-storage-ca-file"] = verify
        secrets = {}
        if conn.login:
            secrets["PGBACKREST_REPO1_S3_KEY"] = conn.login
            secrets["PGBACKREST_REPO1_S3_KEY_SECRET"] = conn.password or ""
        else:
            options["repo1-s3-key-type"] = "auto"  # the instance's IAM role
        if extra.get("aws_session_token"):
            secrets["PGBACKREST_REPO1_S3_TOKEN"] = str(extra["aws_session_token"])
        return cls(location=location, type="s3", path=prefix, options=options, secrets=secrets)

    def config(self) -> dict[str, str]:
        return {"repo1-type": self.type, "repo1-path": self.path, **self.options}


@dataclasses.dataclass(frozen=True)
class PgCluster:
    """The PostgreSQL side of a stanza (pg1-*): read from the server itself through its connection."""

    data_dir: str
    port: int | None = None
    socket_dir: str | None = None
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_conn_id(cls, conn_id: str, data_dir: str | None = None) -> PgCluster:
        """Ask the server where its data directory and socket are (SHOW); ``data_dir`` overrides."""
        from recovery_provider.hooks.pg import PgTarget

        try:
            target = PgTarget.from_conn_id(conn_id)
        except RecoveryError as exc:
            raise argument_error(str(exc)) from None
        with target.connect(attempts=2) as conn:
            values = {name: conn.execute(f"SHOW {name}").fetchone() for name in
                      ("data_directory", "port", "unix_socket_directories")}
        sockets = [s.strip() for s in str((values["unix_socket_directories"] or [""])[0]).split(",") if s.strip()]
        if not sockets:
            raise argument_error(
                f"{target.where} listens on no unix socket (unix_socket_directories is empty): pgBackRest "
                "connects to a local cluster through its socket; set unix_socket_directories"
            )
        row = values["port"]
        return cls(
            data_dir=data_dir or str((values["data_directory"] or [""])[0]),
            port=int(row[0]) if row else target.port,
            socket_dir=sockets[0],
            user=target.user,
            password=target.password,
        )

    def config(self) -> dict[str, str]:
        out = {"pg1-path": self.data_dir}
        if self.port:
            out["pg1-port"] = str(self.port)
        if self.socket_dir:
            out["pg1-socket-path"] = self.socket_dir
        if self.user:
            out["pg1-user"] = self.user
        return out


@dataclasses.dataclass
class Result:
    command: str
    code: int
    output: str
    seconds: float

    def lines(self) -> list[str]:
        return self.output.splitlines()


def owner_of(path: str | Path) -> str | None:
    try:
        return pwd.getpwuid(Path(path).stat().st_uid).pw_name
    except (OSError, KeyError):
        return None


@dataclasses.dataclass
class PgBackRestHook:
    """One stanza in one repository; ``run`` executes a pgBackRest command with a fresh config."""

    stanza: str
    repo: Repository
    pg: PgCluster | None = None
    run_as: str | None = None
    binary: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config_dir: str | None = None  # keep the config here (a restored server's restore_command needs it)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.stanza or ""):
            raise argument_error(
                f"stanza {self.stanza!r}: use letters, digits, '_', '.', '-' (it names folders in the repository)"
            )
        for key in self.options:
            if not _OPTION_NAME.match(str(key)):
                raise argument_error(f"pgBackRest option {key!r}: option names are lower-case words joined by '-'")
            if _SECRET_OPTIONS.search(str(key)) and str(key) not in ("repo1-s3-key-type",):
                raise argument_error(
                    f"pgBackRest option {key!r} carries a secret: secrets come from Airflow connections (and travel "
                    "in pgBackRest's environment), never from task arguments"
                )
        self.binary = find_pgbackrest(self.binary)
        self.run_as = self._os_user()

    def _os_user(self) -> str | None:
        """The user to run as: given, else the data directory's (or file repository's) owner when root."""
        me = pwd.getpwuid(os.geteuid()).pw_name
        wanted = self.run_as
        if wanted is None:
            candidates = [self.pg.data_dir, str(Path(self.pg.data_dir).parent)] if self.pg else []
            candidates += [self.repo.path] if self.repo.type == "posix" else []
            for candidate in candidates:  # a restore's directory may not exist yet: its parent decides
                wanted = owner_of(candidate)
                if wanted:
                    break
        if wanted is None or wanted == me:
            return None
        if os.geteuid() != 0:
            raise argument_error(
                f"pgBackRest must run as '{wanted}' (the cluster's owner) but this worker runs as '{me}': run the "
                "worker as that user, or as root (then runuser is used)"
            )
        return wanted

    # -- configuration -----------------------------------------------------------------------------

    def config_text(self) -> str:
        """The configuration file: no secret ever appears in it."""
        # Bundling packs small files into larger repository objects: far fewer requests on S3.
        common = {"log-level-console": "info", "log-level-stderr": "off", "log-level-file": "off",
                  "repo1-bundle": "y", **self.repo.config(), **{k: _value(v) for k, v in self.options.items()}}
        lines = ["[global]", *(f"{k}={v}" for k, v in common.items()), "", f"[{self.stanza}]"]
        lines += [f"{k}={v}" for k, v in (self.pg.config() if self.pg else {}).items()]
        return "\n".join(lines) + "\n"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGBACKREST_"))}
        env.update(self.repo.secrets)
        if self.pg and self.pg.password:
            env["PGPASSWORD"] = self.pg.password
        return env

    def redact(self, text: str) -> str:
        for secret in [*self.repo.secrets.values(), self.pg.password if self.pg else None]:
            if secret:
                text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def config_path(self) -> Iterator[str]:
        """A folder holding pgbackrest.conf, readable by the run-as user only."""
        if self.config_dir:
            folder = Path(self.config_dir)
            folder.mkdir(parents=True, exist_ok=True)
            self.write_config(folder)
            yield str(folder)
            return
        folder = Path(tempfile.mkdtemp(prefix="recovery-pgbackrest-"))
        try:
            self.write_config(folder)
            yield str(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def archive_command(self, config_dir: str) -> str:
        """The server's ``archive_command`` for a config written by :meth:`write_config` into ``config_dir``.

        The server runs it, not Airflow: it needs that file (and, for S3, the keys in the server's
        environment, or in a file only the owner reads) to be there as long as archiving is on.
        """
        assert self.binary is not None
        return f"{self.binary} --config-path={config_dir} --stanza={self.stanza} archive-push %p"

    def write_config(self, folder: Path) -> None:
        """Write ``pgbackrest.conf`` (no secrets) into ``folder``, both readable by the run-as user only."""
        conf = folder / "pgbackrest.conf"
        conf.write_text(self.config_text())
        folder.chmod(0o700)
        conf.chmod(0o600)
        if self.run_as:
            info = pwd.getpwnam(self.run_as)
            for path in (folder, conf):
                os.chown(path, info.pw_uid, info.pw_gid)

    # -- running -----------------------------------------------------------------------------------

    def argv(self, config_dir: str, command: str, *args: str) -> list[str]:
        assert self.binary is not None
        argv = [self.binary, f"--config-path={config_dir}", f"--stanza={self.stanza}", command, *args]
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else argv

    def run(self, command: str, *args: str, timeout: float = 3600, log: Any = None, check: bool = True) -> Result:
        """Run one command; its output is logged (redacted) and, on failure, raised with its error code."""
        started = time.monotonic()
        with self.config_path() as folder:
            argv = self.argv(folder, command, *args)
            try:
                proc = subprocess.run(argv, env=self.environment(), capture_output=True, text=True,
                                      timeout=timeout, check=False, cwd=folder)
            except subprocess.TimeoutExpired:
                raise PgBackRestError(f"pgbackrest {command} (stanza '{self.stanza}') did not finish within "
                                      f"{timeout:.0f}s and was stopped; check the repository and the server") from None
        output = self.redact((proc.stdout or "") + (proc.stderr or ""))
        result = Result(command, proc.returncode, output, time.monotonic() - started)
        if log is not None and output.strip() and command not in ("info", "repo-ls"):
            log.info("pgbackrest %s:\n%s", command, output.strip()[-6000:])
        if check and proc.returncode != 0:
            raise self.error(result)
        return result

    def error(self, result: Result) -> PgBackRestError:
        found = _ERROR_LINE.search(result.output)
        code = int(found.group(1)) if found else result.code
        detail = result.output[found.start():].strip() if found else result.output.strip()[-2000:]
        fatal = code in FATAL_CODES
        advice = ("retrying cannot fix this: " + FATAL_CODES[code]) if fatal else "a retry may succeed"
        return PgBackRestError(
            f"pgbackrest {result.command} failed for stanza '{self.stanza}' at {self.repo.location} "
            f"(error {code}; {advice}):\n{detail[:3000]}",
            code=code, fatal=fatal,
        )

    def info(self, *args: str) -> dict[str, Any]:
        """``info --output=json`` for this stanza (the stanza's entry)."""
        out = self.run("info", "--output=json", *args).output
        try:
            data = json.loads(out[out.index("["):])
        except ValueError:
            raise PgBackRestError(f"pgbackrest info printed no JSON: {out[-500:]}") from None
        for entry in data:
            if entry.get("name") == self.stanza:
                return dict(entry)
        raise PgBackRestError(f"pgbackrest info knows no stanza '{self.stanza}' at {self.repo.location}", fatal=True)

    def newest_archived(self) -> dict[str, Any] | None:
        """The newest WAL segment in the repository, with the time it was stored (repo-ls)."""
        info = self.info()
        archives = [a for a in info.get("archive") or [] if a.get("max")]
        if not archives:
            return None
        newest = archives[-1]
        segment = str(newest["max"])
        folder = f"archive/{self.stanza}/{newest['id']}/{segment[:16]}"
        listing = self.run("repo-ls", "--output=json", f"--filter=^{segment}", folder).output
        try:
            files = json.loads(listing[listing.index("{"):])
        except ValueError:
            files = {}
        stamps = [int(v["time"]) for v in files.values() if isinstance(v, dict) and "time" in v]
        return {"archive_id": newest["id"], "segment": segment, "min_segment": newest.get("min"),
                "archived_at_epoch": max(stamps) if stamps else None}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)

