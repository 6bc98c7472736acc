"""`up`: start the supervisor, wire Airflow to the local services, run the DAG pack, report.

Runs in the foreground and exits when the report is printed; the services stay up under the
detached supervisor until `bash scripts/demo.sh stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scripts.demo.common import ROOT, dags_folder, demo_dir, fmt_duration, read_state, update_state
from scripts.demo.stop import stop_demo
from tests.support.airflow_cluster import AirflowApi, AirflowHarnessError, TaskInstance
from tests.support.postgres import HOST

from recovery_provider.evidence.report import Report

DATABASES = ["orders", "billing"]
# primary_lost takes the restore path: restore the newest orders backup on the spare server,
# prove it against the backup's checksums, approve, cut over. (replica_healthy would promote.)
FAILURE_TYPE = "primary_lost"
APPROVAL_TASK = "approve_cutover.approve"
PACK = ["nightly_backup", "restore_drill", "database_failover", "region_recovery", "pitr_drill"]
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


def say(message: str = "") -> None:
    print(message, flush=True)


@dataclass
class Run:
    dag_id: str
    conf: dict[str, Any]
    expected: str = "success"
    run_id: str = ""
    state: str = ""
    duration_s: float | None = None
    rto_s: float | None = None
    achieved_rpo_s: float | None = None  # point-in-time drills: T - last restored commit
    note: str | None = None
    seen: dict[tuple[str, int], str] = field(default_factory=dict)
    parked_at: dict[str, float] = field(default_factory=dict)


def start_supervisor(timeout: float) -> dict[str, Any]:
    """Spawn the detached supervisor and wait until it reports the services ready."""
    out = demo_dir() / "supervisor.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with out.open("ab") as log:
        # start_new_session: survives the shell that ran demo.sh, and no terminal signal reaches it.
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.demo", "supervise"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        state = read_state() or {}
        if state.get("ready"):
            return state
        if proc.poll() is not None or state.get("error"):
            raise RuntimeError(f"the demo's services did not start: {state.get('error')}\n{_tail(out)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo's services were not ready after {timeout:.0f}s\n{_tail(out)}")
        time.sleep(0.5)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def connections(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every connection the pack's specs name, pointed at the local clusters and the HTTP stub."""
    pg = {c["name"]: c["port"] for c in state["postgres"]}
    primary, replica, spare = pg["demo-primary"], pg["demo-replica"], pg["demo-spare"]
    stub_port = int(state["stub"]["url"].rsplit(":", 1)[1])

    def postgres(conn_id: str, port: int, schema: str, what: str) -> dict[str, Any]:
        return {"connection_id": conn_id, "conn_type": "postgres", "host": HOST, "port": port,
                "login": "postgres", "schema": schema, "description": what}

    def http(conn_id: str, what: str) -> dict[str, Any]:
        return {"connection_id": conn_id, "conn_type": "http", "host": HOST, "port": stub_port,
                "schema": "http", "description": f"{what} (demo: local HTTP stub)"}

    air = state["airflow"]
    return [
        postgres("recovery_source", primary, "postgres", "nightly backup source: the primary"),
        postgres("recovery_drill", spare, "postgres", "restore drill scratch server"),
        postgres("orders_replica", replica, "postgres", "streaming replica of orders"),
        postgres("orders_standby", spare, "postgres", "failover restore target"),
        postgres("orders_primary", spare, "orders_restored", "orders after the failover (restore path)"),
        postgres("region_db", spare, "postgres", "region recovery restore target"),
        postgres("pitr_source", primary, "postgres", "PITR drill: the primary, archiving WAL through pgBackRest"),
        http("orders_app", "orders application admin API"),
        http("dns_api", "DNS API"),
        http("cdn_api", "CDN API"),
        http("region_admin", "region service admin API"),
        http("region_lb", "region load balancer"),
        {"connection_id": "airflow_api", "conn_type": "http", "host": air["url"], "login": air["username"],
         "password": air["password"], "description": "Airflow REST API (pool preflight, run notes)"},
    ]


def put_connection(api: AirflowApi, body: dict[str, Any]) -> None:
    resp = api.request("POST", "/connections", json=body, ok=(200, 201, 409))
    if resp.status_code == 409:
        api.request("PATCH", f"/connections/{body['connection_id']}", json=body)


def sync_pools(state: dict[str, Any]) -> None:
    air = state["airflow"]
    env = {**os.environ, "RECOVERY_AIRFLOW_PASSWORD": air["password"]}
    specs = dags_folder() / "specs"
    cmd = [str(Path(sys.executable).with_name("recovery")), "pools", "sync", str(specs),
           "--url", air["url"], "--username", air["username"]]
    say(f"==> recovery pools sync {specs.relative_to(ROOT) if specs.is_relative_to(ROOT) else specs}")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        say(f"    {line}")
    if proc.returncode == 1 and "error:" in proc.stderr:  # broken specs: the others' pools are synced
        say("    (the broken specs above have no DAG until fixed; every other spec's pools are synced)")
    elif proc.returncode != 0:
        raise RuntimeError(f"recovery pools sync failed ({proc.returncode})")


