"""Point-in-time restore with pgBackRest into a scratch data directory, started and waited for.

Order, and why:

1. check the request (target type and value, the directory) before touching anything: a bad time
   or LSN is an argument error no retry fixes;
2. the directory must be absent or empty, or hold an unfinished restore of ours (a side folder
   ``.<name>.pgbackrest`` keeps its marker, the configuration and the server log): a data directory
   we did not create is never overwritten;
3. ``pgbackrest restore`` with ``--archive-mode=off`` (a scratch copy must never push WAL into the
   production stanza) and ``--target-action`` (promote by default);
4. ``pg_ctl start`` on the given port, with the repository's secrets in the server's environment
   only (its ``restore_command`` calls ``archive-get``), then wait until recovery reached the
   target: promoted (``pg_is_in_recovery()`` false) or paused at it;
5. measure what was restored: the last replayed commit's time and LSN. For a time target the
   achieved RPO is ``target - last restored commit``: the data written in that window is what a
   restore to that moment gives up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from recovery_provider.exceptions import PgBackRestError
from recovery_provider.hooks.pgbackrest import PgBackRestHook, argument_error

TARGET_TYPES = ("time", "lsn", "latest", "immediate")
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
MARKER = "restore.json"


def parse_target_time(value: Any) -> dt.datetime:
    """An aware datetime from a datetime or ISO 8601 text; a time without zone is refused."""
    if isinstance(value, dt.datetime):
        stamp = value
    else:
        try:
            stamp = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise argument_error(
                f"target {value!r} is not a time: give ISO 8601 with a zone, e.g. 2024-01-02T03:04:05+00:00"
            ) from None
    if stamp.tzinfo is None:
        raise argument_error(f"target {value!r} has no time zone: add one (+00:00 or Z), the server's zone is not assumed")
    return stamp


@dataclasses.dataclass
class PitrRequest:
    hook: PgBackRestHook  # its pg.data_dir is the directory to restore into
    type: str = "latest"
    target: Any = None
    backup_set: str | None = None
    target_action: str = "promote"  # promote | pause
    target_exclusive: bool = False
    process_max: int = 1
    start: bool = True
    port: int | None = None
    listen_addresses: str = "127.0.0.1"
    user: str = "postgres"
    password: str | None = dataclasses.field(default=None, repr=False)
    pg_bin_dir: str | None = None
    wait_timeout: float = 600.0

    @property
    def data_dir(self) -> Path:
        assert self.hook.pg is not None
        return Path(self.hook.pg.data_dir)

    @property
    def side_dir(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.pgbackrest"

    def validate(self) -> str | None:
        """Check the arguments; return the target as pgBackRest wants it."""
        if self.type not in TARGET_TYPES:
            raise argument_error(f"type {self.type!r}: use one of {', '.join(TARGET_TYPES)}")
        if self.target_action not in ("promote", "pause"):
            raise argument_error(f"target_action {self.target_action!r}: use promote or pause")
        if not self.data_dir.is_absolute():
            raise argument_error(f"data_dir {self.data_dir}: give an absolute path")
        if self.start and not self.port:
            raise argument_error("port is required to start the restored cluster (or pass start: false)")
        if self.type == "time":
            return parse_target_time(self.target).isoformat(sep=" ")
        if self.type == "lsn":
            if not _LSN.match(str(self.target or "")):
                raise argument_error(f"target {self.target!r} is not an LSN such as 0/3000060")
            return str(self.target)
        if self.target not in (None, ""):
            raise argument_error(f"type {self.type} takes no target (got {self.target!r}): use type time or lsn")
        return None

    def identity(self) -> dict[str, Any]:
        return {"stanza": self.hook.stanza, "repository": self.hook.repo.location, "type": self.type,
                "target": None if self.target in (None, "") else str(self.target), "set": self.backup_set}


def _pg_bin(tool: str, bin_dir: str | None) -> str:
    from recovery_provider.hooks.pg import find_tool

    return find_tool(tool, bin_dir)


def _as_owner(hook: PgBackRestHook, argv: list[str]) -> list[str]:
    return ["runuser", "-u", hook.run_as, "--", *argv] if hook.run_as else argv


def _prepare(req: PitrRequest) -> str:
    """'fresh' or 'redo' (our unfinished attempt); refuses anything else."""
    marker = req.side_dir / MARKER
    data = req.data_dir
    if data.exists() and any(data.iterdir()):
        if not marker.exists():
            raise argument_error(
                f"{data} is not empty and was not created by a restore of this provider: nothing was changed. "
                "Restore into an empty or absent directory, or remove it first if it is a stale scratch copy."
            )
        recorded = json.loads(marker.read_text())
        if (data / "postmaster.pid").exists():
            raise argument_error(
                f"a server is running on {data} (restored earlier: {recorded.get('identity')}): stop it first "
                "(pgbackrest.drop_scratch) or restore into another directory"
            )
        shutil.rmtree(data)
        action = "redo"
    else:
        action = "fresh"
    req.side_dir.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    if req.hook.run_as:
        info = pwd.getpwnam(req.hook.run_as)
        for path in (req.side_dir, data):
            os.chown(path, info.pw_uid, info.pw_gid)
    marker.write_text(json.dumps({"identity": req.identity(), "state": "in progress"}))
    return action


def run_pitr(req: PitrRequest, log: Any) -> dict[str, Any]:
    target = req.validate()
    action = _prepare(req)
    req.hook.config_dir = str(req.side_dir / "config")  # the restored server's restore_command reads it
    args = [f"--type={'default' if req.type == 'latest' else req.type}", "--archive-mode=off",
            f"--process-max={int(req.process_max)}"]
    if target is not None:
        args.append(f"--target={target}")
    if req.type in ("time", "lsn", "immediate"):
        args.append(f"--target-action={req.target_action}")
    if req.target_exclusive:
        args.append("--target-exclusive")
    if req.backup_set:
        args.append(f"--set={req.backup_set}")
    started = time.monotonic()
    result = req.hook.run("restore", *args, log=log)
    restore_seconds = time.monotonic() - started
    used = re.search(r"restore backup set ([^,\s]+)", result.output)
    summary: dict[str, Any] = {
        "stanza": req.hook.stanza, "type": req.type, "target": target, "backup_set": used.group(1) if used else None,
        "data_dir": str(req.data_dir), "action": "restored again" if action == "redo" else "restored",
        "restore_seconds": round(restore_seconds, 3),
    }
    marker = req.side_dir / MARKER
    marker.write_text(json.dumps({"identity": req.identity(), "state": "restored", **summary}))
    if not req.start:
        return summary
    started = time.monotonic()
    _start(req)
    reached = _wait_for_target(req)
    summary.update(reached, port=req.port, start_seconds=round(time.monotonic() - started, 3))
    if req.type == "time" and reached.get("last_commit_at"):
        last = dt.datetime.fromisoformat(reached["last_commit_at"])
        summary["achieved_rpo_seconds"] = round((parse_target_time(req.target) - last).total_seconds(), 3)
    # The run ledger reads ``finished_at`` of step results as the recovery point (the data's age).
    summary["finished_at"] = reached.get("last_commit_at")
    marker.write_text(json.dumps({"identity": req.identity(), "state": "started", **summary}))
    return summary


def _start(req: PitrRequest) -> None:
    log_file = req.side_dir / "postgres.log"
    options = f"-p {int(req.port or 0)} -k {req.side_dir} -c listen_addresses={req.listen_addresses} -c hot_standby=on"
    argv = _as_owner(req.hook, [_pg_bin("pg_ctl", req.pg_bin_dir), "-D", str(req.data_dir), "-l", str(log_file),
                                "-o", options, "-w", "-t", str(int(req.wait_timeout)), "start"])
    # The server's restore_command (pgbackrest archive-get) needs the repository's secrets: they go
    # in the server's environment, never in its configuration.
    env = req.hook.environment()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=req.wait_timeout + 30, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _server_error(req, f"pg_ctl start exited {proc.returncode}")


def _server_error(req: PitrRequest, what: str) -> PgBackRestError:
    text = ""
    log_file = req.side_dir / "postgres.log"
    if log_file.exists():
        text = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
    fatal = "before configured recovery target was reached" in text or ("recovery target" in text and "FATAL" in text)
    hint = ("the target lies beyond the archived WAL (or before the backup's end): pick an earlier target, "
            "or check that archive_command is feeding the repository") if fatal else "see the server log"
    return PgBackRestError(f"the restored cluster in {req.data_dir} did not reach its target ({what}): {hint}. "
                           f"Server log ({log_file}):\n{req.hook.redact(text)}", fatal=fatal)


def _connect(req: PitrRequest) -> Any:
    import psycopg

    return psycopg.connect(host="127.0.0.1" if req.listen_addresses in ("*", "") else req.listen_addresses.split(",")[0],
                           port=req.port, user=req.user, password=req.password, dbname="postgres",
                           autocommit=True, connect_timeout=5, application_name="recovery_provider")


def _wait_for_target(req: PitrRequest) -> dict[str, Any]:
    import psycopg

    deadline = time.monotonic() + req.wait_timeout
    last_state = "not connected"
    while time.monotonic() < deadline:
        if not (req.data_dir / "postmaster.pid").exists():
            raise _server_error(req, "the server stopped during recovery")
        try:
            with _connect(req) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp(),"
                    " CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,"
                    " (SELECT timeline_id FROM pg_control_checkpoint())").fetchone()
        except psycopg.Error as exc:
            last_state = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            time.sleep(0.5)
            continue
        assert row is not None
        in_recovery, lsn, last_commit, pause_state, timeline = row
        done = (not in_recovery) if req.target_action == "promote" or req.type == "latest" else pause_state == "paused"
        if done:
            return {"in_recovery": bool(in_recovery), "replay_lsn": lsn, "timeline": timeline,
                    "last_commit_at": last_commit.astimezone(dt.timezone.utc).isoformat() if last_commit else None}
        last_state = f"in recovery, replayed up to {lsn}"
        time.sleep(0.5)
    raise PgBackRestError(f"the restored cluster in {req.data_dir} did not reach its target within "
                          f"{req.wait_timeout:.0f}s (last seen: {last_state}); it is left running for inspection")


def stop_scratch(data_dir: Path, hook: PgBackRestHook, pg_bin_dir: str | None, remove: bool = True) -> dict[str, Any]:
    """Stop a cluster this provider restored (its marker proves it) and, with ``remove``, delete it."""
    side = data_dir.parent / f".{data_dir.name}.pgbackrest"
    if not data_dir.exists():
        return {"data_dir": str(data_dir), "stopped": False, "removed": False, "note": "absent"}
    if not (side / MARKER).exists():
        raise argument_error(f"refusing to touch {data_dir}: it was not restored by this provider (no {side / MARKER})")
    stopped = False
    if (data_dir / "postmaster.pid").exists():
        argv = _as_owner(hook, [_pg_bin("pg_ctl", pg_bin_dir), "-D", str(data_dir), "-m", "fast", "-w", "stop"])
        subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL)
        stopped = True
    if remove:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(side, ignore_errors=True)
    return {"data_dir": str(data_dir), "stopped": stopped, "removed": remove}
