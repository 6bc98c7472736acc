"""Operators the DAG factory adds around the user's steps."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from airflow.sdk.bases.branch import BaseBranchOperator
from airflow.sdk.bases.operator import BaseOperator

from recovery_provider.render.policy import FAILED


class ControlOperator(BaseOperator):
    """A task of the factory's own (a phase gate, preflight, outcome, a fan-out's targets, a wave's
    slice): calls one function of render/runtime.py with its arguments and the task's context, and
    returns its result as XCom. What PythonOperator does for these, without importing the standard
    provider's python module at every task start of the DAG (~20 ms: virtualenv support, packaging).
    """

    template_fields = ("op_kwargs",)  # shown in the UI's rendered fields, as PythonOperator's are
    ui_color = "#f0ede4"

    def __init__(self, *, python_callable: Callable[..., Any], op_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.python_callable = python_callable
        self.op_kwargs = op_kwargs or {}

    def execute(self, context: Any) -> Any:
        return self.python_callable(**self.op_kwargs, **context)


class ChooseBranchOperator(BaseBranchOperator, ControlOperator):
    """A branch phase's choice: the function returns the task ids to follow, Airflow skips the rest
    (composed as the standard provider's BranchPythonOperator is)."""

    def choose_branch(self, context: Any) -> str | Iterable[str]:
        return ControlOperator.execute(self, context)  # type: ignore[no-any-return]


class WaveCheckpointOperator(BaseOperator):
    """Between two waves: stop the rest after too many failed waves, else pause (deferred, no slot held).

    A wave failed when one of its targets or its health check failed; a wave without targets
    neither fails nor pauses.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, waves: list[list[str]], max_failed_waves: int, pause: timedelta, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.waves = waves
        self.max_failed_waves = max_failed_waves
        self.pause = pause

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
        from airflow.sdk.exceptions import AirflowFailException

        from recovery_provider.render.runtime import states_of

        states = states_of(context, [task for wave in self.waves for task in wave])
        def wave_states(tasks: list[str]) -> list[str | None]:
            return [s for key, s in states.items() if any(key == t or key.startswith(f"{t}_") for t in tasks)]
        failed = [i + 1 for i, tasks in enumerate(self.waves) if any(s in FAILED for s in wave_states(tasks))]
        summary = {"failed_waves": failed, "max_failed_waves": self.max_failed_waves}
        if len(failed) >= self.max_failed_waves:
            raise AirflowFailException(f"stopping the remaining waves: wave(s) {failed} failed (max_failed_waves: {self.max_failed_waves})")
        current = wave_states(self.waves[-1])
        if current and all(s == "skipped" for s in current):
            return summary
        if self.pause > timedelta(0):
            self.log.info("wave %d done; pausing %s before the next wave", len(self.waves), self.pause)
            context["ti"].xcom_push(key="return_value", value=summary)
            # The triggerer ends the task when the pause is over: no worker is started again just to
            # return, and no race between this process's exit and the re-queued task (a pause shorter
            # than the worker's shutdown made Airflow fail the checkpoint: "state changed externally").
            self.defer(trigger=TimeDeltaTrigger(self.pause, end_from_trigger=True), method_name="resume")
        return summary

    def resume(self, context: Any, event: Any = None) -> None:
        """Not called: the trigger ends the task (end_from_trigger)."""
