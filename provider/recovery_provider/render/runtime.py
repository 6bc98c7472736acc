"""Callables that generated DAGs run inside tasks: gates, fan-out resolvers, branch, outcome, preflight.

They read task states through the Task SDK's execution API (task code cannot query the
database in Airflow 3) and leave every decision to the pure functions of
:mod:`recovery_provider.render.policy`.
"""

from __future__ import annotations

import logging
from typing import Any

from recovery_provider.plan.targets import is_templated, target_kwargs
from recovery_provider.render.policy import judge_phase, run_note, run_outcome, state_key
from recovery_provider.spec.expressions import UnknownState, parse_condition
from recovery_provider.spec.phase_kinds import FailurePolicy, TargetSource

log = logging.getLogger(__name__)


def _states(context: Any, **selector: Any) -> dict[str, str | None]:
    ti = context["ti"]
    found = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], **selector)
    return dict(found.get(ti.run_id, {}))


def states_of(context: Any, task_ids: list[str]) -> dict[str, str | None]:
    """States of these tasks in this run; mapped ones keyed `task_id_<map index>`."""
    return _states(context, task_ids=task_ids)


def task_state(context: Any, task_id: str, map_index: int = -1) -> str | None:
    """The state of one task instance of this run (one target of a mapped task when map_index >= 0)."""
    selector = {"map_index": map_index} if map_index >= 0 else {}
    return _states(context, task_ids=[task_id], **selector).get(state_key(task_id, map_index))


def gate(phase_id: str, policy: dict[str, Any], fan_out: bool, non_critical: list[str], work_tasks: list[str],
         **context: Any) -> dict[str, Any]:
    """Apply the phase's failure policy; fail the task (and so the phase) when the policy says so."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    verdict = judge_phase(
        FailurePolicy.model_construct(**policy),  # our own model_dump: no re-validation needed
        _states(context, task_ids=work_tasks),
        phase_id=phase_id, fan_out=fan_out, non_critical=non_critical,
    )
    log.info("phase %s: %s %s", phase_id, verdict.outcome, verdict.reason)
    if verdict.outcome == "failed":
        raise AirflowFailException(f"phase '{phase_id}' failed: {verdict.reason} ({', '.join(verdict.failed_units)})")
    if verdict.outcome == "skipped":
        raise AirflowSkipException(f"phase '{phase_id}' did not run")
    return verdict.as_xcom()


def resolve_targets(source: dict[str, Any], arg_name: str, step_args: dict[str, dict[str, Any]],
                    takes_target: list[str], limit: int | None = None, **context: Any) -> list[dict[str, Any]]:
    """The fan-out's targets as one kwargs dict per target for the mapped task group."""
    targets = _targets(TargetSource.model_validate(source), context)
    if limit is not None and len(targets) > limit:
        raise ValueError(f"{len(targets)} targets, more than max_targets ({limit}) the waves were laid out for: raise max_targets")
    rows = [target_kwargs(target, arg_name, step_args, takes_target) for target in targets]
    # Values reach the mapped tasks through XCom, which Airflow does not render: render the other
    # templates of these arguments ({{ params.x }}, {{ run_id }}) here, in this run's context.
    task = context["task"]
    return [{k: task.render_template(v, context) if is_templated(v) else v for k, v in row.items()} for row in rows]


def wave_slice(resolver_task_id: str, wave: int, size: int, **context: Any) -> list[dict[str, Any]]:
    """The targets of one wave (0-based); an empty wave makes its mapped group skip."""
    targets = context["ti"].xcom_pull(task_ids=resolver_task_id) or []
    return list(targets[wave * size:(wave + 1) * size])


def _targets(source: TargetSource, context: Any) -> list[Any]:
    if source.items is not None:
        values: Any = source.items
    elif source.param is not None:
        values = context["params"].get(source.param)
    else:
        values = context["ti"].xcom_pull(task_ids=_find_task_id(context, source.step))
    if values is None:
        values = []
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"fan-out targets must be a list, got {type(values).__name__}: {values!r}")
    return list(values)


def _find_task_id(context: Any, step_id: str | None) -> str:
    dag = context["dag"]
    matches = [t for t in dag.task_ids if t.rsplit(".", 1)[-1] == step_id]
    if not matches:
        raise LookupError(f"step '{step_id}' is not in DAG {dag.dag_id}")
    return str(matches[0])


