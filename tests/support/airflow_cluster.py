"""A real Airflow 3 deployment for tests: api-server, scheduler, dag-processor, triggerer.

Why real: parallel overlap, pools, deadlines, approvals (HITL) and deferral are enforced only by
a scheduler; `dag.test()` ignores pools and waits forever on HITL. Why a process group *and* an
environment marker: `airflow standalone` stopped by its pid leaves the scheduler behind, and
Airflow's task supervisor puts each task in a process group of its own, so killing our group
alone would miss running tasks. Every process we start carries AIRFLOW_HARNESS_ID in its
environment; `stop()` kills the group, then anything still carrying the marker, and checks
/proc that nothing is left.

Layout of the temporary AIRFLOW_HOME: airflow.cfg, passwords.json (the SimpleAuthManager's
admin password, written by us), logs/<component>.log (stdout+stderr of each component),
logs/dag_id=.../ (task logs), harness.pgid (for a manual `kill -- -PGID` after a crash).
A killed test session leaves its processes behind; the next session's `reap_orphans()` ends them.

executor="CeleryExecutor" (tests/celery, docs/celery.md) adds a redis-server of our own on a
free loopback port (started first, so it founds the process group), PostgreSQL as result backend,
and Celery workers (logs/celery-worker-<name>.log) that `kill_worker()` can lose on purpose.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil

from tests.support.postgres import HOST, PostgresCluster, free_port

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
MARKER_ENV = "AIRFLOW_HARNESS_ID"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
FINISHED_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
HITL_SETTLE_S = 3.0  # see AirflowApi.answer_hitl
# One JSON file per running harness (owner, pgid, home), so a later session can end the orphans
# of a killed one: setproctitle() overwrites /proc/<pid>/environ of the api-server and of the
# LocalExecutor workers, so the environment marker alone cannot find them.
REGISTRY = Path(tempfile.gettempdir()) / "airflow-harness"
WORKER_NAME_ENV = "AIRFLOW_HARNESS_WORKER"
# Every Celery worker of a test runs on this one machine, so socket.getfqdn() (the default
# [core] hostname_callable) would give all of them the same task-instance `hostname`. Each worker
# gets its own name through this module, written into AIRFLOW_HOME and put on its PYTHONPATH.
HOSTNAME_MODULE = "harness_worker_name"
HOSTNAME_SOURCE = f"""\"\"\"Written by the test harness: the task-instance hostname of one Celery worker.\"\"\"
import os
import socket


def hostname() -> str:
    return os.environ.get({WORKER_NAME_ENV!r}) or socket.getfqdn()
