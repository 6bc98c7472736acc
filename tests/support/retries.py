"""What Airflow's task runner decides when a try of a task fails: retry, or fail for good.

Calls the task SDK's own failure handler (``task_runner._handle_current_task_failed``, the code
every failed try of a worker goes through, retry policy included) with a task instance the way the
API server would describe it: ``should_retry`` while tries are left. A private function of the
task SDK: if it moves, this helper is the one place to follow it.
"""

from __future__ import annotations

import datetime as dt
import types
import uuid
from typing import Any


def airflow_decides(task: Any, error: BaseException, try_number: int = 1) -> str:
    """``failed`` or ``up_for_retry``: the state the worker reports for this failed try."""
    import structlog
    from airflow.sdk.api.datamodels._generated import TIRunContext
    from airflow.sdk.execution_time import task_runner

    ti = task_runner.RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task.task_id, dag_id="d", run_id="r", try_number=try_number, map_index=-1,
        task=task, max_tries=task.retries, start_date=dt.datetime.now(dt.timezone.utc))
    ti._ti_context_from_server = TIRunContext.model_construct(
        max_tries=task.retries, should_retry=try_number <= task.retries, dag_run=types.SimpleNamespace(team_name=None))
    _msg, state = task_runner._handle_current_task_failed(ti, error, structlog.get_logger(), None)
    return str(state.value)
