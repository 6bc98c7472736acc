"""Smoke DAG for the scheduler harness: proves parallelism, ordering and a 1-slot pool.

Two tasks sleep in parallel, a join runs after both, and a task mapped over four items shares a
one-slot pool (the test creates the pool before triggering: a missing pool is never scheduled).
"""

from __future__ import annotations

import time

from airflow.sdk import DAG, task

POOL = "harness_smoke_pool"
SLEEP_S = 3.0

with DAG(dag_id="harness_smoke", schedule=None, catchup=False, tags=["harness"]):

    @task
    def left() -> None:
        time.sleep(SLEEP_S)

    @task
    def right() -> None:
        time.sleep(SLEEP_S)

    @task
    def join() -> None:
        """Runs only after both sleepers ended."""

    @task(pool=POOL)
    def pooled(item: int) -> int:
        time.sleep(1.0)
        return item

    [left(), right()] >> join()
    pooled.expand(item=[0, 1, 2, 3])