"""

# The CeleryExecutor settings the Celery tier (tests/celery) proves and docker-compose.yml runs;
# tests/unit/test_compose.py checks that the compose file uses exactly these. Why each one:
# concurrency 2 keeps two workers within two cores; prefetch 1 with late acks means a worker
# reserves only what it can run now (a busy worker does not hoard messages another could run,
# and a message of a worker that dies unacknowledged is not lost); sync_parallelism 1 stops the
# scheduler from forking one state-fetch process per core.
CELERY_EXECUTOR_SETTINGS: dict[str, dict[str, str]] = {
    "core": {"executor": "CeleryExecutor"},
    "celery": {
        "worker_concurrency": "2",
        "worker_prefetch_multiplier": "1",
        "task_acks_late": "True",
        "sync_parallelism": "1",
    },
}
# Test-only: a worker lost with its tasks is noticed when their heartbeats stop. The default (300 s)
# would make a worker-loss test wait five minutes; the check itself runs every 10 s by default.
CELERY_TEST_SPEEDUPS: dict[str, dict[str, str]] = {
    "scheduler": {
        "task_instance_heartbeat_timeout": "30",
        "task_instance_heartbeat_timeout_detection_interval": "2",
    },
}


def find_redis_server() -> Path | None:
    """The redis-server binary (Debian package `redis-server`), or RECOVERY_REDIS_SERVER; None if absent."""
    override = os.environ.get("RECOVERY_REDIS_SERVER")
    found = override or shutil.which("redis-server") or "/usr/bin/redis-server"
    return Path(found) if Path(found).is_file() and os.access(found, os.X_OK) else None


@dataclasses.dataclass(frozen=True)
class CeleryWorker:
    """One `airflow celery worker` of the cluster; its task instances report `name` as hostname.

    serve_logs is off by default: the worker log server binds every interface on a fixed port
    (8793), which tests must not do, and the task logs are files in the shared AIRFLOW_HOME anyway.
    """

    name: str
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 2
    serve_logs: bool = False

    @property
    def component(self) -> str:
        return f"celery-worker-{self.name}"

    def args(self) -> list[str]:
        args = [
            "celery",
            "worker",
            "--concurrency",
            str(self.concurrency),
            "--celery-hostname",
            f"{self.name}@%h",
            "--queues",
            ",".join(self.queues),
        ]
        if not self.serve_logs:
            args.append("--skip-serve-logs")
        return args


class AirflowHarnessError(RuntimeError):
    """The deployment or a REST call did not do what a test needed; the message says what to read next."""


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def parse_dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclasses.dataclass(frozen=True)
class TaskInstance:
    """The fields of a task instance that scheduler tests assert on (times are aware UTC)."""

    task_id: str
    map_index: int
    state: str | None
    start_date: datetime | None
    end_date: datetime | None
    try_number: int
    pool: str | None
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)
    hostname: str | None = None  # who ran the latest try (a Celery worker's name in the Celery tier)
    queue: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> TaskInstance:
        return cls(
            task_id=str(data["task_id"]),
            map_index=int(data.get("map_index", -1)),
            state=data.get("state"),
            start_date=parse_dt(data.get("start_date")),
            end_date=parse_dt(data.get("end_date")),
            try_number=int(data.get("try_number") or 0),
            pool=data.get("pool"),
            raw=data,
            hostname=data.get("hostname") or None,
            queue=data.get("queue"),
        )


def fast_test_config() -> dict[str, dict[str, str]]:
    """Config that makes a local deployment react in seconds instead of minutes (2-core machine)."""
    return {
        "core": {
            "executor": "LocalExecutor",
            "load_examples": "False",
            "parallelism": "8",
            "dagbag_import_timeout": "60",
            "dags_are_paused_at_creation": "True",
        },
        "dag_processor": {
            "refresh_interval": "2",  # list the dags folder for new files
            "min_file_process_interval": "10",  # re-parse an unchanged file
            "parsing_processes": "1",
            "print_stats_interval": "600",
            "stale_dag_threshold": "30",
        },
        "scheduler": {
            "scheduler_heartbeat_sec": "1",
            "job_heartbeat_sec": "1",
            "scheduler_idle_sleep_time": "0.5",
            "pool_metrics_interval": "30",
            "enable_health_check": "False",
        },
        "triggerer": {"job_heartbeat_sec": "1"},
        "api": {"workers": "1"},
        "logging": {"logging_level": "INFO"},
    }


class AirflowApi:
    """A small client for the REST API v2 with a JWT from the SimpleAuthManager's POST /auth/token."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        diagnostics: Callable[[], str] | None = None,
        liveness: Callable[[], None] | None = None,
        scheduler_log: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._scheduler_log = scheduler_log
        self._username = username
        self._password = password
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._diagnostics = diagnostics or (lambda: "")
        # Raises when a component died, so waits fail at once with its log instead of timing out.
        self._liveness = liveness or (lambda: None)

    def close(self) -> None:
        self._client.close()

    # -- plumbing -----------------------------------------------------------------------------

    def token(self, *, refresh: bool = False) -> str:
        if self._token is None or refresh:
            resp = self._client.post(
                "/auth/token", json={"username": self._username, "password": self._password}
            )
            if resp.status_code != 201:
                raise AirflowHarnessError(f"POST /auth/token -> {resp.status_code}: {resp.text}")
            self._token = str(resp.json()["access_token"])
        return self._token

    def request(
        self, method: str, path: str, *, ok: Iterable[int] = (200, 201, 204), **kwargs: Any
    ) -> httpx.Response:
        """One call to /api/v2<path>; retries once with a fresh token on 401, and a read (GET) that
        timed out up to twice: on a loaded 2-core machine the api-server has been seen to stall
        for 30 s while the execution API waits on a row lock."""
        url = "/api/v2" + path
        timeouts = 0
        attempt = 0
        while True:
            headers = {"Authorization": f"Bearer {self.token(refresh=attempt > 0)}"}
            try:
                resp = self._client.request(method, url, headers=headers, **kwargs)
            except httpx.TimeoutException:
                timeouts += 1
                if method != "GET" or timeouts > 2:
                    raise
                continue
            if resp.status_code != 401 or attempt > 0:
                break
            attempt += 1
        if resp.status_code not in set(ok):
            raise AirflowHarnessError(
                f"{method} {url} -> {resp.status_code}: {resp.text[:2000]}\n{self._diagnostics()}"
            )
        return resp

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def _paged(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(path, params={**(params or {}), "limit": 100, "offset": len(items)})
            items.extend(page[key])
            if not page[key] or len(items) >= int(page.get("total_entries", 0)):
                return items

    # -- health and dags ----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /api/v2/monitor/health (needs no token): status and last heartbeat of each component."""
        resp = self._client.get("/api/v2/monitor/health")
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def import_errors(self) -> list[dict[str, Any]]:
        return self._paged("/importErrors", "import_errors")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        resp = self.request("GET", f"/dags/{quote(dag_id, safe='')}", ok=(200, 404))
        return None if resp.status_code == 404 else dict(resp.json())

    def dags(self) -> list[dict[str, Any]]:
        """Every DAG the DAG list shows (stale ones are not listed), all pages."""
        return self._paged("/dags", "dags")

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Until `dag_id` is parsed, serialized and active (not stale, no import error), as a user
        needs it to trigger a run: `GET /dags/{id}` also answers for stale DAGs. On timeout, list
        the import errors."""
        deadline = time.monotonic() + timeout
        while True:
            dag = self.dag(dag_id)
            if dag is not None and not dag.get("is_stale") and not dag.get("has_import_errors"):
                return dag
            self._liveness()
            if time.monotonic() > deadline:
                errors = [f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in self.import_errors()]
                raise AirflowHarnessError(
                    f"DAG {dag_id!r} not parsed (or still stale: {dag}) within {timeout}s. Import errors ({len(errors)}):\n"
                    + ("\n---\n".join(errors) or "(none: is the file in the dags folder? is dag_id right?)")
                    + f"\n{self._diagnostics()}"
                )
            time.sleep(0.5)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{quote(dag_id, safe='')}", json={"is_paused": paused})

    def unpause(self, dag_id: str) -> None:
        self.set_paused(dag_id, False)

    # -- runs ---------------------------------------------------------------------------------

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, run_id: str | None = None
    ) -> str:
        """POST a manual run (logical_date null, as the UI does in Airflow 3) and return its run_id."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        data = self.request("POST", f"/dags/{quote(dag_id, safe='')}/dagRuns", json=body).json()
        return str(data["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120.0, *, poll: float = 0.5) -> str:
        """Until the run is success or failed; returns that state. On timeout, show the task states."""
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in TERMINAL_RUN_STATES:
                return state
            self._liveness()
            if time.monotonic() > deadline:
                tis = "\n".join(
                    f"  {t.task_id}[{t.map_index}]: {t.state}" for t in self.task_instances(dag_id, run_id)
                )
                raise AirflowHarnessError(
                    f"run {dag_id}/{run_id} still {state!r} after {timeout}s; task instances:\n{tis}\n"
                    f"{self._diagnostics()}"
                )
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        """Every task instance of the run, mapped ones one per map_index, sorted by (task_id, map_index)."""
        raw = self._paged(
            f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances", "task_instances"
        )
        return sorted((TaskInstance.from_api(r) for r in raw), key=lambda t: (t.task_id, t.map_index))

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskInstance:
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id, safe='')}"
        return TaskInstance.from_api(self.get(path if map_index < 0 else f"{path}/{map_index}"))

    def task_instance_tries(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> list[TaskInstance]:
        """Every try of one task instance, oldest first (hostname per try: who ran which attempt)."""
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id, safe='')}"
        path = f"{path}/tries" if map_index < 0 else f"{path}/{map_index}/tries"
        tries = [TaskInstance.from_api(r) for r in self.get(path)["task_instances"]]
        return sorted(tries, key=lambda t: t.try_number)

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str],
        *,
        map_index: int = -1,
        timeout: float = 60.0,
    ) -> TaskInstance:
        """Until one task instance reaches one of `states` (e.g. "awaiting_input" before answering HITL)."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            found = [
                t
                for t in self.task_instances(dag_id, run_id)
                if t.task_id == task_id and t.map_index == map_index
            ]
            if found and found[0].state in wanted:
                return found[0]
            self._liveness()
            if time.monotonic() > deadline:
                now = found[0].state if found else "(no such task instance)"
                raise AirflowHarnessError(
                    f"{dag_id}/{run_id}/{task_id}[{map_index}] is {now}, not in {sorted(wanted)} after {timeout}s\n"
                    f"{self._diagnostics()}"
                )
            time.sleep(0.5)

    # -- pools and approvals ------------------------------------------------------------------

    def create_pool(
        self, name: str, slots: int, *, description: str | None = None, include_deferred: bool = False
    ) -> None:
        """POST /pools, or PATCH the slots when the pool already exists (tests may share a cluster)."""
        body = {
            "name": name,
            "slots": slots,
            "description": description,
            "include_deferred": include_deferred,
        }
        resp = self.request("POST", "/pools", json=body, ok=(200, 201, 409))
        if resp.status_code == 409:
            self.request("PATCH", f"/pools/{quote(name, safe='')}", json=body)

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return dict(self.get(self._hitl_path(dag_id, run_id, task_id, map_index)))

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: list[str],
        params_input: Mapping[str, Any] | None = None,
        *,
        map_index: int = -1,
        settle: float = HITL_SETTLE_S,
        timeout: float = 90.0,
    ) -> dict[str, Any]:
        """Answer a Human-in-the-loop task (ApprovalOperator: chosen_options=["Approve"] or ["Reject"]).

        Waits until the task has been parked in awaiting_input for `settle` seconds first. Why: in
        Airflow 3.3.2 an answer that lands before the scheduler has processed the executor's
        "success" event of the parking attempt gets the resumed attempt (same try_number) marked
        FAILED ("Executor ... reported that the task instance ... finished with state success, but
        the task instance's state attribute is queued"). Seen here with an answer 0.2 s after parking.
        """
        deadline = time.monotonic() + timeout
        parked_since: float | None = None
        while parked_since is None or not self._parking_processed(dag_id, run_id, task_id, parked_since, settle):
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            state = ti.state
            parked_since = (parked_since or time.monotonic()) if state == "awaiting_input" else None
            self._liveness()
            if time.monotonic() > deadline:
                raise AirflowHarnessError(
                    f"{dag_id}/{run_id}/{task_id}[{map_index}] not parked in awaiting_input "
                    f"(now {state}) within {timeout}s\n{self._diagnostics()}"
                )
            time.sleep(0.25)
        body = {"chosen_options": chosen_options, "params_input": dict(params_input or {})}
        return dict(
            self.request("PATCH", self._hitl_path(dag_id, run_id, task_id, map_index), json=body).json()
        )

    def _parking_processed(self, dag_id: str, run_id: str, task_id: str, parked_since: float, settle: float) -> bool:
        """True once the scheduler has handled the executor event of the parking attempt.

        A fixed settle time was not enough on 2 loaded cores (the event came 5 s after parking), so
        wait for the scheduler's own log line; without a log to read, fall back to `settle`, and
        never wait longer than 60 s parked.
        """
        waited = time.monotonic() - parked_since
        if self._scheduler_log is None or waited > 60:
            return waited >= settle
        key = f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}'"
        try:
            return key in self._scheduler_log.read_text(errors="replace") and waited >= 1.0
        except OSError:
            return waited >= settle

    @staticmethod
    def _hitl_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        return (
            f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            f"/taskInstances/{quote(task_id, safe='')}/{map_index}/hitlDetails"
        )


class AirflowCluster:
    """Owns a temporary AIRFLOW_HOME, a metadata database and the four Airflow components."""

    def __init__(
        self,
        dags_folder: Path,
        metadata: PostgresCluster,
        *,
        db_name: str = "airflow_meta",
        home: Path | None = None,
        plugins_folder: Path | None = None,
        config: Mapping[str, Mapping[str, str]] | None = None,
        env: Mapping[str, str] | None = None,
        admin_user: str = "admin",
        users: Mapping[str, str] | None = None,
        executor: str = "LocalExecutor",
        celery_workers: Sequence[CeleryWorker] = (),
        broker_url: str | None = None,
    ) -> None:
        """executor="CeleryExecutor" adds `celery_workers` (default: w1 and w2 on the default queue)
        and a broker: `broker_url`, or else a redis-server of our own on a free loopback port,
        started first and owned like every other component. PostgreSQL (the metadata database)
        is the Celery result backend.
        """
        if executor not in ("LocalExecutor", "CeleryExecutor"):
            raise ValueError(f"unsupported executor {executor!r}")
        if celery_workers and executor != "CeleryExecutor":
            raise ValueError("celery_workers need executor='CeleryExecutor'")
        self.executor = executor
        self.celery_workers: dict[str, CeleryWorker] = {}
        if executor == "CeleryExecutor":
            workers = list(celery_workers) or [CeleryWorker("w1"), CeleryWorker("w2")]
            self.celery_workers = {w.name: w for w in workers}
            if len(self.celery_workers) != len(workers):
                raise ValueError("celery worker names must be unique")
        self._own_broker = executor == "CeleryExecutor" and broker_url is None
        self.broker_url = broker_url or ""
        self.redis_port = 0
        self.dags_folder = Path(dags_folder).resolve()
        self.metadata = metadata
        self.db_name = db_name
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="airflow-home-"))
        self.plugins_folder = Path(plugins_folder) if plugins_folder else self.home / "plugins"
        self.admin_user = admin_user
        self.admin_password = secrets.token_urlsafe(16)
        # more SimpleAuthManager users: name -> role (viewer, user, op, admin), each with a password
        self.users = dict(users or {})
        self.passwords = {admin_user: self.admin_password, **{name: secrets.token_urlsafe(16) for name in self.users}}
        self.port = 0
        self.harness_id = _owner_tag() + ":" + uuid.uuid4().hex
        self.pgid: int | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._config_overrides = config or {}
        self._extra_env = dict(env or {})
        self._api: AirflowApi | None = None
        self.timings: dict[str, float] = {}
        self._seen: dict[int, psutil.Process] = {}

    # -- paths and config ---------------------------------------------------------------------

    @property
    def _registry_file(self) -> Path:
        return REGISTRY / f"{self.harness_id.rsplit(':', 1)[-1]}.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def components(self) -> tuple[str, ...]:
        """Every component this cluster runs, in start order (broker first, workers last)."""
        broker = ("redis",) if self._own_broker else ()
        return (*broker, *COMPONENTS, *(w.component for w in self.celery_workers.values()))

    def result_backend(self) -> str:
        # db+postgresql:// is SQLAlchemy's psycopg2 dialect (celery's database backend); the
        # metadata DB itself uses psycopg 3.
        return "db+" + self.metadata.dsn(self.db_name)

    def config(self) -> dict[str, dict[str, str]]:
        cfg = fast_test_config()
        meta_url = self.metadata.sqlalchemy_url(self.db_name, driver="psycopg")
        extra: dict[str, dict[str, str]] = {
            "core": {
                "dags_folder": str(self.dags_folder),
                "plugins_folder": str(self.plugins_folder),
                "fernet_key": _fernet_key(),
                "simple_auth_manager_users": ",".join(
                    f"{name}:{role}" for name, role in {self.admin_user: "admin", **self.users}.items()
                ),
                "simple_auth_manager_passwords_file": str(self.home / "passwords.json"),
                "simple_auth_manager_all_admins": "False",
                "execution_api_server_url": f"{self.base_url}/execution/",
            },
            "database": {"sql_alchemy_conn": meta_url},
            "api": {
                "host": HOST,
                "port": str(self.port),
                "base_url": self.base_url,
                "secret_key": secrets.token_hex(16),
            },
            "api_auth": {"jwt_secret": secrets.token_hex(32)},
            "logging": {"base_log_folder": str(self.logs_dir)},
        }
        layers: list[Mapping[str, Mapping[str, str]]] = [extra]
        if self.executor == "CeleryExecutor":
            celery = {
                "celery": {"broker_url": self.broker_url, "result_backend": self.result_backend()},
            }
            layers += [CELERY_EXECUTOR_SETTINGS, CELERY_TEST_SPEEDUPS, celery]
        for overrides in (*layers, self._config_overrides):
            for section, values in overrides.items():
                cfg.setdefault(section, {}).update(values)
        return cfg

    def env(self) -> dict[str, str]:
        """The children's environment: ours minus any AIRFLOW__* leaking in, plus home and marker."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONFIG"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as deployed: bytecode cached, not recompiled by every task
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW_CONFIG=str(self.home / "airflow.cfg"),
            PYTHONUNBUFFERED="1",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        env.update(self._extra_env)
        env[MARKER_ENV] = self.harness_id
        return env

    def worker_env(self, worker: CeleryWorker) -> dict[str, str]:
        """One worker's extra environment: its own task-instance hostname (see HOSTNAME_MODULE)."""
        path = os.pathsep.join(p for p in (str(self.home), os.environ.get("PYTHONPATH", "")) if p)
        return {
            WORKER_NAME_ENV: worker.name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{HOSTNAME_MODULE}.hostname",
            "PYTHONPATH": path,
        }

    def _write_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / f"{HOSTNAME_MODULE}.py").write_text(HOSTNAME_SOURCE)
        self.logs_dir.mkdir(exist_ok=True)
        self.plugins_folder.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        parser = configparser.ConfigParser(interpolation=None)
        for section, values in self.config().items():
            parser[section] = values
        with (self.home / "airflow.cfg").open("w") as fh:
            parser.write(fh)
        # Written by us so the SimpleAuthManager never generates (and prints) a password.
        (self.home / "passwords.json").write_text(json.dumps(self.passwords))

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, timeout: float = 180.0) -> AirflowCluster:
        """Create the metadata DB, migrate it, start the components and wait until all are healthy."""
        t0 = time.monotonic()
        self.port = free_port()
        self.metadata.create_database(self.db_name)
        try:
            if self._own_broker:
                self._start_redis()
                self.timings["redis_start_s"] = time.monotonic() - t0
            self._write_home()
            self._migrate(timeout=timeout)
            self.timings["migrate_s"] = time.monotonic() - t0
            t1 = time.monotonic()
            for component in COMPONENTS:
                self._spawn(component)
            for worker in self.celery_workers.values():
                self._spawn(worker.component, worker.args(), env=self.worker_env(worker))
            self._wait_healthy(timeout=timeout)
            self._wait_workers_ready(timeout=timeout)
            self.timings["components_healthy_s"] = time.monotonic() - t1
        except BaseException:
            with contextlib.suppress(AirflowHarnessError):
                self.stop(remove_home=False)  # keep the logs the error message points to
            raise
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def _airflow_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "airflow", *args]

    def _migrate(self, timeout: float) -> None:
        log = self.log_path("db-migrate")
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self._airflow_argv("db", "migrate"),
                env=self.env(),
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AirflowHarnessError(f"airflow db migrate took over {timeout}s\n{_tail(log)}") from None
        if code != 0:
            raise AirflowHarnessError(f"airflow db migrate exited {code}\n{_tail(log)}")

    def _spawn(
        self,
        component: str,
        args: Sequence[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        """Start one component; the first one founds the process group, the others join it.

        `args` are `airflow` arguments (default: the component's own command); `argv` a whole
        command line for a process that is not Airflow (the broker).
        """
        if args is None:
            args = [component]
            if component in ("scheduler", "triggerer"):
                args.append("--skip-serve-logs")  # the log servers would bind 0.0.0.0; logs are local files
            if component == "api-server":
                args += ["--host", HOST, "--port", str(self.port), "--workers", "1"]
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        out = self.log_path(component).open("ab")
        # One new process group for all components (0 = found it, with the first one's pid). Not
        # start_new_session: setpgid() cannot join a group of another session.
        pgid = 0 if self.pgid is None else self.pgid
        kwargs: dict[str, Any] = (
            {"process_group": pgid}
            if sys.version_info >= (3, 11)
            else {"preexec_fn": lambda: os.setpgid(0, pgid)}
        )
        try:
            proc = subprocess.Popen(
                list(argv) if argv is not None else self._airflow_argv(*args),
                env={**self.env(), **(env or {})},
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **kwargs,
            )
        finally:
            out.close()
        if self.pgid is None:
            self.pgid = proc.pid
            (self.home / "harness.pgid").write_text(f"{proc.pid}\n")
            REGISTRY.mkdir(exist_ok=True)
            self._registry_file.write_text(
                json.dumps({"owner": _owner_tag(), "pgid": proc.pid, "home": str(self.home)})
            )
        self.procs[component] = proc

    # -- celery: broker and workers -------------------------------------------------------------

    def _start_redis(self, attempts: int = 3) -> None:
        """redis-server on a free 127.0.0.1 port, no persistence; retried on a lost port race."""
        binary = find_redis_server()
        if binary is None:
            raise AirflowHarnessError("redis-server not found: install the Debian package redis-server")
        (self.home / "redis").mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            self.redis_port = free_port()
            argv = [
                str(binary), "--bind", HOST, "--port", str(self.redis_port), "--protected-mode", "yes",
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.home / "redis"),
            ]  # fmt: skip
            self._spawn("redis", argv=argv)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.procs["redis"].poll() is None:
                if _redis_ping(self.redis_port):
                    self.broker_url = f"redis://{HOST}:{self.redis_port}/0"
                    return
                time.sleep(0.1)
            proc = self.procs.pop("redis")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            if self.pgid == proc.pid:
                # The group died with its only member: the next attempt founds a new one.
                self.pgid = None
            if attempt == attempts - 1 or "Address already in use" not in _tail(self.log_path("redis")):
                break
        raise AirflowHarnessError(f"redis-server did not start\n{_tail(self.log_path('redis'))}")

    def _wait_workers_ready(self, timeout: float, names: Iterable[str] | None = None) -> None:
        """Until each Celery worker has logged "<name>@<host> ready." (it consumes from the broker)."""
        deadline = time.monotonic() + timeout
        wanted = set(self.celery_workers if names is None else names)
        pending = {k: w for k, w in self.celery_workers.items() if k in wanted}
        while pending:
            self._check_alive()
            for name, worker in list(pending.items()):
                log = self.log_path(worker.component).read_text(errors="replace")
                if f"{name}@" in log and " ready." in log:
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise AirflowHarnessError(f"celery workers not ready after {timeout}s: {sorted(pending)}\n{self.diagnostics()}")
            time.sleep(0.5)

    def worker_processes(self, name: str) -> list[psutil.Process]:
        """The worker's main process and everything under it (pool processes, task supervisors, tasks)."""
        proc = self.procs.get(self.celery_workers[name].component)
        if proc is None or proc.poll() is not None:
            return []
        try:
            main = psutil.Process(proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.Error:
            return []

    def kill_worker(self, name: str, sig: signal.Signals = signal.SIGKILL) -> list[int]:
        """Lose a worker the hard way: `sig` to its whole process tree at once, as a dead machine would.

        The worker then no longer counts as a component that must be alive; `start_worker` brings it back.
        """
        worker = self.celery_workers[name]
        # Freeze the tree first, then kill it: a task process signalled one by one could still
        # start a child (its bash command) between our listing and its turn, and that orphan
        # would finish the work of a "dead" worker. Stopped processes start nothing.
        victims: list[psutil.Process] = []
        while True:
            fresh = [p for p in self.worker_processes(name) if p.pid not in {v.pid for v in victims}]
            if not fresh:
                break
            for proc in fresh:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGSTOP)
            victims += fresh
        self._seen.update({p.pid: p for p in victims})  # stop() must still account for every one
        for proc in victims:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
                if sig != signal.SIGKILL:
                    proc.send_signal(signal.SIGCONT)  # a stopped process acts on other signals only once continued
        gone = self.procs.pop(worker.component)
        with contextlib.suppress(subprocess.TimeoutExpired):
            gone.wait(timeout=10)
        psutil.wait_procs(victims, timeout=10)
        return [p.pid for p in victims]

    def start_worker(self, name: str, *, timeout: float = 120.0) -> None:
        """Start a (killed or stopped) worker again and wait until it consumes."""
        worker = self.celery_workers[name]
        if worker.component in self.procs:
            raise AirflowHarnessError(f"worker {name} is running")
        log = self.log_path(worker.component)
        log.rename(log.with_suffix(f".{int(time.time())}.log"))  # "ready." must come from the new one
        self._spawn(worker.component, worker.args(), env=self.worker_env(worker))
        self._wait_workers_ready(timeout, [name])

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._api = AirflowApi(
            self.base_url,
            self.admin_user,
            self.admin_password,
            diagnostics=self.diagnostics,
            liveness=self._check_alive,
            scheduler_log=self.log_path("scheduler"),
        )
        last: Any = None
        while True:
            self._check_alive()
            try:
                last = self._api.health()
                wanted = ("metadatabase", "scheduler", "triggerer", "dag_processor")
                if all((last.get(k) or {}).get("status") == "healthy" for k in wanted):
                    return
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise AirflowHarnessError(
                    f"Airflow not healthy after {timeout}s: {last}\n{self.diagnostics()}"
                )
            time.sleep(0.5)

    def _check_alive(self) -> None:
        for component, proc in self.procs.items():
            if proc.poll() is not None:
                raise AirflowHarnessError(
                    f"airflow {component} exited with {proc.returncode}\n"
                    f"--- {self.log_path(component)} ---\n{_tail(self.log_path(component))}"
                )

    @property
    def api(self) -> AirflowApi:
        if self._api is None:
            raise AirflowHarnessError("cluster not started")
        return self._api

    def diagnostics(self, lines: int = 25) -> str:
        """Exit codes and the log tail of each component, for error messages."""
        parts = []
        for component in self.components:
            proc = self.procs.get(component)
            status = (
                "not started"
                if proc is None
                else ("running" if proc.poll() is None else f"exited {proc.returncode}")
            )
            parts.append(
                f"--- {component} ({status}) {self.log_path(component)} ---\n{_tail(self.log_path(component), lines)}"
            )
        return "\n".join(parts)

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1, try_number: int = 1
    ) -> str:
        """The task's own log file (JSON lines), read from the local logs folder."""
        path = self.logs_dir / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            path /= f"map_index={map_index}"
        path /= f"attempt={try_number}.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return f"(no task log at {path})"

    def describe_run(self, dag_id: str, run_id: str, *, lines: int = 15) -> str:
        """Run state, every task instance, and the log tail of each one that did not succeed.

        For assertion messages: `assert state == "success", airflow.describe_run(dag_id, run_id)`.
        """
        api = self.api
        parts = [f"run {dag_id}/{run_id}: {api.dag_run(dag_id, run_id).get('state')}"]
        for ti in api.task_instances(dag_id, run_id):
            parts.append(
                f"  {ti.task_id}[{ti.map_index}] try {ti.try_number}: {ti.state} {ti.start_date} -> {ti.end_date}"
            )
            if ti.state not in ("success", "skipped", None):
                log = self.task_log(
                    dag_id, run_id, ti.task_id, map_index=ti.map_index, try_number=max(ti.try_number, 1)
                )
                parts.extend("      " + line[:400] for line in log.splitlines()[-lines:])
        return "\n".join(parts)

    # -- dags ---------------------------------------------------------------------------------

    def add_dag_file(self, source: Path | str, *, name: str | None = None) -> Path:
        """Copy a DAG file (a path) or write DAG source (a str with a name) into the dags folder."""
        if isinstance(source, Path):
            target = self.dags_folder / (name or source.name)
            shutil.copyfile(source, target)
        else:
            if not name:
                raise ValueError("name= is required when source is DAG text")
            target = self.dags_folder / name
            target.write_text(source)
        return target

    # -- stopping -----------------------------------------------------------------------------

    def _ours(self) -> list[psutil.Process]:
        """Live (non-zombie) processes in our group or carrying our marker, children included.

        Every process seen once is remembered (psutil checks its start time, so a reused pid does
        not count): a task whose parent died first is reparented, sits in a group of its own and
        may have lost the marker to setproctitle, but it must still be found.
        """
        found: dict[int, psutil.Process] = {p.pid: p for p in self._seen.values() if _alive(p)}
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if (self.pgid is not None and os.getpgid(proc.pid) == self.pgid) or (
                    proc.environ().get(MARKER_ENV) == self.harness_id
                ):
                    found[proc.pid] = proc
            except (psutil.Error, OSError):
                continue
        for proc in list(found.values()):
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
        self._seen.update(found)
        return list(found.values())

    def _signal_all(self, sig: signal.Signals) -> None:
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
        for proc in self._ours():
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def _reap(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0)

    def stop(self, *, grace: float = 15.0, remove_home: bool = True) -> list[str]:
        """SIGTERM everything we started, SIGKILL what is left after `grace`; returns leftovers (none)."""
        if self._api is not None:
            self._api.close()
            self._api = None
        t0 = time.monotonic()
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self._reap()
            if not self._ours():
                break
            time.sleep(0.2)
        else:
            for _ in range(3):
                self._signal_all(signal.SIGKILL)
                time.sleep(0.3)
                self._reap()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        leftovers = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in self._ours() if _alive(p)]
        self.timings["stop_s"] = time.monotonic() - t0
        self.procs.clear()
        if not leftovers:
            self._registry_file.unlink(missing_ok=True)
        if remove_home and not leftovers and os.environ.get("RECOVERY_KEEP_TMP") != "1":
            shutil.rmtree(self.home, ignore_errors=True)
        if leftovers:
            raise AirflowHarnessError(f"processes left behind after stop (pgid {self.pgid}): {leftovers}")
        return leftovers

    def __enter__(self) -> AirflowCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _owner_tag() -> str:
    """'<pid>@<create time>' of this process: lets a later session tell our orphans from live harnesses."""
    return f"{os.getpid()}@{psutil.Process().create_time():.2f}"


