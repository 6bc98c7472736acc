"""Incidents and MTTR of one DAG from its ledger records, without Airflow."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recovery_provider.cli.main import app
from recovery_provider.evidence.collect import build_record
from recovery_provider.evidence.html import runs_html
from recovery_provider.evidence.incidents import build_mttr, incidents_of
from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import RunRecord
from recovery_provider.evidence.report import build_trend

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def run(run_id: str, queued: float, end: float, state: str = "success", incident: str | None = None,
        dry_run: bool = False) -> RunRecord:
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    outcome = "ok" if state == "success" else "failed"
    return build_record(
        dag_id="orders_dr", run_id=run_id, run_type="manual", state=state, queued_at=at(queued), start=at(queued + 1),
        end=at(end), task_rows=[], upstream={}, approvals=[], step_results=[],
        evidence={"result": {"outcome": outcome}, "dry_run": dry_run},
        conf={"incident": incident} if incident else {}, now=at(end),
    )


def history() -> list[RunRecord]:
    day = 86400
    return [
        run("drill-1", 0, 300, dry_run=True),  # a drill: 5 m
        # INC-1: the first run failed, a second run (same incident param) recovered 15 m after the first queue
        run("inc1-a", day, day + 120, state="failed", incident="INC-1"),
        run("inc1-b", day + 600, day + 900, incident="INC-1"),
        run("inc2", 2 * day, 2 * day + 240),  # no param: an incident of its own, 4 m
        run("inc3", 3 * day, 3 * day + 60, state="failed", incident="INC-3"),  # not recovered yet
    ]


def test_runs_sharing_an_incident_param_are_one_incident_resolved_by_its_first_success() -> None:
    incidents = incidents_of(history())
    assert [(i.key, i.runs, i.resolved, i.seconds) for i in incidents] == [
        ("drill-1", ["drill-1"], True, 300.0),
        ("INC-1", ["inc1-a", "inc1-b"], True, 900.0),
        ("inc2", ["inc2"], True, 240.0),
        ("INC-3", ["inc3"], False, 60.0),
    ]
    assert incidents[0].drill and not incidents[1].drill and incidents[1].labelled and not incidents[2].labelled


def test_mttr_is_the_mean_over_resolved_incidents_and_its_direction_compares_the_newest() -> None:
    mttr = build_mttr(history())
    assert (mttr.resolved, mttr.unresolved) == (3, 1)
    assert mttr.mttr_seconds == pytest.approx((300 + 900 + 240) / 3)
    # few incidents: the newest resolved (4 m) against those before (5 m, 15 m): improving
    assert (mttr.recent_seconds, mttr.previous_seconds, mttr.direction) == (240.0, 600.0, "improving")
    worse = build_mttr([*history(), run("inc4", 5 * 86400, 5 * 86400 + 3000)])
    assert worse.direction == "worsening"
    many = [run(f"r{i}", i * 1000, i * 1000 + 100 + (50 if i >= 5 else 0)) for i in range(10)]
    assert build_mttr(many).recent_seconds == 150.0 and build_mttr(many).previous_seconds == 100.0
    assert build_mttr([run("only", 0, 10)]).direction == "unknown"
    assert build_mttr([]).mttr_seconds is None


def test_mttr_in_the_trend_the_cli_and_the_runs_page(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    for record in history():
        ledger.write(record)
    trend = build_trend("orders_dr", ledger.runs("orders_dr"))
    assert trend.mttr is not None and trend.mttr.resolved == 3
    page = runs_html([trend])
    assert 'id="mttr-orders_dr">MTTR 8m' in page and "improving" in page and "1 unresolved" in page
    assert page.count('class="incident"') == 4
    out = CliRunner().invoke(app, ["report", "orders_dr", "--ledger", str(tmp_path)], env={"COLUMNS": "160"})
    assert out.exit_code == 0, out.output
    assert "MTTR 8m over 3 resolved incident(s), 1 unresolved; recent 4m against 10m before: improving" in out.output
    assert "INC-1" in out.output and "unresolved after 1m" in out.output
