"""Run-time side of what the ledger's history teaches: circuit breakers and the slow-step watchdog.

Both read the DAG's history through :mod:`recovery_provider.evidence.history` (one small object,
see its docstring). A history that cannot be read never stops a run: the breaker then counts as
closed and the watchdog stays quiet (both say so in the task log).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Literal

log = logging.getLogger(__name__)
WATCHDOG_GRACE = 5.0  # seconds a try runs before the watchdog reads the history (see start_watchdog)


def open_breaker(context: Any, name: str, kind: Literal["branch", "step"], breaker: dict[str, Any],
                 fallback: str | None = None) -> str | None:
    """The reason the breaker ``name`` is open for this run, or None when it is closed. When open,
    the reason is pushed as XCom ``recovery_breaker`` for the run's record (evidence/listener.py)."""
    from recovery_provider.evidence.history import BREAKER_XCOM_KEY, breaker_state, load_history
    from recovery_provider.evidence.ledger import LedgerError
    from recovery_provider.evidence.record import BreakerRecord
    from recovery_provider.spec.alerts import CircuitBreaker

    ti = context["ti"]
    try:
        history = load_history(ti.dag_id)
    except LedgerError as exc:
        log.warning("circuit breaker '%s': the ledger's history cannot be read (%s): counted as closed", name, exc)
        return None
    state = breaker_state(history, name, kind, CircuitBreaker.model_validate(breaker), run_id=ti.run_id)
    if not state.open:
        if state.failures:
            log.info("circuit breaker '%s' closed: %d of %d failures in the last %d runs", name,
                     len(state.failures), state.breaker.failures, state.breaker.within)
        return None
    reason = state.reason(ti.dag_id)
    record = BreakerRecord(name=name, kind=kind, reason=reason, fallback=fallback)
    ti.xcom_push(key=BREAKER_XCOM_KEY, value=record.model_dump(mode="json"))
    return reason


def start_watchdog(context: Any, step: str, factor: float, min_samples: int) -> threading.Thread:
    """Watch this try from a daemon thread: read the step's usual duration from the history and
    raise the slow-step alert (alerts.py) once the try runs past ``p95 x factor``. The thread starts
    at once and waits :data:`WATCHDOG_GRACE` before reading: reading imports the ledger's modules,
    which would compete with a short step's own start and end (measured: a chain of 1 s steps took
    0.4 s more per step with a 1 s grace). A try shorter than that is never read for, and no alert
    comes earlier. The thread ends with the task's process (a finished, failed or deferred try)."""
    ti = context["ti"]
    started = getattr(ti, "start_date", None) or dt.datetime.now(dt.timezone.utc)
    key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    thread = threading.Thread(
        target=_watch, name=f"recovery-watchdog-{key}", daemon=True,
        args=(ti.dag_id, ti.run_id, key, step, factor, min_samples, started, None, WATCHDOG_GRACE),
    )
    thread.start()
    return thread


def _watch(dag_id: str, run_id: str, task: str, step: str, factor: float, min_samples: int,
           started: dt.datetime, stop: threading.Event | None = None, grace: float = 0.0) -> bool:
    """The watchdog's body; True when it raised the alert. It waits ``grace`` seconds first, so the
    step's own start has the process to itself, then reads the summary's raw JSON (no models built)."""
    stop = stop or threading.Event()
    if stop.wait(grace):
        return False
    from recovery_provider.alerts import Alert, send
    from recovery_provider.evidence.history import usual_from_json
    from recovery_provider.evidence.ledger import Ledger

    try:
        text = Ledger().read_history_text(dag_id)
        usual = usual_from_json(text, step, min_samples, run_id) if text else None
    except Exception as exc:  # never the step's problem
        log.info("slow-step alert off for this try: the ledger's history cannot be read (%s)", exc)
        return False
    if usual is None:
        log.info("slow-step alert off for %s: fewer than %d successful tries of it in the ledger yet", step, min_samples)
        return False
    limit = usual.threshold(factor)
    log.info("slow-step alert for %s: %s", step, usual.describe(factor))
    elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    if stop.wait(max(0.0, limit - elapsed)):
        return False
    elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    send(Alert(
        kind="slow_step", dag_id=dag_id, run_id=run_id, task=task,
        message=f"slow step: {task} of {dag_id} (run {run_id}) has run {elapsed:.1f}s, past its alert threshold "
                f"of {limit:.1f}s ({usual.describe(factor)})",
        details={"step": step, "seconds": round(elapsed, 2), "threshold_seconds": round(limit, 2),
                 "median_seconds": round(usual.median, 2), "p95_seconds": round(usual.p95, 2), "samples": usual.samples},
    ))
    return True