def _owner_alive(tag: str) -> bool:
    pid_text, _, created = tag.partition("@")
    try:
        return f"{psutil.Process(int(pid_text)).create_time():.2f}" == created
    except (psutil.Error, ValueError):
        return False


def reap_orphans() -> list[int]:
    """Kill Airflow processes left by a harness whose owning test process is gone (a killed pytest).

    Harnesses of live sessions (another pytest running concurrently) are left alone. Returns pids.
    """
    killed = []
    for entry in REGISTRY.glob("*.json") if REGISTRY.is_dir() else []:
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if _owner_alive(str(info.get("owner", ""))):
            continue
        pgid = int(info["pgid"])
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) == pgid:
                    proc.kill()
                    killed.append(proc.pid)
        if os.environ.get("RECOVERY_KEEP_TMP") != "1":
            shutil.rmtree(str(info.get("home", "")), ignore_errors=True)
        entry.unlink(missing_ok=True)
    for proc in psutil.process_iter():  # tasks in process groups of their own
        with contextlib.suppress(psutil.Error, OSError):
            tag = proc.environ().get(MARKER_ENV)
            if tag and not _owner_alive(tag.rsplit(":", 1)[0]):
                proc.kill()
                killed.append(proc.pid)
    return killed


def _redis_ping(port: int) -> bool:
    """True when a Redis server answers PING on 127.0.0.1:port (RESP over a plain socket)."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


@contextlib.contextmanager
def running_cluster(
    dags_folder: Path, metadata_name: str, *, timings: dict[str, float] | None = None, timings_prefix: str = "airflow",
    **cluster_kwargs: Any,
) -> Iterator[AirflowCluster]:
    """A metadata PostgreSQL and an AirflowCluster on it, started after reaping leftovers of a killed
    pytest, and both stopped (the cluster checked for leftover processes) even when tests failed.
    Start-up costs land in `timings` when given (metadata_postgres_start_s, <prefix>_<phase>_s)."""
    from tests.support import postgres

    reap_orphans()
    postgres.reap_orphans()
    t0 = time.monotonic()
    metadata = PostgresCluster(metadata_name)
    metadata.start()
    started = {"metadata_postgres_start_s": time.monotonic() - t0}
    try:
        cluster = AirflowCluster(dags_folder, metadata, **cluster_kwargs)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
            started.update({f"{timings_prefix}_{k}": v for k, v in cluster.timings.items()})
    finally:
        metadata.stop()
        if timings is not None:
            timings.update(started)