def parking_processed(scheduler_log: Path, run: Run, ti: TaskInstance) -> bool:
    """Whether the scheduler has handled the executor's event of the attempt that parked the task.

    Why: in Airflow 3.3.2 an answer that lands before that event is processed gets the resumed
    attempt (same try_number) marked FAILED ("... finished with state success, but the task
    instance's state attribute is running"). A fixed 3 s wait (the harness's settle) was not
    enough on 2 loaded cores here: the event came 5 s after parking. So wait for the scheduler's
    own log line; after 60 s parked, answer anyway.
    """
    key = (
        f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{run.dag_id}',"
        f" task_id='{ti.task_id}', run_id='{run.run_id}', try_number={ti.try_number}"
    )
    try:
        if key in scheduler_log.read_text(errors="replace"):
            return True
    except OSError:
        pass
    parked = run.parked_at.setdefault(ti.task_id, time.monotonic())
    return time.monotonic() - parked > 60


def follow(api: AirflowApi, runs: list[Run], timeout: float, scheduler_log: Path) -> None:
    """Poll the runs, print each task as it finishes, approve the failover's cutover, until all end."""
    deadline = time.monotonic() + timeout
    answered: set[str] = set()
    pending = list(runs)
    while pending:
        for run in list(pending):
            tis = api.task_instances(run.dag_id, run.run_id)
            report_tasks(run, tis)
            approval = next((t for t in tis if t.task_id == APPROVAL_TASK and t.state == "awaiting_input"), None)
            if approval is not None and run.run_id not in answered and parking_processed(scheduler_log, run, approval):
                api.answer_hitl(run.dag_id, run.run_id, APPROVAL_TASK, ["Approve"], settle=1.0)
                answered.add(run.run_id)
                say(f"    {run.dag_id}: {APPROVAL_TASK} approved through the REST API")
            info = api.dag_run(run.dag_id, run.run_id)
            if info["state"] in ("success", "failed"):
                report_tasks(run, api.task_instances(run.dag_id, run.run_id))
                finish(run, info)
                pending.remove(run)
        if pending and time.monotonic() > deadline:
            raise AirflowHarnessError(
                "runs not finished after " + fmt_duration(timeout) + ": "
                + ", ".join(f"{r.dag_id}/{r.run_id}" for r in pending)
            )
        time.sleep(1.0)


def report_tasks(run: Run, tis: list[TaskInstance]) -> None:
    far_future = datetime.max.replace(tzinfo=timezone.utc)
    for ti in sorted(tis, key=lambda t: t.end_date or far_future):  # in the order they finished
        key = (ti.task_id, ti.map_index)
        if ti.state in FINISHED and run.seen.get(key) != ti.state:
            run.seen[key] = ti.state or ""
            index = f"[{ti.map_index}]" if ti.map_index >= 0 else ""
            took = ""
            if ti.start_date and ti.end_date:
                took = f" ({(ti.end_date - ti.start_date).total_seconds():.1f}s)"
            say(f"    {run.dag_id}: {ti.task_id}{index} {ti.state}{took}")


def finish(run: Run, info: dict[str, Any]) -> None:
    run.state = str(info["state"])
    run.note = info.get("note")


def trigger(api: AirflowApi, run: Run) -> None:
    run.run_id = api.trigger(run.dag_id, run.conf)
    say(f"==> triggered {run.dag_id} {json.dumps(run.conf)} -> run {run.run_id}")


