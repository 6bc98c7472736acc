"""Build a run's record from Airflow's metadata database, when the run has ended.

Runs inside the scheduler (or the api-server, when a user sets a run's state by hand): the only
components that read the metadata database in Airflow 3. The verdict, the run's note and the
estimate for the path taken are decided here too (evidence/verdict.py); everything else comes from
the task instances, the approvals and the timestamps the steps report.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from recovery_provider.evidence.attempts import merge_attempts, not_run_phases
from recovery_provider.evidence.incidents import INCIDENT_PARAM
from recovery_provider.evidence.record import (
    ApprovalRecord,
    ClearRecord,
    PlanEvidence,
    RunRecord,
    TaskKind,
    TaskRecord,
)
from recovery_provider.evidence.restores import restore_line
from recovery_provider.evidence.verdict import LayoutRecord, judge_run, recorded_dag
from recovery_provider.plan.layout import GATE, OUTCOME
from recovery_provider.plan.model import PROBE_SUFFIX, RESERVED_TOP_LEVEL, UNDO_SUFFIX
from recovery_provider.render.policy import state_key

EVIDENCE_XCOM_KEY = "recovery_evidence"
RECOVERY_TAG = "recovery"  # every generated DAG carries it
# Layout kinds as the record names them: the tasks the DAG factory adds around the steps are control.
_RECORD_KINDS: dict[str, TaskKind] = {
    "step": "step", "finally": "finally", "gate": "gate", "approval": "approval", "undo": "undo",
    "probe": "probe", "wave_health": "step",
}


def task_kind(task_id: str, layout: LayoutRecord | None) -> tuple[str | None, TaskKind]:
    """(phase, kind) of a task of a generated DAG, as the layout the DAG was rendered from says.

    Without a layout (a DAG rendered before layouts were recorded) only the reserved ids are
    known: everything else counts as a step, so a failure is never hidden as a control task's.
    """
    found = (layout or {}).get(task_id)
    if found:
        return found[1], _RECORD_KINDS.get(str(found[0]), "control")
    if "." not in task_id:
        return None, ("control" if task_id in RESERVED_TOP_LEVEL else "finally")
    phase, _, rest = task_id.partition(".")
    last = rest.rsplit(".", 1)[-1]
    if last == GATE:
        return phase, "gate"
    return phase, ("undo" if last.endswith(UNDO_SUFFIX) else "probe" if last.endswith(PROBE_SUFFIX) else "step")


def recorded_layout(dag: Any) -> LayoutRecord | None:
    """The layout of the DAG version that ran (evidence/verdict.py finds it in the DAG)."""
    found = recorded_dag(dag)
    return found.layout if found else None


def mapped_feeds(layout: LayoutRecord) -> dict[str, str]:
    """Id prefix of each mapped task group (``P.each.``, ``P.undo.``, ``P.wave2.``) -> the task whose
    output maps it (the resolver, or the wave's slice)."""
    return {f"{row[1]}.{row[2]}.": str(row[3]) for row in layout.values() if len(row) > 3 and row[2] and row[3]}


def recovery_points(values: Iterable[Any]) -> list[dt.datetime]:
    """The ``finished_at`` timestamps steps report of the backups they took, checked or restored.

    Only these timestamps are read from step results: nothing else of an XCom enters the ledger.
    """
    found: list[dt.datetime] = []

    def take(value: Any) -> None:
        if isinstance(value, str):
            try:
                stamp = dt.datetime.fromisoformat(value)
            except ValueError:
                return
            found.append(stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc))

    for value in values:
        if not isinstance(value, Mapping):
            continue
        take(value.get("finished_at"))
        for nested in value.values():  # e.g. backup.freshness over several databases
            if isinstance(nested, Mapping):
                take(nested.get("finished_at"))
                for inner in nested.values():
                    if isinstance(inner, Mapping):
                        take(inner.get("finished_at"))
    return found


