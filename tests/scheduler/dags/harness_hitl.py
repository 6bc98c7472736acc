"""HITL DAG for the scheduler harness: an approval that a test answers through the REST API."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, task

with DAG(dag_id="harness_hitl", schedule=None, catchup=False, tags=["harness"]):
    approve = ApprovalOperator(
        task_id="approve",
        subject="Cut over to the replica?",
        response_timeout=timedelta(minutes=5),
    )

    @task
    def after_approval() -> str:
        return "cut over"

    approve >> after_approval()
