"""The README's demo command, end to end on loopback: runs reach their states, stop leaves nothing.

Runs `bash scripts/demo.sh` exactly as a newcomer would (in a temp RECOVERY_DEMO_DIR, so a
developer's own demo in .recovery/demo is never touched), then `bash scripts/demo.sh stop`, and
checks /proc itself, independently of the stop command's own check, that no process is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support import broken_specs
from tests.support.airflow_cluster import AirflowApi

REPO = Path(__file__).resolve().parents[2]
MARKER_ENV = "AIRFLOW_HARNESS_ID"

pytestmark = [pytest.mark.scheduler, pytest.mark.timeout(600)]


def _demo(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def _leftovers(state: dict[str, Any]) -> list[str]:
    """Processes that still belong to the demo: its supervisor's session, Airflow's group, the
    harness marker, or a PostgreSQL server of one of its clusters."""
    sup = state["supervisor"]
    groups = {sup["pgid"], state["airflow"].get("pgid")}
    marker = state["airflow"]["harness_id"]
    bases = [c["base"] for c in state["postgres"]]
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() < sup["create_time"] - 1:
                continue
            cmdline = " ".join(proc.cmdline())
            ours = os.getpgid(proc.pid) in groups or any(b in cmdline for b in bases)
            if not ours:
                with contextlib.suppress(psutil.AccessDenied):
                    ours = proc.environ().get(MARKER_ENV) == marker
        except (psutil.Error, OSError):
            continue
        if ours:
            found.append(f"{proc.pid} {cmdline[:120]}")
    for tag in [sup, *[c.get("postmaster") for c in state["postgres"]]]:
        if tag and psutil.pid_exists(tag["pid"]):
            with contextlib.suppress(psutil.Error):
                if abs(psutil.Process(tag["pid"]).create_time() - tag["create_time"]) < 0.01:
                    found.append(f"{tag['pid']} (recorded in state.json)")
    return found


def test_demo_runs_the_drills_and_the_failover_and_stop_leaves_nothing(tmp_path: Path) -> None:
    """The 3 a.m. case too: the pack's dags folder also holds broken specs of every kind."""
    demo_dir = tmp_path / "demo"
    dags = tmp_path / "dags"
    shutil.copytree(REPO / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    for spec in broken_specs.FOLDER.glob("*.yaml"):
        shutil.copyfile(spec, dags / "specs" / spec.name)
    env = {**os.environ, "RECOVERY_DEMO_DIR": str(demo_dir), "RECOVERY_DEMO_DAGS": str(dags)}
    env.pop("PYTHONPATH", None)  # the script sets it itself, as on a fresh clone
    state: dict[str, Any] = {}
    try:
        up = _demo(env=env, timeout=420)
        state = json.loads((demo_dir / "state.json").read_text())
        output = up.stdout + up.stderr
        assert up.returncode == 0, output[-6000:]
        results = {r["dag_id"]: r for r in state["results"]}
        assert results["nightly_backup"]["state"] == "success", results
        assert results["restore_drill"]["state"] == "success", results
        assert results["database_failover"]["state"] == "success", results
        # the PITR drill: restored to T in a scratch cluster, proven, RPO measured and judged
        assert results["pitr_drill"]["state"] == "success", results
        assert 0 < results["pitr_drill"]["achieved_rpo_s"] < 60, results
        assert "pitr_drill: restore.prove_rpo success" in output and "pitr_drill: drop_scratch success" in output
        assert re.search(r"pitr_drill +success .*\(RTO 30m: met\)  achieved RPO \d+\.\ds \(RPO 5m: met\), restore", output)
        assert "database_failover: approve_cutover.approve approved through the REST API" in output
        assert "database_failover: restore.restore_newest success" in output  # primary_lost: restore path
        assert "(RTO 30m: met)" in output and "(RTO 15m: met)" in output, output[-3000:]
        # the verdicts come from the run ledger the plugin wrote; the failover's evidence is printed
        assert "Recovery report database_failover" in output
        assert f"approval approve_cutover.approve: Approve by {state['airflow']['username']}" in output
        ledger = Path(state["airflow"]["home"]) / "recovery-ledger"
        assert {p.name for p in ledger.iterdir()} == {"nightly_backup", "restore_drill", "database_failover", "pitr_drill"}
        # the WAL archive the primary fed through archive_command holds the drill's backup
        assert list(Path(state["pgbackrest"]["base"], "repo", "backup", "demo").glob("*F")), state["pgbackrest"]
        # the script has exited; the UI must still be up, with the login it printed
        air = state["airflow"]
        assert f"login: {air['username']} / {air['password']}" in output
        health = httpx.get(f"{air['url']}/api/v2/monitor/health", timeout=10).json()
        assert health["scheduler"]["status"] == "healthy", health
        assert "PUT /records/orders-db" in (demo_dir / "http-stub.log").read_text()
        # beside the broken specs, every DAG of the pack is active; each broken spec is reported
        api = AirflowApi(air["url"], air["username"], air["password"])
        try:
            for dag_id in (p.stem for p in (REPO / "dags" / "specs").glob("*.yaml")):
                dag = api.dag(dag_id)
                assert dag is not None and dag["is_stale"] is False and dag["has_import_errors"] is False, dag
            errors = {e["filename"]: e["stack_trace"] for e in api.import_errors()}
        finally:
            api.close()
        (errors_file,) = errors  # one import error, of the file that holds no DAG
        assert errors_file.endswith("recovery_spec_errors.py"), errors
        broken_specs.assert_names_every_broken_spec(errors[errors_file], dags / "specs")
        assert "recovery_spec_errors.py:" in output and "broken.yaml:5:30" in output
    finally:
        stop = _demo("stop", env=env, timeout=240)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "no process of it is left" in stop.stdout
    assert state, "the demo wrote no state.json"
    assert _leftovers(state) == []
    assert not (demo_dir / "state.json").exists()
    if state["pgbackrest"]["private"]:  # its own folder under /tmp: stop removed it
        assert not Path(state["pgbackrest"]["base"]).exists()
