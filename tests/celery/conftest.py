"""The CeleryExecutor tier: one Airflow deployment with a Redis broker and two Celery workers.

Why a fixture of its own (and not the session-wide LocalExecutor `airflow` of tests/scheduler):
the executor is fixed when the scheduler starts, and the two tiers must not share workers.
Module scope: a deployment costs tens of seconds on two cores; tests isolate by dag_id/run_id.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import airflow_cluster, postgres
from tests.support.airflow_cluster import AirflowCluster, CeleryWorker, find_redis_server
from tests.support.postgres import PostgresCluster

TIMINGS: dict[str, float] = {}
# w2 also sits "next to site B": only it consumes the site_b queue.
WORKERS = (CeleryWorker("w1", ("default",)), CeleryWorker("w2", ("default", "site_b")))


@pytest.fixture(scope="module")
def celery_airflow() -> Iterator[AirflowCluster]:
    """A started CeleryExecutor cluster (broker, scheduler & co., workers w1 and w2); stopped at the end."""
    if find_redis_server() is None:
        pytest.skip("redis-server is missing: install the Debian package redis-server (or set RECOVERY_REDIS_SERVER)")
    airflow_cluster.reap_orphans()
    postgres.reap_orphans()
    dags = Path(tempfile.mkdtemp(prefix="celery-dags-"))
    t0 = time.monotonic()
    metadata = PostgresCluster("celery-meta")
    metadata.start()
    TIMINGS["metadata_postgres_start_s"] = time.monotonic() - t0
    try:
        cluster = AirflowCluster(dags, metadata, executor="CeleryExecutor", celery_workers=WORKERS)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
            TIMINGS.update({f"celery_{k}": v for k, v in cluster.timings.items()})
    finally:
        metadata.stop()
        shutil.rmtree(dags, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "celery harness timings: " + ", ".join(f"{k}={v:.1f}" for k, v in TIMINGS.items())
        )
