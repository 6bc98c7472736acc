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
    """
    from sqlalchemy.orm import object_session

    from recovery_provider.evidence.collect import collect_run, is_recovery_dag
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
    else:
        # A savepoint on the connection, not the session: Airflow forbids session commits inside
        # the scheduler loop (and a released session savepoint counts as one). No autoflush: the
        # scheduler's pending changes stay its own, and the identity map already shows them to us.
        savepoint = session.connection().begin_nested()
        try:
            with session.no_autoflush:
                record = collect_run(dag_run, session, previous)
        finally:
            savepoint.rollback()  # we only read; a failed read must not abort the scheduler's transaction
        if record.note and dag_run.note != record.note:
            # the verdict where the UI shows it: committed with the run's own new state
            dag_run.note = record.note
    return ledger.write(record)


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