def pitr_measures(values: Iterable[Any]) -> dict[str, float]:
    """What a point-in-time restore achieved, from the step results that report it.

    ``achieved_rpo_seconds`` (``pgbackrest.restore`` to a time, ``pgbackrest.drill_verify``: target
    minus the last restored commit; the largest when several report it) and ``restore_seconds``
    (the restores' pgBackRest time, summed). Only these two numbers are read.
    """
    found: dict[str, float] = {}
    for value in values:
        if not isinstance(value, Mapping):
            continue
        rpo, took = value.get("achieved_rpo_seconds"), value.get("restore_seconds")
        if isinstance(rpo, (int, float)) and not isinstance(rpo, bool):
            found["achieved_rpo_seconds"] = max(float(rpo), found.get("achieved_rpo_seconds", float(rpo)))
        if isinstance(took, (int, float)) and not isinstance(took, bool):
            found["restore_seconds"] = found.get("restore_seconds", 0.0) + float(took)
    return found


def target_labels(resolver_results: Mapping[str, Any], feeds: Mapping[str, str],
                  layout: LayoutRecord | None = None) -> dict[str, list[str]]:
    """Labels of a fan-out's targets, by the id prefix of the mapped tasks they feed.

    `feeds` maps each group prefix to the task whose output maps it (see :func:`mapped_feeds`); that
    output is the list of per-target kwargs, of which only ``target`` is read. Groups mapped over
    literal targets have them in the layout record (5th field).
    """
    labels: dict[str, list[str]] = {
        f"{row[1]}.{row[2]}.": [_short(t) for t in row[4]]
        for row in (layout or {}).values() if len(row) > 4 and row[2] and isinstance(row[4], list)
    }
    for prefix, source in feeds.items():
        value = resolver_results.get(source)
        if isinstance(value, list):
            labels[prefix] = [_short(row.get("target")) if isinstance(row, Mapping) else "?" for row in value]
    return labels


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(task_id: str, map_index: int, rendered: Any, labels: Mapping[str, list[str]]) -> str | None:
    if map_index < 0:
        return None
    for prefix, names in labels.items():
        if task_id.startswith(prefix) and map_index < len(names):
            return names[map_index]
    # Airflow's own label, unless it is just the index (its default without a map_index_template)
    return str(rendered) if rendered not in (None, "", str(map_index)) else None


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def task_records(
    task_rows: Iterable[Mapping[str, Any]], *, upstream: Mapping[str, Iterable[str]],
    labels: Mapping[str, list[str]] | None = None, layout: LayoutRecord | None = None,
) -> list[TaskRecord]:
    """Task records from task-instance columns (of ``task_instance`` or ``task_instance_history``)."""
    tasks = []
    for row in task_rows:
        task_id = str(row["task_id"])
        phase, kind = task_kind(task_id, layout)
        map_index = int(row.get("map_index", -1))
        tasks.append(TaskRecord(
            task_id=task_id, map_index=map_index,
            target=_label(task_id, map_index, row.get("rendered_map_index"), labels or {}),
            phase=phase, kind=kind, state=row.get("state"), start=row.get("start_date"), end=row.get("end_date"),
            duration=row.get("duration"), tries=int(row.get("try_number") or 0), operator=row.get("operator"),
            upstream=sorted(upstream.get(task_id, ())),
        ))
    return tasks


