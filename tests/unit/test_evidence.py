"""The run evidence without Airflow: records, reports, the ledger, the HTML pages and `recovery report`."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recovery_provider.cli.main import app
from recovery_provider.evidence.collect import (
    build_record,
    mapped_feeds,
    pitr_measures,
    recovery_points,
    target_labels,
    task_kind,
)
from recovery_provider.evidence.html import report_html, runs_html
from recovery_provider.evidence.ledger import Ledger, LedgerError
from recovery_provider.evidence.record import ApprovalRecord, PlanEvidence, RunRecord, TaskRecord
from recovery_provider.evidence.report import build_report, build_trend, critical_path, judge
from recovery_provider.exceptions import RecoveryError
from recovery_provider.plan.layout import build_layout, layout_record
from tests.conftest import plan_of

pytestmark = pytest.mark.unit
UTC = dt.timezone.utc
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RUN_ID = "manual__2025-03-01T12:00:00+00:00"
SECRET = "hunter2-s3cr3t"


def at(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else T0 + dt.timedelta(seconds=seconds)


def row(task_id: str, start: float | None, end: float | None, state: str | None = "success", **kw: Any) -> dict[str, Any]:
    """A task-instance row as collect() reads it, times in seconds from T0."""
    return {"task_id": task_id, "map_index": -1, "rendered_map_index": None, "state": state,
            "start_date": at(start), "end_date": at(end),
            "duration": end - start if start is not None and end is not None else None,
            "try_number": 1, "operator": "PythonOperator", **kw}


def plan(rto: float | None = 120.0, **kw: Any) -> dict[str, Any]:
    return {"planned_seconds": 90.0, "scenario": "worst", "critical_path": ["p.a", "p.c"],
            "phase_windows": {"p": [0.0, 60.0], "q": [60.0, 90.0]}, "rto_seconds": rto, "rpo_seconds": 3600.0, **kw}


def record(rows: Iterable[Mapping[str, Any]] = (), *, run_id: str = RUN_ID, start: float | None = 0.0,
           end: float | None = 100.0, upstream: Mapping[str, list[str]] | None = None,
           evidence: Mapping[str, Any] | None = None, conf: Mapping[str, Any] | None = None,
           step_results: Iterable[Any] = (), approvals: Iterable[ApprovalRecord] = (), dag_id: str = "dr",
           layout: Mapping[str, list[str | None]] | None = None) -> RunRecord:
    return build_record(dag_id=dag_id, run_id=run_id, run_type="manual", state="success", queued_at=at(start),
                        start=at(start), end=at(end), task_rows=list(rows), upstream=upstream or {},
                        approvals=list(approvals), step_results=list(step_results), evidence=evidence, conf=conf,
                        now=T0 + dt.timedelta(days=1), layout=layout)


def task(task_id: str, start: float, end: float | None, upstream: Iterable[str] = (), map_index: int = -1,
         target: str | None = None) -> TaskRecord:
    return TaskRecord(task_id=task_id, map_index=map_index, target=target, start=at(start), end=at(end),
                      upstream=list(upstream))


LAYOUT_SPEC = """
recovery: kinds
defaults: {timeout: 1m}
params: {hosts: {type: array, default: [a, b]}}
phases:
  - id: after
    steps:
      - {id: fetch_targets, uses: empty}
      - {id: choose, uses: empty}
      - {id: x_checkpoint, uses: empty, skip_if: {uses: empty}, compensate: {uses: empty}}
  - id: p
    waves: {over: {param: hosts}, max_targets: 2, size: 1, health_check: {uses: empty}}  # a resolver and slices
    steps: [{id: step, uses: empty, with: {}}]
  - id: pick
    branch: [{when: "params.dry_run", then: q}, {otherwise: ask}]
  - {id: q, for_each: {over: [a]}, steps: [{id: targets, uses: empty, with: {}}]}
  - {id: ask, approval: {subject: "Go?"}}
finally:
  - {id: notify_team, uses: empty}
