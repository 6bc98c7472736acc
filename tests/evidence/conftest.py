"""A real Airflow (api-server with authentication on, scheduler, dag-processor, triggerer) whose
plugin is the installed provider's, plus the recovery runs the evidence tests read back.

Its own deployment, not the scheduler tier's: it runs a restricting auth manager
(tests/support/restricted_auth.py) and a second user, `drills`, who may read only evidence_drill.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from recovery_provider.evidence.ledger import Ledger
from tests.support.airflow_cluster import AirflowCluster, running_cluster
from tests.support.s3 import s3_server

REPO = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).resolve().parent / "specs"
LOADER = "# airflow DAG loader: safe mode parses only files that say 'airflow' and 'dag'\nfrom recovery_provider.loader import load_dags\nload_dags(__file__, {folder!r})\n"
PG_PASSWORD = "evidence-" + secrets.token_hex(8)  # must never reach the ledger or a report
LEDGER_BUCKET = "evidence"
LEDGER_CONN = "ledger_s3"
LEDGER = f"s3://{LEDGER_CONN}@{LEDGER_BUCKET}/ledger"


@dataclass
class EvidenceRuns:
    cluster: AirflowCluster
    ledger: str  # where the scheduler wrote and the api-server reads: a bucket on the S3 endpoint
    s3_endpoint: str
    location: str  # the backups
    drill_run: str
    stopped_run: str  # a drill marked failed by hand while awaiting approval
    check_runs: list[str]


@pytest.fixture(scope="package")
def ledger_s3() -> Iterator[tuple[str, str]]:
    """An S3 endpoint over HTTP on loopback (moto's server) holding the run ledger, as MinIO does in
    docker-compose: the scheduler writes there and the api-server reads, each with the connection."""
    with s3_server(LEDGER_BUCKET) as (endpoint, connection):
        conn = json.dumps(connection)
        os.environ[f"AIRFLOW_CONN_{LEDGER_CONN.upper()}"] = conn  # for the tests' own reads and the CLI
        yield endpoint, conn


# Package scope: stopped when tests/evidence ends, so its Airflow never runs beside the scheduler
# tier's (two deployments on two cores made scheduler tests time out in CI).
@pytest.fixture(scope="package")
def evidence_cluster(tmp_path_factory: pytest.TempPathFactory, ledger_s3: tuple[str, str]) -> Iterator[AirflowCluster]:
    dags = tmp_path_factory.mktemp("evidence-dags")
    (dags / "recovery_specs.py").write_text(LOADER.format(folder=str(SPECS)))
    with running_cluster(
        dags, "evidence-meta", users={"drills": "viewer"},
        plugins_folder=REPO / "plugins",  # as docker-compose mounts it: the plugin must not load twice
        config={"core": {"auth_manager": "tests.support.restricted_auth.RestrictedAuthManager"},
                "recovery": {"ledger_location": LEDGER}},
        env={"PYTHONPATH": str(REPO), f"AIRFLOW_CONN_{LEDGER_CONN.upper()}": ledger_s3[1]},
    ) as cluster:
        yield cluster


@pytest.fixture(scope="package")
def evidence_runs(evidence_cluster: AirflowCluster, ledger_s3: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> EvidenceRuns:
    """One drill approved by admin, one stopped by hand, two freshness checks: all ended and recorded."""
    cluster = evidence_cluster
    api = cluster.api
    cluster.metadata.create_database("evidence_src")
    cluster.metadata.psql(
        "CREATE TABLE orders (id int primary key, total numeric); "
        "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g;",
        dbname="evidence_src",
    )
    api.request("POST", "/connections", json={
        "connection_id": "evidence_pg", "conn_type": "postgres", "host": "127.0.0.1",
        "port": cluster.metadata.port, "login": "postgres", "password": PG_PASSWORD, "schema": "postgres",
    }, ok=(200, 201, 409))
    store = tmp_path_factory.mktemp("evidence-backups")
    location = f"file://{store}"
    for dag_id in ("evidence_drill", "evidence_check"):
        api.wait_for_dag(dag_id, timeout=120)
        api.unpause(dag_id)
    marker = store / "switch-marker"
    drill = api.trigger("evidence_drill", {"location": location, "marker": str(marker)})
    api.answer_hitl("evidence_drill", drill, "approve.approve", ["Approve"])
    state = api.wait_for_run("evidence_drill", drill, timeout=240)
    assert state == "success", {(t.task_id, t.map_index): t.state for t in api.task_instances("evidence_drill", drill)}
    # a drill stopped by hand while it waits for its approval: the api-server ends it, the
    # outcome task never runs; the listener there still records and judges what happened
    stopped = api.trigger("evidence_drill", {"location": location, "marker": str(store / "unused-marker")})
    api.wait_for_task_state("evidence_drill", stopped, "approve.approve", ["awaiting_input"], timeout=180)
    api.request("PATCH", f"/dags/evidence_drill/dagRuns/{quote(stopped, safe='')}", json={"state": "failed"})
    assert api.wait_for_run("evidence_drill", stopped, timeout=60) == "failed"
    checks = []
    for _ in range(2):
        run_id = api.trigger("evidence_check", {"location": location})
        state = api.wait_for_run("evidence_check", run_id, timeout=120)
        assert state == "success", {(t.task_id, t.map_index): t.state for t in api.task_instances("evidence_check", run_id)}
        checks.append(run_id)
    ledger = Ledger(LEDGER)
    deadline = time.monotonic() + 30  # the scheduler writes the record as it closes the run
    while time.monotonic() < deadline and len(ledger.runs("evidence_drill") + ledger.runs("evidence_check")) < 4:
        time.sleep(0.5)
    return EvidenceRuns(cluster, LEDGER, ledger_s3[0], location, drill, stopped, checks)