def evidence(home: Path, run: Run, timeout: float = 30.0) -> Report | None:
    """The run's report from the ledger the plugin's listener writes as the scheduler ends the run."""
    from recovery_provider.evidence.ledger import Ledger, LedgerError
    from recovery_provider.evidence.report import build_report

    ledger = Ledger(str(home / "recovery-ledger"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            report = build_report(ledger.read(run.dag_id, run.run_id))
        except LedgerError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)
            continue
        run.duration_s, run.rto_s = report.rto.achieved_seconds, report.rto.target_seconds
        run.achieved_rpo_s = report.achieved_rpo.achieved_seconds if report.achieved_rpo else None
        return report


def verdict(run: Run, report: Report | None) -> str:
    if report is None:
        return f"{run.dag_id:<18} {run.state:<8} (no record in the run ledger)"
    took = fmt_duration(report.rto.achieved_seconds) if report.rto.achieved_seconds is not None else "?"
    rto = report.rto
    target = "no RTO" if rto.target_seconds is None else f"RTO {fmt_duration(rto.target_seconds)}: {rto.verdict}"
    line = f"{run.dag_id:<18} {run.state:<8} achieved {took:>7}  ({target})"
    rpo = report.achieved_rpo
    if rpo is not None and rpo.achieved_seconds is not None:
        objective = "no RPO" if rpo.target_seconds is None else f"RPO {fmt_duration(rpo.target_seconds)}: {rpo.verdict}"
        line += f"  achieved RPO {rpo.achieved_seconds:.1f}s ({objective})"
        if report.restore_seconds is not None:
            line += f", restore {report.restore_seconds:.1f}s"
    return line


def up(timeout: float) -> int:
    t0 = time.monotonic()
    if read_state() is not None:
        say("==> stopping the previous demo first")
        stop_demo(quiet=True)
    base = demo_dir()
    shutil.rmtree(base, ignore_errors=True)  # a fresh start: new clusters, new backups, new Airflow home
    base.mkdir(parents=True)
    location = (base / "backups").as_uri()
    (base / "backups").mkdir()

    say("==> starting PostgreSQL (primary + streaming replica + spare), the HTTP stub and Airflow")
    try:
        state = start_supervisor(timeout=360)
    except (RuntimeError, KeyboardInterrupt) as exc:
        say(str(exc) or "interrupted: stopping what was started")
        stop_demo(quiet=True)
        return 1
    air = state["airflow"]
    for c in state["postgres"]:
        say(f"    postgres {c['name']:<13} 127.0.0.1:{c['port']}  {c['role']}")
    say(f"    HTTP stub          {state['stub']['url']}  (calls logged to {state['stub']['log']})")
    say(f"    Airflow            {air['url']}  (up in {fmt_duration(state.get('started_s', 0))})")

    api = AirflowApi(air["url"], air["username"], air["password"])
    scheduler_log = Path(air["home"]) / "logs" / "scheduler.log"
    runs: list[Run] = []
    try:
        say("==> creating the Airflow connections the specs name")
        for body in connections(state):
            put_connection(api, body)
        say("    " + ", ".join(b["connection_id"] for b in connections(state)))
        sync_pools(state)
        for dag_id in PACK:
            api.wait_for_dag(dag_id, timeout=180)
            api.unpause(dag_id)
        say(f"==> DAGs parsed and unpaused: {', '.join(PACK)}")
        for error in api.import_errors():  # broken specs are reported, and hide no DAG of the pack
            say(f"    import error in {error.get('filename')}:")
            for line in str(error.get("stack_trace", "")).strip().splitlines()[-12:]:
                say(f"      {line}")

        # The PITR drill needs no logical backup: it starts at once, beside the nightly backup.
        pitr_drill = Run("pitr_drill", dict(state["pgbackrest"]["conf"]))
        trigger(api, pitr_drill)
        backup = Run("nightly_backup", {"databases": DATABASES, "location": location})
        trigger(api, backup)
        follow(api, [backup], timeout, scheduler_log)
        runs.append(backup)
        drill = Run("restore_drill", {"databases": DATABASES, "location": location})
        failover = Run("database_failover", {"failure_type": FAILURE_TYPE, "location": location})
        trigger(api, drill)
        trigger(api, failover)
        follow(api, [drill, failover, pitr_drill], timeout, scheduler_log)
        runs += [drill, failover, pitr_drill]
    except (AirflowHarnessError, RuntimeError, OSError, KeyboardInterrupt) as exc:
        say(f"\nERROR: {exc}" if str(exc) else "\ninterrupted")
        say("The services are still up for a look; stop them with: bash scripts/demo.sh stop")
        return 1
    finally:
        api.close()

    home = Path(air["home"])
    reports = {run.dag_id: evidence(home, run) for run in runs}
    say("\n==> outcome, from the run ledger (achieved = run end - run start)")
    for run in runs:
        say(f"    {verdict(run, reports[run.dag_id])}" + (f"  note: {run.note}" if run.note else ""))
    failover = reports.get("database_failover")
    if failover is not None:
        from rich.console import Console

        from recovery_provider.cli.evidence_output import print_report

        say("\n==> the failover's evidence (also: recovery report database_failover RUN_ID, and the UI)")
        print_report(Console(width=120, highlight=False), failover)
    results = [
        {"dag_id": r.dag_id, "run_id": r.run_id, "state": r.state, "expected": r.expected,
         "duration_s": r.duration_s, "rto_s": r.rto_s, "achieved_rpo_s": r.achieved_rpo_s, "note": r.note}
        for r in runs
    ]
    update_state(results=results)
    ok = all(r.state == r.expected for r in runs)
    say(f"\n==> demo {'finished' if ok else 'FINISHED WITH FAILURES'} in {fmt_duration(time.monotonic() - t0)}")
    say(f"    Airflow UI:  {air['url']}   login: {air['username']} / {air['password']}")
    say(f"    evidence:    {air['url']}/recovery/   (and a 'Recovery report' tab on every run)")
    say(f"    backups:     {location}")
    say(f"    WAL archive: {state['pgbackrest']['repository']} (pgBackRest stanza '{state['pgbackrest']['stanza']}')")
    say(f"    logs:        {base}/airflow-home/logs, {base}/supervisor.log, {state['stub']['log']}")
    say("    stop it:     bash scripts/demo.sh stop")
    return 0 if ok else 1