def build_record(
    *,
    dag_id: str,
    run_id: str,
    run_type: str | None,
    state: str,
    queued_at: dt.datetime | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    task_rows: Iterable[Mapping[str, Any]],
    upstream: Mapping[str, Iterable[str]],
    approvals: Iterable[ApprovalRecord],
    step_results: Iterable[Any],
    labels: Mapping[str, list[str]] | None = None,
    layout: LayoutRecord | None = None,
    restores: Sequence[str] = (),
    evidence: Mapping[str, Any] | None,
    conf: Mapping[str, Any] | None,
    now: dt.datetime | None = None,
    clear_number: int = 0,
    note: str | None = None,
) -> RunRecord:
    """The record from plain values (testable without Airflow): rows are task-instance columns.

    Phases that never ran (their gate failed only because an upstream phase did) are kept apart
    from the failed ones, whatever the outcome task said.
    """
    tasks = task_records(task_rows, upstream=upstream, labels=labels, layout=layout)
    step_results = list(step_results)
    points = recovery_points(step_results)
    oldest = min(points, default=None)
    data_age = max(0.0, (start - oldest).total_seconds()) if oldest and start else None
    evidence = evidence or {}
    plan = PlanEvidence.model_validate(evidence["plan"]) if evidence.get("plan") else None
    verdict = evidence.get("result") or {}
    dry_run = evidence.get("dry_run")
    if dry_run is None:
        dry_run = bool((conf or {}).get("dry_run", False))
    not_run = not_run_phases(tasks)
    incident = (conf or {}).get(INCIDENT_PARAM)
    return RunRecord(
        dag_id=dag_id, run_id=run_id, run_type=run_type, state=state, queued_at=queued_at, start=start, end=end,
        achieved_seconds=_duration(queued_at or start, end),
        outcome=verdict.get("outcome"),
        failed_phases=[p for p in verdict.get("failed_phases") or [] if p not in not_run],
        partial_phases=list(verdict.get("partial_phases") or []),
        not_run_phases=not_run,
        dry_run=bool(dry_run), recovery_point=oldest, data_age_seconds=data_age,
        **pitr_measures(step_results),
        tasks=tasks, approvals=list(approvals), plan=plan, restores=list(restores),
        recorded_at=now or dt.datetime.now(dt.timezone.utc), clear_number=clear_number, note=note,
        incident=_short(incident, 100) if isinstance(incident, (str, int)) and str(incident).strip() else None,
    )


def is_recovery_dag(dag: Any) -> bool:
    return dag is not None and RECOVERY_TAG in set(getattr(dag, "tags", None) or ())


