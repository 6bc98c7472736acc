"""`stop`: end every process the demo started and prove that none is left.

First the polite way: SIGTERM to the supervisor, which stops Airflow through the harness and
PostgreSQL with pg_ctl. Then, for a supervisor that died or hung, the forceful way: every process
found through state.json (the supervisor's session, Airflow's process group, the harness marker in
the environment, the postmasters and their data directories) gets SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psutil
from scripts.demo import pitr
from scripts.demo.common import read_state, same_process, state_path, update_state

MARKER_ENV = "AIRFLOW_HARNESS_ID"  # tests/support/airflow_cluster.py sets it on every component
SUPERVISOR_GRACE_S = 90.0  # Airflow's stop waits up to 15 s per escalation, pg_ctl up to 30 s


def _cluster_bases(state: dict[str, Any]) -> set[Path]:
    """Recorded cluster directories plus any whose owner file names our supervisor (one started
    while a stop interrupted start-up, before it was recorded)."""
    bases = {Path(c["base"]) for c in state.get("postgres") or [] if c.get("base")}
    sup = state.get("supervisor") or {}
    if sup:
        owner = f"{sup['pid']}@{float(sup['create_time']):.2f}"
        for owner_file in Path(tempfile.gettempdir()).glob("demo-*/.harness-owner"):
            with contextlib.suppress(OSError):
                if owner_file.read_text().strip() == owner:
                    bases.add(owner_file.parent)
    return bases


def demo_processes(state: dict[str, Any]) -> list[psutil.Process]:
    """Every live process that belongs to the demo described by `state`."""
    sup_tag = state.get("supervisor") or {}
    since = float(sup_tag.get("create_time", 0)) - 1  # a recycled pgid number is not ours
    groups = {g for g in (sup_tag.get("pgid"), (state.get("airflow") or {}).get("pgid")) if g}
    marker = (state.get("airflow") or {}).get("harness_id")
    data_dirs = [str(b / "data") for b in _cluster_bases(state)]
    scratch = (state.get("pgbackrest") or {}).get("scratch_dir")  # the PITR drill's restored copy
    data_dirs += [str(scratch)] if scratch else []
    found: dict[int, psutil.Process] = {}
    for tag in [sup_tag, *[c.get("postmaster") for c in state.get("postgres") or []]]:
        proc = same_process(tag)
        if proc is not None:
            found[proc.pid] = proc
    for proc in psutil.process_iter():
        if proc.pid != os.getpid() and _belongs(proc, since, groups, marker, data_dirs):
            found[proc.pid] = proc
    for proc in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
    return [p for p in found.values() if _alive(p)]


def _belongs(
    proc: psutil.Process, since: float, groups: set[int], marker: str | None, data_dirs: list[str]
) -> bool:
    """One check per way a process can be ours; each may be denied on its own (another user's)."""
    try:
        if proc.create_time() < since or proc.status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    with contextlib.suppress(psutil.Error, OSError):
        if os.getpgid(proc.pid) in groups:
            return True
    with contextlib.suppress(psutil.Error):
        cmdline = " ".join(proc.cmdline())
        if any(d in cmdline for d in data_dirs):
            return True
    with contextlib.suppress(psutil.Error):
        if marker and proc.environ().get(MARKER_ENV) == marker:
            return True
    return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{proc.pid} {' '.join(proc.cmdline())[:100] or proc.name()}")
    return out


def stop_demo(*, quiet: bool = False) -> int:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    state = read_state()
    if state is None:
        say(f"no demo to stop ({state_path()} does not exist)")
        return 0
    seen = {p.pid: p for p in demo_processes(state)}  # remembered: reparented tasks are still ours
    supervisor = same_process(state.get("supervisor"))
    if supervisor is not None:
        say(f"==> stopping the demo (supervisor pid {supervisor.pid}: Airflow, then PostgreSQL)")
        with contextlib.suppress(psutil.Error):
            supervisor.terminate()
            supervisor.wait(timeout=SUPERVISOR_GRACE_S)
    left = {p.pid: p for p in [*seen.values(), *demo_processes(read_state() or state)] if _alive(p)}
    if left:
        say(f"==> {len(left)} process(es) still running: SIGTERM, then SIGKILL")
        for sig_procs in ("terminate", "kill"):
            for proc in left.values():
                with contextlib.suppress(psutil.Error):
                    getattr(proc, sig_procs)()
            _gone, alive = psutil.wait_procs(list(left.values()), timeout=10)
            left = {p.pid: p for p in alive if _alive(p)}
            if not left:
                break
    for base in _cluster_bases(state):
        shutil.rmtree(base, ignore_errors=True)
    pitr.remove(state.get("pgbackrest"))
    leftovers = [p for p in [*left.values(), *demo_processes(state)] if _alive(p)]
    if leftovers:
        update_state(stop_leftovers=_describe(leftovers))
        print("ERROR: processes of the demo are still running:\n  " + "\n  ".join(_describe(leftovers)))
        return 1
    state_path().unlink(missing_ok=True)
    say("==> demo stopped: no process of it is left (Airflow logs stay under " + str(state_path().parent) + ")")
    return 0
