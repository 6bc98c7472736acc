"""The detached process that owns the demo's services for as long as the demo runs.

Why a supervisor: the test harness (tests/support) stops what it started when its owner goes
away, and the shell that ran `demo.sh` exits. This process founds a session of its own, starts
the PostgreSQL clusters, the HTTP stub and Airflow through the harness, records every pid, pgid
and directory in state.json, and on SIGTERM stops them all (Airflow, then PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

import psutil
from scripts.demo import pitr
from scripts.demo.common import ROOT, dags_folder, demo_dir, proc_tag, update_state
from scripts.demo.stub import StubServer
from tests.support.airflow_cluster import AirflowCluster, AirflowHarnessError
from tests.support.postgres import PostgresCluster, start_replica

SAMPLE_SQL = {
    "orders": [
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE)",
        "INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com' FROM generate_series(1, 1000) i",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers,"
        " placed_at timestamptz NOT NULL, total numeric(10, 2) NOT NULL, status text NOT NULL)",
        "INSERT INTO orders SELECT i, 1 + i % 1000, timestamptz '2024-01-01' + i * interval '17 minutes',"
        " round((10 + (i * 37) % 490)::numeric, 2), (ARRAY['placed','paid','shipped'])[1 + i % 3]"
        " FROM generate_series(1, 5000) i",
        "CREATE TABLE order_items (order_id int NOT NULL REFERENCES orders, line int NOT NULL, sku text NOT NULL,"
        " quantity int NOT NULL, PRIMARY KEY (order_id, line))",
        "INSERT INTO order_items SELECT o, l, 'SKU-' || ((o * l) % 300), 1 + (o + l) % 4"
        " FROM generate_series(1, 5000) o, generate_series(1, 2) l",
    ],
    "billing": [
        "CREATE TABLE invoices (id int PRIMARY KEY, order_id int NOT NULL, issued_at date NOT NULL,"
        " amount numeric(10, 2) NOT NULL)",
        "INSERT INTO invoices SELECT i, i, date '2024-01-01' + i % 365, round((10 + (i * 37) % 490)::numeric, 2)"
        " FROM generate_series(1, 4000) i",
        "CREATE TABLE payments (id int PRIMARY KEY, invoice_id int NOT NULL REFERENCES invoices,"
        " paid_at date NOT NULL, method text NOT NULL)",
        "INSERT INTO payments SELECT i, i, date '2024-01-02' + i % 365, (ARRAY['card','transfer'])[1 + i % 2]"
        " FROM generate_series(1, 3000) i",
    ],
}


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _cluster_record(pg: PostgresCluster, role: str) -> dict[str, Any]:
    record: dict[str, Any] = {"name": pg.name, "role": role, "port": pg.port, "base": str(pg.base)}
    with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
        pid = int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])
        record["postmaster"] = proc_tag(psutil.Process(pid))
    return record


class Supervisor:
    def __init__(self) -> None:
        self.dir = demo_dir()
        self.clusters: list[PostgresCluster] = []
        self.records: list[dict[str, Any]] = []
        self.stub: StubServer | None = None
        self.airflow: AirflowCluster | None = None
        self.stopping = threading.Event()
        self.started = False
        self.pitr: pitr.PitrSetup | None = None

    def _track(self, pg: PostgresCluster, role: str) -> None:
        # Recorded at once, so a `stop` during start-up finds every cluster started so far.
        self.clusters.append(pg)
        self.records.append(_cluster_record(pg, role))
        update_state(postgres=self.records)

    def start(self) -> None:
        t0 = time.monotonic()
        self.pitr = pitr.prepare(self.dir)
        update_state(pgbackrest=self.pitr.record())
        primary = PostgresCluster("demo-primary", settings=pitr.archive_settings(self.pitr))
        primary.start()
        self._track(primary, "primary: orders and billing with sample data, WAL archived by pgBackRest")
        pitr.create_stanza(self.pitr, primary)
        log(f"pgBackRest stanza '{self.pitr.stanza}' created in {self.pitr.repository}")
        for db, statements in SAMPLE_SQL.items():
            primary.create_database(db)
            for sql in statements:
                primary.psql(sql, dbname=db)
        replica = start_replica(primary, "demo-replica")
        self._track(replica, "streaming replica of the primary")
        replica.wait_for_replay()
        # Restore targets (failover standby, drill scratch databases) and Airflow's metadata DB.
        spare = PostgresCluster("demo-spare")
        spare.start()
        self._track(spare, "spare server: restore targets and Airflow's metadata database")
        log(f"PostgreSQL up in {time.monotonic() - t0:.1f}s: " + ", ".join(f"{c.name}:{c.port}" for c in self.clusters))

        self.stub = StubServer(self.dir / "http-stub.log").start()
        update_state(stub={"url": self.stub.url, "log": str(self.stub.log_path)})
        log(f"HTTP stub on {self.stub.url}")

        home = self.dir / "airflow-home"
        self.airflow = AirflowCluster(
            dags_folder(),
            spare,
            home=home,
            plugins_folder=ROOT / "plugins",
            # No cron runs: unpausing nightly_backup (02:00) or restore_drill (@weekly) would
            # otherwise start a run for the last interval with the specs' default parameters.
            config={"scheduler": {"use_job_schedule": "False"}},
            env={"RECOVERY_BACKUP_LOCATION": (self.dir / "backups").as_uri()},
        )
        update_state(
            airflow={
                "home": str(home),
                "harness_id": self.airflow.harness_id,
                "username": self.airflow.admin_user,
                "password": self.airflow.admin_password,
            }
        )
        t1 = time.monotonic()
        self._start_airflow()
        log(f"Airflow healthy in {time.monotonic() - t1:.1f}s on {self.airflow.base_url}")
        update_state(ready=True, started_s=round(time.monotonic() - t0, 1))

    def _start_airflow(self) -> None:
        assert self.airflow is not None
        airflow = self.airflow
        # start() records the process group only once the first component is spawned: publish it
        # from a watcher thread so that a `stop` arriving mid-start can kill the group.
        done = threading.Event()

        def publish() -> None:
            while not done.is_set() and airflow.pgid is None:
                time.sleep(0.1)
            if airflow.pgid is not None:
                update_state(airflow={**_airflow_state(), "pgid": airflow.pgid, "url": airflow.base_url})

        watcher = threading.Thread(target=publish, daemon=True)
        watcher.start()
        try:
            airflow.start(timeout=300)
        finally:
            done.set()
            watcher.join()
        update_state(airflow={**_airflow_state(), "pgid": airflow.pgid, "url": airflow.base_url})

    def watch(self) -> None:
        """Until SIGTERM: note (once) a component that died, so `status` and the log say so."""
        reported: set[str] = set()
        while not self.stopping.wait(2.0):
            if self.airflow is None:
                continue
            for component, proc in self.airflow.procs.items():
                if proc.poll() is not None and component not in reported:
                    reported.add(component)
                    log(f"airflow {component} exited with {proc.returncode}: see {self.airflow.log_path(component)}")
                    update_state(dead_components=sorted(reported))

    def shutdown(self) -> list[str]:
        problems: list[str] = []
        if self.airflow is not None and (self.airflow.procs or self.airflow.pgid is not None):
            try:
                self.airflow.stop(remove_home=False)  # keep the logs for a look after the demo
                log("Airflow stopped")
            except AirflowHarnessError as exc:
                problems.append(str(exc))
        if self.stub is not None:
            self.stub.stop()
        if self.pitr is not None:
            try:
                pitr.stop_scratch(self.pitr.record())  # a drill that could not drop its scratch cluster
            except Exception as exc:
                problems.append(f"pitr scratch cluster: {exc}")
        for pg in reversed(self.clusters):  # replica before its primary
            try:
                pg.stop()
            except Exception as exc:  # keep going: the other clusters must stop too
                problems.append(f"{pg.name}: {exc}")
        log("PostgreSQL stopped")
        return problems


def _airflow_state() -> dict[str, Any]:
    from scripts.demo.common import read_state

    return dict((read_state() or {}).get("airflow") or {})


def main() -> int:
    sup = Supervisor()

    def on_signal(signum: int, _frame: object) -> None:
        sup.stopping.set()
        # Raised into start-up too, so a stop during start-up does not wait for it to finish.
        if not sup.started:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    update_state(supervisor={**proc_tag(psutil.Process()), "pgid": os.getpgid(0)}, ready=False)
    code = 0
    try:
        sup.start()
        sup.started = True
        if not sup.stopping.is_set():
            sup.watch()
    except KeyboardInterrupt:
        log("stop requested during start-up")
    except BaseException as exc:
        log("start-up failed:\n" + "".join(traceback.format_exception(exc)))
        update_state(error=f"{type(exc).__name__}: {exc}"[:4000])
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the shutdown; stop escalates if needed
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        problems = sup.shutdown()
        update_state(ready=False, stopped=True, stop_problems=problems)
        for problem in problems:
            log(f"stop problem: {problem}")
    return code if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