def collect(dag_run: Any, session: Any) -> RunRecord:
    """Read one ended run of a generated DAG off the metadata database."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    dag = dag_run.dag
    tis = session.scalars(
        select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
    ).all()
    rows = [
        {"task_id": ti.task_id, "map_index": ti.map_index, "rendered_map_index": ti.rendered_map_index,
         "state": str(ti.state.value if hasattr(ti.state, "value") else ti.state) if ti.state else None,
         "start_date": ti.start_date, "end_date": ti.end_date, "duration": ti.duration,
         "try_number": ti.try_number, "operator": ti.operator}
        for ti in tis
    ]
    upstream = {task_id: list(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}
    approvals = [
        ApprovalRecord(
            task_id=task_id, subject=detail.subject, options=list(detail.options or []),
            chosen=list(detail.chosen_options) if detail.chosen_options is not None else None,
            responded_by=(detail.responded_by or {}).get("name"),
            asked_at=detail.created_at, responded_at=detail.responded_at,
        )
        for detail, task_id in session.execute(
            select(HITLDetail, TaskInstance.task_id)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
        ).all()
    ]
    xcoms = session.execute(
        select(XComModel.task_id, XComModel.key, XComModel.value)
        .where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
               XComModel.key.in_(["return_value", EVIDENCE_XCOM_KEY]))
    ).all()
    recorded = recorded_dag(dag)
    layout = recorded.layout if recorded else None
    kinds = {row["task_id"]: task_kind(str(row["task_id"]), layout)[1] for row in rows}
    feeds = mapped_feeds(layout or {})
    step_results: list[Any] = []
    restores: list[str | None] = []  # which backup each restore step used (evidence/restores.py)
    resolvers: dict[str, Any] = {}
    evidence: Any = None
    returns: dict[str, Any] = {}  # of the tasks that decide the verdict: gates, branches, approvals
    for row in xcoms:
        if row.task_id == OUTCOME and row.key == EVIDENCE_XCOM_KEY:  # DAGs rendered before verdict.py
            evidence = XComModel.deserialize_value(row)
        elif row.key == "return_value" and (layout or {}).get(row.task_id, ("",))[0] in ("gate", "branch", "approval"):
            returns[row.task_id] = XComModel.deserialize_value(row)
        elif row.key == "return_value" and kinds.get(row.task_id) in ("step", "finally"):
            step_results.append(XComModel.deserialize_value(row))
            restores.append(restore_line(row.task_id, step_results[-1]))
        elif row.key == "return_value" and row.task_id in feeds.values():
            resolvers[row.task_id] = XComModel.deserialize_value(row)
    clear_number = int(getattr(dag_run, "clear_number", 0) or 0)
    note = None
    if recorded is not None and not isinstance(evidence, Mapping):
        states = {state_key(row["task_id"], row["map_index"]): row["state"] for row in rows}
        verdict = judge_run(recorded, states, returns, attempt=clear_number + 1,
                            note_before=_note(dag_run) if clear_number else None)
        evidence, note = {"result": verdict.result, "plan": verdict.plan}, verdict.note
    state = dag_run.state
    return build_record(
        dag_id=dag_run.dag_id, run_id=dag_run.run_id,
        run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
        state=str(getattr(state, "value", state)), queued_at=dag_run.queued_at,
        start=dag_run.start_date, end=dag_run.end_date, task_rows=rows, upstream=upstream,
        approvals=approvals, step_results=step_results, labels=target_labels(resolvers, feeds, layout), layout=layout,
        restores=[line for line in restores if line],
        evidence=evidence if isinstance(evidence, Mapping) else None,
        conf=dag_run.conf if isinstance(dag_run.conf, Mapping) else None,
        clear_number=clear_number, note=note,
    )


def _note(dag_run: Any) -> str | None:
    """The note an earlier attempt left on the run. A run outside any session (`airflow dags test`
    calls the listener so) cannot load it: then there is none to go on from."""
    try:
        note = dag_run.note
    except Exception:  # DetachedInstanceError
        return None
    return note if isinstance(note, str) else None


CLEAR_EVENTS = ("post_clear_task_instances", "clear_dag_run", "clear_dag_runs")  # the REST API's (and UI's) clears


def collect_run(dag_run: Any, session: Any, previous: RunRecord | None) -> RunRecord:
    """The ended run with all its attempts: ``previous`` is the ledger's record of it, if any.

    A re-run (the run was cleared) also reads who cleared it from Airflow's audit log, and, when
    the ledger holds nothing of the earlier attempts, their tries from the task instance history.
    """
    record = collect(dag_run, session)
    if record.clear_number == 0:
        return merge_attempts(previous, record)
    from airflow.models.log import Log
    from airflow.models.taskinstancehistory import TaskInstanceHistory as TIH
    from sqlalchemy import select

    clears = [
        ClearRecord(by=owner, at=when, event=event)
        for owner, when, event in session.execute(
            select(Log.owner, Log.dttm, Log.event)
            .where(Log.dag_id == dag_run.dag_id, Log.run_id == dag_run.run_id, Log.event.in_(CLEAR_EVENTS))
            .order_by(Log.dttm.desc()).limit(50)
        ).all()
    ]
    history: list[TaskRecord] = []
    if previous is None:
        rows = session.execute(
            select(TIH.task_id, TIH.map_index, TIH.rendered_map_index, TIH.state, TIH.start_date, TIH.end_date,
                   TIH.duration, TIH.try_number, TIH.operator)
            .where(TIH.dag_id == dag_run.dag_id, TIH.run_id == dag_run.run_id)
        ).mappings().all()
        history = task_records(
            rows, upstream={t: list(task.upstream_task_ids) for t, task in dag_run.dag.task_dict.items()},
            layout=recorded_layout(dag_run.dag),
        )
    return merge_attempts(previous, record, history=history, clears=clears)