"""


@pytest.fixture(scope="module")
def layout() -> dict[str, list[str | None]]:
    return layout_record(build_layout(plan_of(LAYOUT_SPEC)))


@pytest.mark.parametrize(("task_id", "expected"), [
    ("preflight", (None, "control")),
    ("outcome", (None, "control")),
    ("notify_team", (None, "finally")),
    ("after.gate", ("after", "gate")),
    ("after.x_checkpoint__undo", ("after", "undo")),
    ("after.x_checkpoint__probe", ("after", "probe")),
    # steps named like the tasks the DAG factory adds are steps
    ("after.fetch_targets", ("after", "step")),
    ("after.choose", ("after", "step")),
    ("after.x_checkpoint", ("after", "step")),
    ("q.each.targets", ("q", "step")),
    ("q.targets", ("q", "control")),
    ("p.wave1_targets", ("p", "control")),
    ("p.wave1_checkpoint", ("p", "control")),
    ("p.wave1_health", ("p", "step")),
    ("pick.choose", ("pick", "control")),
    ("ask.approve", ("ask", "approval")),
    ("p.wave2.step", ("p", "step")),
])
def test_task_kind_from_the_layout(layout: dict[str, list[str | None]], task_id: str,
                                   expected: tuple[str | None, str]) -> None:
    assert task_kind(task_id, layout) == expected


def test_without_a_layout_only_reserved_ids_are_known() -> None:
    assert task_kind("p.fetch_targets", None) == ("p", "step")
    assert task_kind("p.targets", None) == ("p", "step")  # unknown: never hidden as control
    assert (task_kind("p.gate", None), task_kind("p.s__undo", None)) == (("p", "gate"), ("p", "undo"))
    assert (task_kind("outcome", None), task_kind("cleanup", None)) == ((None, "control"), (None, "finally"))


def test_a_failed_step_named_like_a_control_task_is_reported(layout: dict[str, list[str | None]]) -> None:
    rows = [row("after.fetch_targets", 0, 1, state="failed"), row("after.choose", 1, 2, state="upstream_failed"),
            row("after.gate", 2, 3, state="failed"), row("q.targets", 3, 4, state="failed")]
    record = build_record(
        dag_id="kinds", run_id="r", run_type="manual", state="failed", queued_at=T0, start=T0, end=at(4),
        task_rows=rows, upstream={}, approvals=[], step_results=[], layout=layout, evidence=None, conf=None, now=T0,
    )
    assert [t.kind for t in record.tasks] == ["step", "step", "gate", "control"]
    assert build_report(record).failures == ["after.fetch_targets: failed", "after.choose: upstream_failed"]


def test_recovery_points_read_only_finished_at_timestamps() -> None:
    values = [
        {"finished_at": "2025-03-01T10:00:00+00:00", "path": "/backups/x"},
        {"databases": {"a": {"finished_at": "2025-03-01T09:00:00+02:00"}, "b": {"finished_at": "2025-03-01T08:00:00"}}},
        {"freshness": {"finished_at": "2025-03-01T11:30:00Z"}},
        "2025-03-01T01:00:00+00:00", None, ["finished_at"], 42,
        {"finished_at": "yesterday"}, {"finished_at": 1740000000}, {"databases": {"c": {"finished_at": "soon"}}},
    ]
    assert sorted(recovery_points(values)) == [
        dt.datetime(2025, 3, 1, 7, 0, tzinfo=UTC),  # 09:00+02:00
        dt.datetime(2025, 3, 1, 8, 0, tzinfo=UTC),  # naive: taken as UTC
        dt.datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
        dt.datetime(2025, 3, 1, 11, 30, tzinfo=UTC),
    ]
    assert all(p.tzinfo is not None for p in recovery_points(values))


def test_build_record_times_verdict_and_plan() -> None:
    rows = [row("preflight", 0, 5), row("p.restore", 5, 60),
            row("p.restore", 5, 70, map_index=0, rendered_map_index="db1"),
            row("p.restore", 5, 80, map_index=-1, rendered_map_index="ignored")]
    rec = record(rows, end=95.5, upstream={"p.restore": ["preflight", "p.a_targets", "p.0"]},
                 step_results=[{"finished_at": (T0 - dt.timedelta(hours=2)).isoformat()},
                               {"finished_at": (T0 - dt.timedelta(minutes=5)).isoformat()}],
                 evidence={"result": {"outcome": "partial", "failed_phases": ["q"], "partial_phases": ["p"]},
                           "plan": plan(rto=600.0), "dry_run": True}, conf={"dry_run": False})
    assert rec.achieved_seconds == 95.5
    assert rec.recovery_point == T0 - dt.timedelta(hours=2)  # the oldest
    assert rec.data_age_seconds == 7200.0
    assert (rec.outcome, rec.failed_phases, rec.partial_phases, rec.dry_run) == ("partial", ["q"], ["p"], True)
    assert isinstance(rec.plan, PlanEvidence)
    assert (rec.rto_seconds, rec.rpo_seconds) == (600.0, 3600.0)
    assert rec.plan.phase_windows["p"] == (0.0, 60.0)
    assert [(t.key, t.target, t.phase, t.kind) for t in rec.tasks] == [
        ("preflight", None, None, "control"), ("p.restore", None, "p", "step"),
        ("p.restore[0]", "db1", "p", "step"), ("p.restore", None, "p", "step")]
    assert rec.tasks[1].upstream == ["p.0", "p.a_targets", "preflight"]
    assert rec.tasks[0].upstream == []


def test_build_record_defaults_and_fresh_recovery_point() -> None:
    rec = record([row("p.s", 0, 10)], step_results=[{"finished_at": at(30).isoformat()}], conf={"dry_run": True})
    assert rec.data_age_seconds == 0.0  # the backup is newer than the run start: clamped
    assert rec.dry_run is True  # no evidence: conf decides
    assert (rec.outcome, rec.plan, rec.rto_seconds) == (None, None, None)
    assert record(evidence={"dry_run": False}, conf={"dry_run": True}).dry_run is False
    assert record(end=None).achieved_seconds is None
    assert record().data_age_seconds is None and record().recovery_point is None


def test_a_point_in_time_restore_s_rpo_and_restore_time_reach_record_report_and_page() -> None:
    restored = {"achieved_rpo_seconds": 1.25, "restore_seconds": 7.5, "finished_at": at(-2).isoformat(),
                "password": SECRET}
    proven = {"achieved_rpo_seconds": 1.25, "target_time": at(-1).isoformat()}
    assert pitr_measures([restored, proven, {"achieved_rpo_seconds": True}, "x", None, {"restore_seconds": "9"}]) == {
        "achieved_rpo_seconds": 1.25, "restore_seconds": 7.5}
    assert pitr_measures([{"achieved_rpo_seconds": 2.0}, {"achieved_rpo_seconds": 9.0}]) == {"achieved_rpo_seconds": 9.0}
    rec = record([row("restore.restore_to_t", 0, 20)], step_results=iter([restored, proven]),
                 evidence={"plan": plan(rpo_seconds=300.0)})
    assert (rec.achieved_rpo_seconds, rec.restore_seconds, rec.data_age_seconds) == (1.25, 7.5, 2.0)
    report = build_report(rec)
    assert report.achieved_rpo is not None and report.achieved_rpo.verdict == "met"
    assert (report.achieved_rpo.target_seconds, report.restore_seconds) == (300.0, 7.5)
    missed = build_report(record(step_results=[{"achieved_rpo_seconds": 301.0}], evidence={"plan": plan(rpo_seconds=300.0)}))
    assert missed.achieved_rpo is not None and missed.achieved_rpo.verdict == "missed"
    page = report_html(report)
    assert 'id="achieved-rpo">1s<' in page and 'id="achieved-rpo-verdict">RPO met<' in page
    assert 'id="restore-seconds">8s<' in page and SECRET not in page + rec.model_dump_json()
    plain = build_report(record())
    assert plain.achieved_rpo is None and plain.restore_seconds is None
    assert "achieved-rpo" not in report_html(plain)
    from rich.console import Console

    from recovery_provider.cli.evidence_output import print_report

    console = Console(width=120, record=True)
    print_report(console, report)
    text = console.export_text()
    assert re.search(r"RPO \(point in time: T - last restored commit\)\s+5m\s+1s\s+met", text), text
    assert re.search(r"restore \(pgBackRest\)\s+8s", text), text


def test_critical_path_follows_the_upstream_that_finished_last() -> None:
    diamond = [task("a", 0, 10), task("b", 10, 20, ["a"]), task("c", 10, 30, ["a"]), task("d", 30, 40, ["b", "c"])]
    assert [t.key for t in critical_path(diamond)] == ["a", "c", "d"]
    mapped = [task("a", 0, 10), task("m", 10, 20, ["a"], 0), task("m", 10, 35, ["a"], 1), task("m", 10, 25, ["a"], 2),
              task("d", 35, 40, ["m"]), task("unrelated", 0, 15)]
    assert [t.key for t in critical_path(mapped)] == ["a", "m[1]", "d"]
    assert critical_path([task("a", 0, None), task("b", 5, None, ["a"])]) == []
    assert critical_path([]) == []


@pytest.mark.parametrize(("target", "achieved", "verdict"), [
    (120.0, 100.0, "met"), (100.0, 100.0, "met"), (90.0, 100.0, "missed"), (None, 100.0, "no objective"), (90.0, None, "unknown"),
])
def test_judge(target: float | None, achieved: float | None, verdict: str) -> None:
    assert judge(target, achieved) == verdict


@pytest.mark.parametrize(("evidence", "end", "verdict"), [
    ({"plan": plan(rto=120.0)}, 100.0, "met"), ({"plan": plan(rto=90.0)}, 100.0, "missed"),
    (None, 100.0, "no objective"), ({"plan": plan(rto=None)}, 100.0, "no objective"), ({"plan": plan()}, None, "unknown"),
])
def test_report_rto_verdict(evidence: dict[str, Any] | None, end: float | None, verdict: str) -> None:
    report = build_report(record([row("p.a", 0, 10)], evidence=evidence, end=end))
    assert report.rto.verdict == verdict
    assert report.rto.achieved_seconds == end


def diamond_record(**kw: Any) -> RunRecord:
    rows = [
        row("preflight", 0, 2),
        row("q.late", 62, 90), row("q.gate", 90, 91),
        row("p.a", 2, 10, try_number=2), row("p.b", 10, 20, state="failed", try_number=3),
        row("p.c", 10, 55, map_index=0, rendered_map_index="db1"),
        row("p.c", 10, 58, state="upstream_failed", map_index=1, rendered_map_index="db2"),
        row("p.gate", 58, 60, state="failed", try_number=2), row("p.wave1_targets", 2, 3, state="failed"),
        row("p.b__undo", 20, 25), row("p.a__undo", None, None, state="skipped"), row("p.c__undo", None, None, state=None),
        row("p.never", None, None, state=None),
        row("outcome", 91, 92),
    ]
    upstream = {"p.a": ["preflight"], "p.b": ["p.a"], "p.c": ["p.a"], "p.gate": ["p.b", "p.c"], "q.late": ["p.gate"],
                "q.gate": ["q.late"], "outcome": ["q.gate", "p.gate"]}
    layout = {"p.wave1_targets": ["wave_slice", "p", None, None]}
    return record(rows, upstream=upstream, end=92, evidence={"plan": plan()}, layout=layout, **kw)


def test_report_failures_compensations_and_timeline() -> None:
    report = build_report(diamond_record())
    assert report.failures == ["p.b: failed after 3 tries", "p.c[db2]: upstream_failed"]
    assert report.retried == ["p.a: 2 tries (success)", "p.b: 3 tries (failed)", "p.gate: 2 tries (failed)"]
    assert report.compensations == ["p.b__undo: success"]
    assert report.critical_path == ["preflight", "p.a", "p.c[db2]", "p.gate", "q.late", "q.gate", "outcome"]
    starts = [b.offset for b in report.tasks[:-3]]
    assert starts == sorted(starts) and starts[0] == 0.0 and starts[-1] == 91.0
    assert [b.label for b in report.tasks[-3:]] == ["p.a__undo", "p.c__undo", "p.never"]  # never started: last
    assert {b.label for b in report.tasks if b.critical} == set(report.critical_path)
    phases = {b.label: b for b in report.phases}
    assert [b.label for b in report.phases] == ["p", "q"]
    assert (phases["p"].offset, phases["p"].length, phases["p"].state) == (2.0, 58.0, "failed")
    assert phases["p"].planned == (0.0, 60.0) and phases["q"].planned == (60.0, 90.0)
    assert (phases["q"].offset, phases["q"].length) == (62.0, 29.0)
    assert report.planned_critical_path == ["p.a", "p.c"] and report.planned_seconds == 90.0


def trend_records() -> list[RunRecord]:
    return [record(run_id="r2", start=1000, end=1120, evidence={"plan": plan(rto=100.0)}),
            record(run_id="r1", start=0, end=90, evidence={"plan": plan(rto=100.0)}),
            record(run_id="r3", start=2000, end=2080, evidence={"plan": plan(rto=100.0)}),
            record(run_id="r0", start=None, end=None)]


def test_trend_oldest_first_with_counts_and_change() -> None:
    trend = build_trend("dr", trend_records())
    assert [p.run_id for p in trend.points] == ["r1", "r2", "r3", "r0"]  # r0 never started: recorded_at sorts it last
    assert [p.rto_verdict for p in trend.points] == ["met", "missed", "met", "no objective"]
    assert (trend.met, trend.missed, trend.rto_seconds) == (2, 1, 100.0)
    assert (trend.best_seconds, trend.worst_seconds, trend.latest_seconds) == (80.0, 120.0, 80.0)
    assert trend.change_seconds == -40.0
    single = build_trend("dr", trend_records()[:1])
    assert (single.change_seconds, single.latest_seconds) == (None, 120.0)


def test_no_secret_from_step_results_reaches_record_report_or_page() -> None:
    results = [
        {"finished_at": "2025-03-01T11:00:00+00:00", "password": SECRET, "conn_uri": f"postgresql://u:{SECRET}@db/x"},
        {"databases": {"a": {"finished_at": "2025-03-01T10:00:00+00:00", "password": SECRET,
                             "conn_uri": f"postgresql://u:{SECRET}@db/a"}}},
    ]
    rec = record([row("p.restore", 0, 50)], step_results=results, evidence={"plan": plan()})
    assert rec.data_age_seconds == 7200.0  # the timestamps next to the secrets were read
    report = build_report(rec)
    for text in (rec.model_dump_json(), report.model_dump_json(), report_html(report)):
        assert SECRET not in text


def test_ledger_round_trip_with_unsafe_run_ids(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    odd = "manual__2025-03-01T12:00:00+00:00/../x"
    first, second = record(run_id=odd), record(run_id="r2", start=500, end=600, dag_id="dr")
    where = Path(ledger.write(first))
    ledger.write(second)
    ledger.write(record(run_id="other", dag_id="db:restore"))
    assert where.parent == tmp_path / "dr" and "/" not in where.name and ":" not in where.name and "+" not in where.name
    assert ledger.read("dr", odd) == first
    assert ledger.dag_ids() == ["db:restore", "dr"]
    assert [r.run_id for r in ledger.runs("dr")] == ["r2", odd]  # newest first
    assert [r.run_id for r in ledger.runs("dr", limit=1)] == ["r2"]
    (tmp_path / "dr" / "junk.json").write_text('{"hello": "world"}')
    (tmp_path / "dr" / "broken.json").write_text("{not json")
    (tmp_path / "dr" / "r9.json.partial").write_text(record(run_id="r9").model_dump_json())
    assert [r.run_id for r in ledger.runs("dr")] == ["r2", odd]
    with pytest.raises(LedgerError, match="not a run record"):
        ledger.read("dr", "junk")


def test_ledger_missing_run_and_missing_folder(tmp_path: Path) -> None:
    ledger = Ledger(f"file://{tmp_path / 'nothing-yet'}")
    assert ledger.dag_ids() == [] and ledger.runs("dr") == []
    with pytest.raises(LedgerError) as raised:
        ledger.read("dr", "r1")
    message = str(raised.value)
    assert "'dr'" in message and "'r1'" in message and "`recovery report dr`" in message


def test_report_page_shows_verdict_timeline_path_and_escapes() -> None:
    hostile = "<script>alert('x')</script> restore?"
    approval = ApprovalRecord(task_id="p.ask", subject=hostile, options=["yes", "no"], chosen=["yes"],
                              responded_by="<b>ops</b>", responded_at=at(5))
    page = report_html(build_report(diamond_record(approvals=[approval])))
    assert 'id="rto-verdict">RTO met<' in page
    svg = page[page.index('<svg id="timeline"'):page.index("</svg>")]
    for label in ("p.a", "p.c[db1]", "p.c[db2]", "q.late", "outcome", ">p<"):
        assert label in svg
    path = re.search(r'<span id="critical-path">(.*?)</span>', page)
    assert path and html.unescape(path.group(1)) == "preflight -> p.a -> p.c[db2] -> p.gate -> q.late -> q.gate -> outcome"
    assert "<script>" not in page and "<b>ops</b>" not in page
    assert "&lt;script&gt;" in page and "&lt;b&gt;ops&lt;/b&gt;" in page
    assert "p.b: failed after 3 tries" in page
    missed = report_html(build_report(record([row("p.a", 0, 10)], evidence={"plan": plan(rto=50.0)})))
    assert 'id="rto-verdict">RTO missed<' in missed


def test_runs_page_links_percent_encode_run_ids() -> None:
    runs = [record(run_id=RUN_ID), record(run_id="drill/2025 #1", start=300, end=350)]
    page = runs_html([build_trend("db restore", runs)], base="/recovery")
    assert 'href="/recovery/dags/db%20restore/runs/manual__2025-03-01T12%3A00%3A00%2B00%3A00"' in page
    assert 'href="/recovery/dags/db%20restore/runs/drill%2F2025%20%231"' in page
    assert "No recorded runs yet" in runs_html([])


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    ledger = Ledger(str(tmp_path / "ledger"))
    for rec in trend_records()[:3]:
        ledger.write(rec)
    ledger.write(diamond_record())
    return tmp_path / "ledger"


def test_cli_lists_runs_with_trend(ledger_dir: Path) -> None:
    result = cli("report", "dr", "--ledger", str(ledger_dir))
    assert result.exit_code == 0, result.output
    assert "Recovery runs of dr" in result.output and "met 3, missed 1" in result.output
    for run_id in ("r1", "r2", "r3", RUN_ID):
        assert run_id in result.output
    data = json.loads(cli("report", "dr", "--ledger", str(ledger_dir), "--json").output)
    assert [p["run_id"] for p in data["points"]] == [RUN_ID, "r1", "r2", "r3"]


def test_cli_one_run_as_text_json_and_html(ledger_dir: Path, tmp_path: Path) -> None:
    result = cli("report", "dr", RUN_ID, "--ledger", str(ledger_dir))
    assert result.exit_code == 0, result.output
    assert "Recovery report dr" in result.output
    assert "critical path: preflight -> p.a -> p.c[db2]" in result.output
    assert "p.b: failed after 3 tries" in result.output
    data = json.loads(cli("report", "dr", "r2", "--ledger", str(ledger_dir), "--json").output)
    assert (data["rto"]["verdict"], data["rto"]["achieved_seconds"], data["rto"]["target_seconds"]) == ("missed", 120.0, 100.0)
    page = tmp_path / "report.html"
    result = cli("report", "dr", "r1", "--ledger", str(ledger_dir), "--html", str(page))
    assert result.exit_code == 0, result.output
    assert 'id="rto-verdict">RTO met<' in page.read_text()


def test_cli_unknown_dag_or_run_is_a_clear_error(ledger_dir: Path) -> None:
    result = cli("report", "nope", "--ledger", str(ledger_dir))
    assert isinstance(result.exception, RecoveryError)
    assert "no recorded runs of 'nope'" in str(result.exception) and "DAGs recorded: dr" in str(result.exception)
    result = cli("report", "dr", "r404", "--ledger", str(ledger_dir))
    assert isinstance(result.exception, LedgerError) and "recovery report dr" in str(result.exception)
    recovery = Path(sys.executable).with_name("recovery")
    done = subprocess.run([str(recovery), "report", "nope", "--ledger", str(ledger_dir)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "error:" in done.stderr and "nope" in done.stderr and "Traceback" not in done.stderr


def test_fan_out_targets_are_labelled_from_their_resolvers() -> None:
    feeds = mapped_feeds({
        "restore.targets": ["resolver", "restore", None, None],
        "restore.each.load": ["step", "restore", "each", "restore.targets"],
        "restore.undo.load__undo": ["undo", "restore", "undo", "restore.targets"],
        "restart.wave2.bounce": ["step", "restart", "wave2", "restart.wave2_targets"],
        "other.each.step": ["step", "other", "each", "other.targets"],
    })
    labels = target_labels({
        "restore.targets": [{"target": "orders", "load__cmd": "x"}, {"target": "billing"}],
        "restart.wave2_targets": [{"target": {"host": "app-5", "port": 8080}}],
        "other.targets": "not a list",
    }, feeds)
    assert labels == {"restore.each.": ["orders", "billing"], "restore.undo.": ["orders", "billing"],
                      "restart.wave2.": ['{"host": "app-5", "port": 8080}']}
    # literal targets (no resolver) come with the layout record
    literal = {"w.wave1.bounce": ["step", "w", "wave1", None, ["a", {"host": "b"}]], "w.gate": ["gate", "w", None, None]}
    assert target_labels({}, mapped_feeds(literal), literal) == {"w.wave1.": ["a", '{"host": "b"}']}
    rows = [
        row("restore.each.load", 0, 1, map_index=1),
        row("restore.each.load", 0, 1, map_index=5),  # beyond the list: no label
        row("restart.wave2.bounce", 0, 1, map_index=0),
        row("other.each.step", 0, 1, map_index=0, rendered_map_index="named-by-airflow"),
    ]
    record = build_record(
        dag_id="d", run_id="r", run_type="manual", state="success", queued_at=T0, start=T0, end=at(2),
        task_rows=rows, upstream={}, approvals=[], step_results=[], labels=labels, evidence=None, conf=None, now=T0,
    )
    assert [t.target for t in record.tasks] == ["billing", None, '{"host": "app-5", "port": 8080}', "named-by-airflow"]
    assert "restore.each.load[billing]" in [b.label for b in build_report(record).tasks]


def test_critical_path_passes_through_skipped_tasks() -> None:
    rows = [
        row("p.a", 0, 5, upstream=[]),
        row("p.b", 0, 8, upstream=[]),
        row("p.b__undo", 9, 9, state="skipped", upstream=["p.b"]),  # compensation not needed
        row("outcome", 10, 11, upstream=["p.b__undo", "p.a"]),
    ]
    tasks = [TaskRecord(task_id=r["task_id"], state=r["state"], start=r["start_date"], end=r["end_date"],
                        upstream=r["upstream"]) for r in rows]
    assert [t.task_id for t in critical_path(tasks)] == ["p.b", "outcome"]
