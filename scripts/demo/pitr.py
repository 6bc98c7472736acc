"""The demo's continuous archiving: the primary's archive_command feeds a pgBackRest file repository.

Where it lives: `<demo dir>/pgbackrest/` (config, repository, scratch folder) when the cluster's OS
user can reach it, otherwise (a demo dir under a private folder, as pytest's tmp_path is, or a path
too long for the scratch cluster's unix socket) a short folder under /tmp that `stop` removes.
The stanza is created right after the primary starts, before any WAL segment completes, so the
archiver never backs off on a segment it could not push.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.support.postgres import PostgresCluster, _os_user, free_port

STANZA = "demo"
_MAX_BASE = 60  # + "/scratch/.data.pgbackrest/.s.PGSQL.65535" stays under the 107-byte socket limit


@dataclass
class PitrSetup:
    base: str  # holds conf/, repo/, scratch/
    private: bool  # a folder of its own under /tmp: `stop` removes it
    stanza: str
    scratch_port: int

    @property
    def config_dir(self) -> str:
        return f"{self.base}/conf"

    @property
    def repository(self) -> str:
        return f"file://{self.base}/repo"

    @property
    def scratch_dir(self) -> str:
        return f"{self.base}/scratch/data"

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "repository": self.repository, "scratch_dir": self.scratch_dir, "conf": self.conf()}

    def conf(self) -> dict[str, Any]:
        """The pitr_drill run's params."""
        return {"stanza": self.stanza, "repository": self.repository, "scratch_dir": self.scratch_dir,
                "scratch_port": self.scratch_port}


def _reachable(path: Path, user: str | None) -> bool:
    """Whether `user` can walk down to `path` (every ancestor searchable by it)."""
    if user is None:
        return True
    uid = pwd.getpwnam(user).pw_uid
    for folder in [path, *path.parents]:
        try:
            info = folder.stat()
        except OSError:
            continue  # not created yet: made by us below, owned by the user
        if info.st_uid != uid and not info.st_mode & 0o001:
            return False
    return True


def prepare(demo_dir: Path) -> PitrSetup:
    user = _os_user()
    wanted = demo_dir / "pgbackrest"
    if _reachable(demo_dir, user) and len(str(wanted)) <= _MAX_BASE:
        base, private = wanted, False
        base.mkdir(parents=True, exist_ok=True)
    else:
        base, private = Path(tempfile.mkdtemp(prefix="demo-pgbr-")), True
    for folder in (base, base / "conf", base / "repo", base / "scratch"):
        folder.mkdir(exist_ok=True)
        if user:
            info = pwd.getpwnam(user)
            os.chown(folder, info.pw_uid, info.pw_gid)
    return PitrSetup(base=str(base), private=private, stanza=STANZA, scratch_port=free_port())


def archive_settings(setup: PitrSetup) -> dict[str, str]:
    binary = shutil.which("pgbackrest") or "pgbackrest"
    return {"archive_mode": "on",
            "archive_command": f"{binary} --config-path={setup.config_dir} --stanza={setup.stanza} archive-push %p"}


def create_stanza(setup: PitrSetup, primary: PostgresCluster) -> None:
    """Write the config archive_command reads (the hook's own), then `stanza-create`."""
    from recovery_provider.hooks.pgbackrest import PgBackRestHook, PgCluster, Repository

    hook = PgBackRestHook(stanza=setup.stanza, repo=Repository.parse(setup.repository),
                          pg=PgCluster(data_dir=str(primary.data_dir), port=primary.port,
                                       socket_dir=str(primary.socket_dir), user=primary.superuser))
    hook.write_config(Path(setup.config_dir))
    hook.run("stanza-create", timeout=120)


def stop_scratch(record: dict[str, Any] | None) -> None:
    """Stop a scratch cluster a failed or interrupted drill left running (pg_ctl, as its owner)."""
    data = Path(str((record or {}).get("scratch_dir") or ""))
    if not record or not (data / "postmaster.pid").exists():
        return
    from recovery_provider.hooks.pg import find_tool

    argv = [find_tool("pg_ctl", None), "-D", str(data), "-m", "fast", "-w", "stop"]
    user = _os_user()
    subprocess.run(["runuser", "-u", user, "--", *argv] if user else argv, capture_output=True, check=False, timeout=60)


def remove(record: dict[str, Any] | None) -> None:
    if record and record.get("private") and str(record.get("base", "")).startswith(tempfile.gettempdir()):
        shutil.rmtree(str(record["base"]), ignore_errors=True)
