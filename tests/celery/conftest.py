"""The CeleryExecutor tier: one Airflow deployment with a Redis broker and two Celery workers.

Why a fixture of its own (and not the session-wide LocalExecutor `airflow` of tests/scheduler):
the executor is fixed when the scheduler starts, and the two tiers must not share workers.
Module scope: a deployment costs tens of seconds on two cores; tests isolate by dag_id/run_id.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_cluster import AirflowCluster, CeleryWorker, find_redis_server, running_cluster

TIMINGS: dict[str, float] = {}
# w2 also sits "next to site B": only it consumes the site_b queue.
WORKERS = (CeleryWorker("w1", ("default",)), CeleryWorker("w2", ("default", "site_b")))


@pytest.fixture(scope="module")
def celery_airflow() -> Iterator[AirflowCluster]:
    """A started CeleryExecutor cluster (broker, scheduler & co., workers w1 and w2); stopped at the end."""
    if find_redis_server() is None:
        pytest.skip("redis-server is missing: install the Debian package redis-server (or set RECOVERY_REDIS_SERVER)")
    dags = Path(tempfile.mkdtemp(prefix="celery-dags-"))
    try:
        with running_cluster(dags, "celery-meta", timings=TIMINGS, timings_prefix="celery",
                             executor="CeleryExecutor", celery_workers=WORKERS) as cluster:
            yield cluster
    finally:
        shutil.rmtree(dags, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "celery harness timings: " + ", ".join(f"{k}={v:.1f}" for k, v in TIMINGS.items())
        )
