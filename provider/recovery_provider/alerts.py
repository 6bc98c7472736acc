"""The one way the provider raises an alert: the RTO deadline and slow steps both call :func:`send`.

An alert is always logged at ERROR (where it is raised: the triggerer for a missed RTO, the task's
own log for a slow step). To be notified elsewhere (a pager, a chat channel), a team names one
function in Airflow's config, and every alert of every recovery DAG goes through it::

    [recovery]
    alert_callback = my_team.alerting:notify      # env AIRFLOW__RECOVERY__ALERT_CALLBACK

``notify(alert: Alert) -> None`` receives the :class:`Alert` below; it must be importable by the
triggerer and the workers. What it raises is logged, never passed on: an alert must not fail the
run it warns about. Nothing here imports Airflow at module level.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

CALLBACK_ENV = "AIRFLOW__RECOVERY__ALERT_CALLBACK"
AlertKind = Literal["rto_missed", "slow_step"]


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    dag_id: str
    message: str  # one line, says what and what the threshold was
    run_id: str | None = None
    task: str | None = None  # slow steps: the task instance (task_id, or task_id[map_index])
    details: Mapping[str, Any] = field(default_factory=dict)  # numbers behind the message


def configured_callback() -> str | None:
    """``[recovery] alert_callback`` (or its environment variable); None when not set."""
    if "airflow.configuration" in sys.modules:
        from airflow.configuration import conf

        found = conf.get("recovery", "alert_callback", fallback=None)
        if found:
            return str(found)
    return os.environ.get(CALLBACK_ENV) or None


def _callback(path: str) -> Callable[[Alert], Any]:
    module_name, colon, attribute = path.partition(":")
    if not colon:
        module_name, _, attribute = path.rpartition(".")
    found = getattr(importlib.import_module(module_name), attribute)
    if not callable(found):
        raise TypeError(f"{path} is a {type(found).__name__}, not a function")
    return found  # type: ignore[no-any-return]


def send(alert: Alert) -> None:
    """Log the alert, then hand it to the configured callback (if any). Never raises."""
    log.error("%s", alert.message)
    path = configured_callback()
    if not path:
        return
    try:
        _callback(path)(alert)
    except Exception:
        log.exception("recovery alert_callback %s failed on a %s alert of %s", path, alert.kind, alert.dag_id)
