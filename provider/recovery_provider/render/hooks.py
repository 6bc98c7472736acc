"""pre_execute hooks of generated tasks: decisions that need the run's task states."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recovery_provider.render import runtime


def skip_when_done(probe_task_id: str, dry_run_aware: bool) -> Callable[[Any], None]:
    """pre_execute of a step with `skip_if`: skip when its probe (for the same target) found the work done."""
    def hook(context: Any) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        if not dry_run_aware:
            runtime.skip_in_dry_run(context)
        ti = context["ti"]
        found = ti.xcom_pull(task_ids=probe_task_id, map_indexes=ti.map_index) if ti.map_index >= 0 else ti.xcom_pull(task_ids=probe_task_id)
        if found:
            raise AirflowSkipException(f"already done, as {probe_task_id} found ({found!r}): nothing to do")

    return hook


def compensate_only_if(step_task_id: str, gate_task_id: str, same_target: bool = False) -> Callable[[Any], None]:
    """pre_execute of an undo task: skip unless the phase failed and its step had succeeded (for the
    same target, in fan-outs). The gate is checked here, not only by trigger rules: the second undo
    of a chain waits with all_done, which a skipped first undo satisfies."""
    def hook(context: Any) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        runtime.skip_in_dry_run(context)
        gate_state = runtime.task_state(context, gate_task_id)
        if gate_state != "failed":
            raise AirflowSkipException(f"{gate_task_id} is {gate_state}, the phase did not fail: nothing to undo")
        map_index = context["ti"].map_index if same_target else -1
        state = runtime.task_state(context, step_task_id, map_index)
        if state != "success":
            where = f"{step_task_id}[{map_index}]" if map_index >= 0 else step_task_id
            raise AirflowSkipException(f"{where} did not succeed ({state}): nothing to undo")

    return hook


def step_hook(inner: Callable[[Any], None] | None, step: str, *, factor: float | None, min_samples: int,
              breaker: dict[str, Any] | None) -> Callable[[Any], None]:
    """pre_execute of a step that learns from the ledger's history (render/breakers.py): after
    ``inner`` (dry-run skip, probe skip), fail at once when the step's circuit breaker is open (the
    phase's on_failure then decides), else start the slow-step watchdog unless alerts are off."""
    def hook(context: Any) -> None:
        from recovery_provider.render import breakers

        if inner is not None:
            inner(context)
        if breaker is not None:
            reason = breakers.open_breaker(context, step, "step", breaker)
            if reason is not None:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(reason)
        if factor is not None and not context["params"].get("dry_run"):
            breakers.start_watchdog(context, step, factor, min_samples)

    return hook