def choose_branch(choices: list[dict[str, Any]], entries: dict[str, list[str]], **context: Any) -> list[str]:
    """Follow the first case whose condition holds; any undecidable condition takes the fallback.

    A case whose circuit breaker is open (its phase failed too often lately, render/breakers.py)
    takes the fallback too; the reason is logged and pushed for the run's record."""
    params = dict(context["params"])
    fallback = next(c["target"] for c in choices if c["when"] is None)
    outputs: dict[str, Any] = {}
    for choice in choices:
        if choice["when"] is None:
            continue
        condition = parse_condition(choice["when"])
        for step in condition.steps:
            outputs.setdefault(step, context["ti"].xcom_pull(task_ids=_find_task_id(context, step)))
        try:
            if condition.evaluate(params, outputs):
                log.info("branch: %r holds -> %s", choice["when"], choice["target"])
                return entries[_unless_open(choice, fallback, context)]
        except UnknownState as exc:
            log.warning("branch: %s; taking the fallback %s", exc, fallback)
            return entries[fallback]
    log.info("branch: no condition holds -> fallback %s", fallback)
    return entries[fallback]


def _unless_open(choice: dict[str, Any], fallback: str, context: Any) -> str:
    """The case's phase, or the fallback when the case's circuit breaker is open."""
    if not choice.get("breaker"):
        return str(choice["target"])
    from recovery_provider.render.breakers import open_breaker

    reason = open_breaker(context, choice["target"], "branch", choice["breaker"], fallback=fallback)
    if reason is None:
        return str(choice["target"])
    log.warning("branch: %s -> fallback %s", reason, fallback)
    return fallback


def outcome(gate_ids: list[str], **context: Any) -> dict[str, Any]:
    """Fail the run when any phase failed. Only DAGs with `finally` steps or compensations have this
    task: their leaves would hide the failure. The verdict (partial, the note, the estimate) is
    decided by the listener that records the run (evidence/verdict.py), with or without it."""
    from airflow.sdk.exceptions import AirflowFailException

    every = {k: v for k, v in _states(context).items() if k != context["ti"].task_id}
    result = run_outcome({}, {g.rsplit(".", 1)[0]: every.get(g) for g in gate_ids}, every)
    if result["outcome"] == "failed":
        raise AirflowFailException(f"recovery {run_note(result)}")
    return result


API_CONN_ID = "airflow_api"


def _api_from_connection() -> Any:
    """The REST client for connection `airflow_api` (raises AirflowNotFoundException without it)."""
    from airflow.sdk import BaseHook

    from recovery_provider.airflow_api import AirflowApi

    conn = BaseHook.get_connection(API_CONN_ID)
    host = conn.host or "localhost"
    url = host if "://" in host else f"{conn.schema or 'http'}://{host}:{conn.port or 8080}"
    return AirflowApi(url, conn.login, conn.password)


def preflight(pools: dict[str, int], **context: Any) -> dict[str, Any]:
    """Fail at once when a pool the DAG needs is missing or too small (Airflow would wait forever)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

    from recovery_provider.airflow_api import pool_problems

    if not pools:
        return {"pools": {}}
    try:
        api = _api_from_connection()
    except AirflowNotFoundException:
        raise AirflowFailException(
            f"cannot check pools {sorted(pools)}: create the Airflow connection '{API_CONN_ID}' "
            "(type http; host: the api-server URL, login and password of a user who may read pools)"
        ) from None
    problems = pool_problems(api, pools)
    if problems:
        raise AirflowFailException("preflight: " + "; ".join(problems))
    log.info("preflight: pools %s are in place", ", ".join(f"{n} ({s} slots)" for n, s in sorted(pools.items())))
    return {"pools": pools}


def skip_in_dry_run(context: Any) -> None:
    """pre_execute hook of operators that know nothing of dry runs: a dry run must change nothing."""
    from airflow.sdk.exceptions import AirflowSkipException

    if context["params"].get("dry_run"):
        task = context["task"]
        raise AirflowSkipException(f"dry run: would run {type(task).__name__} {task.task_id}")


async def rto_missed(dag_id: str, rto: str, **kwargs: Any) -> None:
    """Deadline callback (runs in the triggerer): the run has taken longer than its RTO."""
    import asyncio

    from recovery_provider.alerts import Alert, send

    context = kwargs.get("context") or {}
    dag_run = context.get("dag_run") if isinstance(context, dict) else None
    run_id = dag_run.get("run_id") if isinstance(dag_run, dict) else getattr(dag_run, "run_id", None)
    await asyncio.to_thread(send, Alert(
        kind="rto_missed", dag_id=dag_id, run_id=run_id, details={"rto": rto},
        message=f"RTO missed: recovery {dag_id} is still running after its RTO of {rto} (run {run_id or context})",
    ))
