"""Paths and the state file shared by `up`, the supervisor and `stop`."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
STATE_VERSION = 1


def dags_folder() -> Path:
    """`$RECOVERY_DEMO_DAGS`, else the repository's dags/ (the demo test adds broken specs to a copy)."""
    return Path(os.environ.get("RECOVERY_DEMO_DAGS") or ROOT / "dags").resolve()


def demo_dir() -> Path:
    """`$RECOVERY_DEMO_DIR` (the CI test uses a temp dir, so it never touches a developer's demo)."""
    return Path(os.environ.get("RECOVERY_DEMO_DIR") or ROOT / ".recovery" / "demo").resolve()


def state_path() -> Path:
    return demo_dir() / "state.json"


def read_state() -> dict[str, Any] | None:
    try:
        data = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(state: dict[str, Any]) -> None:
    """Atomic (rename) and owner-only: it holds the Airflow admin password the demo prints anyway."""
    path = state_path()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"version": STATE_VERSION, **state}, fh, indent=2, default=str)
    tmp.replace(path)


def update_state(**changes: Any) -> dict[str, Any]:
    state = read_state() or {}
    state.update(changes)
    write_state(state)
    return state


def proc_tag(proc: psutil.Process) -> dict[str, Any]:
    """pid + start time: a recycled pid is never mistaken for one of ours."""
    return {"pid": proc.pid, "create_time": proc.create_time()}


def same_process(tag: dict[str, Any] | None) -> psutil.Process | None:
    """The live (non-zombie) process a proc_tag names, or None."""
    if not tag:
        return None
    with contextlib.suppress(psutil.Error, KeyError, TypeError, ValueError):
        proc = psutil.Process(int(tag["pid"]))
        if abs(proc.create_time() - float(tag["create_time"])) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    return None


def fmt_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
