"""Incidents and the mean time to recover (MTTR) of one recovery DAG, from its ledger records.

An incident is what one outage cost, however many runs it took: the runs of a DAG that carry the
same ``incident`` param (``{"incident": "INC-4711"}`` in the trigger form or conf) form one; a run
without it is an incident of its own, its re-runs after a clear included (they are attempts of the
run). An incident is resolved by its first successful run (outcome ok or partial); its time to
recover runs from its first run's first queued time to that run's end. Dry runs are drills.

Pure functions over records: nothing here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from statistics import fmean
from typing import Literal

from pydantic import BaseModel, ConfigDict

from recovery_provider.evidence.record import RunRecord

INCIDENT_PARAM = "incident"
RECENT = 5  # incidents the recent MTTR averages over
STEADY = 0.10  # a change of MTTR within 10 % is steady

Direction = Literal["improving", "worsening", "steady", "unknown"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Incident(_Model):
    key: str  # the incident param, or the run id of a run that stands alone
    labelled: bool  # grouped by the incident param
    runs: list[str]  # run ids, oldest first
    attempts: int  # attempts over all its runs (re-runs after a clear count)
    start: dt.datetime | None  # the first run's first queued time
    end: dt.datetime | None  # the end of the run that resolved it, else of its last run
    resolved: bool
    seconds: float | None  # time to recover (resolved), else time spent without recovering
    drill: bool  # dry runs only


class Mttr(_Model):
    incidents: list[Incident]  # oldest first
    resolved: int
    unresolved: int
    mttr_seconds: float | None  # mean time to recover over every resolved incident
    recent_seconds: float | None  # ... over the newest RECENT resolved ones
    previous_seconds: float | None  # ... over the RECENT resolved ones before those
    direction: Direction


def incident_key(record: RunRecord) -> tuple[str, bool]:
    return (record.incident, True) if record.incident else (record.run_id, False)


def _first_time(record: RunRecord) -> dt.datetime | None:
    return record.first_queued_at


def incidents_of(records: Sequence[RunRecord]) -> list[Incident]:
    """The incidents the records of one DAG belong to, oldest first."""
    groups: dict[tuple[str, bool], list[RunRecord]] = {}
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    for record in sorted(records, key=lambda r: (_first_time(r) or r.recorded_at, r.run_id)):
        groups.setdefault(incident_key(record), []).append(record)
    found = []
    for (key, labelled), runs in groups.items():
        start = min((t for t in map(_first_time, runs) if t), default=None)
        fixed = next((r for r in runs if r.state == "success" and r.outcome != "failed"), None)
        end = fixed.end if fixed else max((r.end for r in runs if r.end), default=None)
        found.append(Incident(
            key=key, labelled=labelled, runs=[r.run_id for r in runs],
            attempts=sum(max(len(r.attempts), 1) for r in runs), start=start, end=end, resolved=fixed is not None,
            seconds=(end - start).total_seconds() if start and end else None, drill=all(r.dry_run for r in runs),
        ))
    found.sort(key=lambda i: (i.start or far, i.key))
    return found


def _mean(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def build_mttr(records: Sequence[RunRecord], recent: int = RECENT) -> Mttr:
    """MTTR over the incidents of one DAG, and whether it is getting better: the newest ``recent``
    resolved incidents against the ``recent`` before them."""
    incidents = incidents_of(records)
    times = [i.seconds for i in incidents if i.resolved and i.seconds is not None]
    latest, before = times[-recent:], times[-2 * recent:-recent] if len(times) > recent else []
    if not before and len(times) >= 2:  # few incidents: the newest against the rest
        latest, before = times[-1:], times[:-1]
    now, then = _mean(latest), _mean(before)
    direction: Direction = "unknown"
    if now is not None and then:
        change = (now - then) / then
        direction = "steady" if abs(change) <= STEADY else "improving" if change < 0 else "worsening"
    return Mttr(
        incidents=incidents, resolved=sum(i.resolved for i in incidents),
        unresolved=sum(not i.resolved for i in incidents), mttr_seconds=_mean(times),
        recent_seconds=now, previous_seconds=then, direction=direction,
    )
