"""Listener the plugin registers: when a run of a generated DAG ends, its record goes to the ledger
and its verdict to the run's note.

Called by the scheduler (and by the api-server when a user sets a run's state by hand) with the
run still in that component's transaction: the record is read through the same session, inside a
savepoint, so that what the scheduler has just decided (skipped, upstream_failed) is seen and a
failing query can never spoil the scheduler's transaction. Nothing here may raise.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)


def record_run(dag_run: Any) -> str | None:
    """Write the ended run's record; returns where, or None when the DAG is not a recovery DAG.

    Append-only per run: a run that ends again after a clear keeps the attempts recorded before.
    The DAG's history (evidence/history.py) is read once before the record is written (the record
    flags the steps that ran past their threshold as it stood) and written once after, with this
    run folded in.
    """
    from sqlalchemy.orm import object_session

    from recovery_provider.evidence.collect import collect_run, is_recovery_dag
    from recovery_provider.evidence.history import breaker_note, fold
    from recovery_provider.evidence.history import record_run as with_history
    from recovery_provider.evidence.ledger import Ledger, LedgerError

    if not is_recovery_dag(getattr(dag_run, "dag", None)):
        return None
    ledger = Ledger()
    try:
        previous = ledger.find(dag_run.dag_id, dag_run.run_id)
    except LedgerError as exc:  # unreadable: its attempts are rebuilt from Airflow's history
        log.warning("recovery ledger: %s", exc)
        previous = None
    session = object_session(dag_run)
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as own:
            record = collect_run(dag_run, own, previous)
            opened = opened_breakers(dag_run, own)
    else:
        # A savepoint on the connection, not the session: Airflow forbids session commits inside
        # the scheduler loop (and a released session savepoint counts as one). No autoflush: the
        # scheduler's pending changes stay its own, and the identity map already shows them to us.
        savepoint = session.connection().begin_nested()
        try:
            with session.no_autoflush:
                record = collect_run(dag_run, session, previous)
                opened = opened_breakers(dag_run, session)
        finally:
            savepoint.rollback()  # we only read; a failed read must not abort the scheduler's transaction
    if opened:  # why the run took another path: on its note too
        said = breaker_note(opened)
        record = record.model_copy(update={"note": f"{record.note}; {said}" if record.note else said})
    if session is not None and record.note:
        try:
            if dag_run.note != record.note:
                dag_run.note = record.note  # the verdict where the UI shows it: committed with the run's new state
        except Exception:  # the note is a courtesy; the record below is the evidence
            log.exception("recovery ledger: could not put the verdict on run %s's note", dag_run.run_id)
    try:
        history = ledger.read_history(dag_run.dag_id)
    except LedgerError as exc:  # the record matters more than the history: write it anyway
        log.warning("recovery ledger: history not updated: %s", exc)
        history = None
    if history is not None:
        record = with_history(record, history, opened)
    where = ledger.write(record)
    if history is not None:
        ledger.write_history(fold(history, record))
    return where


def opened_breakers(dag_run: Any, session: Any) -> list[Any]:
    """The circuit breakers the run's tasks found open (XCom ``recovery_breaker``, render/runtime.py)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    from recovery_provider.evidence.history import BREAKER_XCOM_KEY
    from recovery_provider.evidence.record import BreakerRecord

    found: dict[str, BreakerRecord] = {}
    for row in session.execute(
        select(XComModel.task_id, XComModel.key, XComModel.value)
        .where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
               XComModel.key == BREAKER_XCOM_KEY)
    ).all():
        value = XComModel.deserialize_value(row)
        if isinstance(value, dict):
            try:
                breaker = BreakerRecord.model_validate(value)
            except ValueError:
                continue
            found.setdefault(breaker.name, breaker)  # a fan-out's targets all say the same
    return list(found.values())


def _record(dag_run: Any) -> None:
    try:
        where = record_run(dag_run)
    except Exception:  # evidence must never break the scheduler
        log.exception("recovery ledger: could not record run %s of %s", getattr(dag_run, "run_id", "?"),
                      getattr(dag_run, "dag_id", "?"))
        return
    if where:
        log.info("recovery ledger: recorded run %s of %s at %s", dag_run.run_id, dag_run.dag_id, where)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _record(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _record(dag_run)
