"""Attempts of a run without Airflow: a re-run after a clear adds to the record, never overwrites it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from recovery_provider.evidence.attempts import merge_attempts, not_run_phases
from recovery_provider.evidence.collect import build_record, task_records
from recovery_provider.evidence.html import axis, report_html
from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import ClearRecord, RunRecord
from recovery_provider.evidence.report import build_report, build_trend

pytestmark = pytest.mark.unit
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UPSTREAM = {"fan.each.work": ["fan.targets"], "fan.gate": ["fan.each.work"], "after_fan.step": ["fan.gate"],
            "after_fan.gate": ["after_fan.step"], "outcome": ["after_fan.gate"]}
LAYOUT = {"fan.targets": ["resolver", "fan", None, None], "fan.each.work": ["step", "fan", "each", "fan.targets"],
          "fan.gate": ["gate", "fan", None, None], "after_fan.step": ["step", "after_fan", None, None],
          "after_fan.gate": ["gate", "after_fan", None, None], "outcome": ["outcome", None, None, None]}
PLAN = {"planned_seconds": 12.0, "scenario": "only", "phase_windows": {"fan": [0.0, 8.0], "after_fan": [8.0, 12.0]},
        "rto_seconds": 900.0, "rpo_seconds": None}


def at(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else T0 + dt.timedelta(seconds=seconds)


def ti(task_id: str, start: float | None, end: float | None, state: str, tries: int = 1, map_index: int = -1) -> dict[str, Any]:
    return {"task_id": task_id, "map_index": map_index, "state": state, "start_date": at(start), "end_date": at(end),
            "try_number": tries, "rendered_map_index": None}


def ended(rows: Iterable[Mapping[str, Any]], *, state: str, queued: float, start: float, end: float,
          clear_number: int = 0, result: Mapping[str, Any] | None = None) -> RunRecord:
    """The run as the listener's collect() reads it when it ends."""
    return build_record(
        dag_id="fan_dr", run_id="incident-7", run_type="manual", state=state, queued_at=at(queued), start=at(start),
        end=at(end), task_rows=list(rows), upstream=UPSTREAM, approvals=[], step_results=[], layout=LAYOUT,
        evidence={"result": result or {}, "plan": PLAN}, conf=None, now=at(end), clear_number=clear_number,
    )


# The run: fan (tolerate 1) lost two of three targets, so it failed and after_fan never ran.
FIRST = [
    ti("fan.targets", 1, 2, "success"), ti("fan.each.work", 2, 4, "success", map_index=0),
    ti("fan.each.work", 2, 5, "failed", map_index=1), ti("fan.each.work", 2, 5, "failed", map_index=2),
    ti("fan.gate", 5, 6, "failed"), ti("after_fan.step", None, None, "upstream_failed", tries=0),
    ti("after_fan.gate", 6, 7, "failed"), ti("outcome", 7, 8, "failed"),
]
# The cause was fixed and only the failed task instances cleared at +59 s: Airflow re-ran them.
SECOND = [
    *FIRST[:2],
    ti("fan.each.work", 62, 64, "success", tries=2, map_index=1), ti("fan.each.work", 62, 63, "success", tries=2, map_index=2),
    ti("fan.gate", 64, 65, "success", tries=2), ti("after_fan.step", 65, 66, "success"),
    ti("after_fan.gate", 66, 67, "success", tries=2), ti("outcome", 67, 68, "success", tries=2),
]
CLEARS = [ClearRecord(by="oncall-anna", at=at(59.5), event="post_clear_task_instances"),
          ClearRecord(by="someone-else", at=at(-300), event="post_clear_task_instances")]


def first_attempt() -> RunRecord:
    # an outcome task of an older release still named after_fan: the record names only what failed
    current = ended(FIRST, state="failed", queued=0, start=1, end=8,
                    result={"outcome": "failed", "failed_phases": ["after_fan", "fan"], "partial_phases": []})
    return merge_attempts(None, current)


def recovered() -> RunRecord:
    second = ended(SECOND, state="success", queued=60, start=61, end=68, clear_number=1,
                   result={"outcome": "ok", "failed_phases": [], "partial_phases": []})
    return merge_attempts(first_attempt(), second, clears=CLEARS)


def test_a_phase_that_never_ran_is_not_run_not_failed() -> None:
    record = first_attempt()
    assert (record.failed_phases, record.not_run_phases) == (["fan"], ["after_fan"])
    assert not_run_phases(record.tasks) == ["after_fan"]
    [attempt] = record.attempts
    assert (attempt.number, attempt.state, len(attempt.tasks)) == (1, "failed", len(FIRST))
    assert record.achieved_seconds == 8.0  # from queued, not from start
    report = build_report(record)
    phases = {b.label: b.state for b in report.phases}
    assert phases == {"fan": "failed", "after_fan": "not_run"}
    page = report_html(report)
    assert 'id="not-run"' in page and "after_fan" in page[page.index('id="not-run"'):][:120]
    assert 'id="attempts"' not in page  # one attempt: no attempts table


def test_a_re_run_after_a_clear_is_a_second_attempt_and_the_first_is_kept() -> None:
    record = recovered()
    assert [a.number for a in record.attempts] == [1, 2]
    first, second = record.attempts
    assert (first.state, first.failed_phases, first.not_run_phases) == ("failed", ["fan"], ["after_fan"])
    assert len(first.tasks) == len(FIRST)  # as it ended, not as the re-run left it
    # the re-run ran exactly what was cleared; the targets resolved and work[0] kept attempt 1's try
    assert sorted(t.key for t in second.tasks) == [
        "after_fan.gate", "after_fan.step", "fan.each.work[1]", "fan.each.work[2]", "fan.gate", "outcome"]
    assert second.cleared is not None and second.cleared.by == "oncall-anna"
    # the recovery took from the first queued time to the final end, not the re-run's 8 s
    assert record.achieved_seconds == 68.0
    assert (record.state, record.failed_phases, record.not_run_phases) == ("success", [], [])
    assert {t.key: t.state for t in record.tasks}["fan.each.work[1]"] == "success"


def test_the_same_attempt_ending_again_replaces_itself() -> None:
    record = recovered()
    again = merge_attempts(record, ended(SECOND, state="success", queued=60, start=61, end=68, clear_number=1),
                           clears=CLEARS)
    assert [a.number for a in again.attempts] == [1, 2] and again.achieved_seconds == 68.0
    assert again.attempts[0] == record.attempts[0]


def test_a_third_attempt_counts_from_the_very_first_queue() -> None:
    third_rows = [*SECOND[:-1], ti("outcome", 100, 101, "success", tries=3)]
    record = merge_attempts(recovered(), ended(third_rows, state="success", queued=99, start=99.5, end=101,
                                               clear_number=2), clears=CLEARS)
    assert [a.number for a in record.attempts] == [1, 2, 3]
    assert [t.key for t in record.attempts[2].tasks] == ["outcome"]
    assert record.achieved_seconds == 101.0


def test_a_record_from_before_attempts_loads_and_becomes_attempt_one(tmp_path: Path) -> None:
    old = json.loads(ended(FIRST, state="failed", queued=0, start=1, end=8).model_dump_json())
    for key in ("attempts", "not_run_phases", "clear_number"):
        del old[key]
    folder = tmp_path / "fan_dr"
    folder.mkdir()
    (folder / "incident-7.json").write_text(json.dumps(old))
    ledger = Ledger(str(tmp_path))
    previous = ledger.find("fan_dr", "incident-7")
    assert previous is not None and previous.attempts == [] and ledger.find("fan_dr", "other") is None
    assert len(build_report(previous).attempts) == 1  # shown as the one attempt it was
    second = ended(SECOND, state="success", queued=60, start=61, end=68, clear_number=1)
    record = merge_attempts(previous, second)
    assert [a.number for a in record.attempts] == [1, 2] and record.achieved_seconds == 68.0
    ledger.write(record)
    assert ledger.read("fan_dr", "incident-7") == record


def test_without_the_ledger_s_first_record_the_earlier_attempt_is_rebuilt_from_history() -> None:
    # task_instance_history: the tries the clear moved away (the failed ones)
    history = task_records([row for row in FIRST if row["state"] == "failed"], upstream=UPSTREAM, layout=LAYOUT)
    second = ended(SECOND, state="success", queued=60, start=61, end=68, clear_number=1)
    record = merge_attempts(None, second, history=history, clears=CLEARS)
    first, _ = record.attempts
    assert first.reconstructed and first.state == "failed" and first.failed_phases == ["fan"]
    assert first.start == at(1)  # fan.targets ran before the clear and was not re-run
    assert record.achieved_seconds == 67.0  # from the earliest start known: the queue time is lost


def test_report_puts_every_attempt_on_one_axis_and_says_what_was_re_run() -> None:
    report = build_report(recovered())
    assert [(a.number, a.offset, a.length) for a in report.attempts] == [(1, 0.0, 8.0), (2, 60.0, 8.0)]
    assert report.attempts[1].cleared_by == "oncall-anna"
    assert "fan.each.work[1]" in report.attempts[1].rerun and "fan.targets" not in report.attempts[1].rerun
    assert report.rto.achieved_seconds == 68.0
    earlier = {(b.label, b.state, b.attempt) for b in report.earlier_tasks}
    assert ("fan.each.work[1]", "failed", 1) in earlier and ("fan.targets", "success", 1) not in earlier
    fan = [(b.attempt, b.state, b.offset, b.length) for b in report.phases if b.label == "fan"]
    assert fan == [(1, "failed", 1.0, 5.0), (2, "success", 62.0, 3.0)]  # no bar spans both attempts
    assert next(b for b in report.phases if b.label == "fan" and b.attempt == 1).planned == (1.0, 9.0)
    page = report_html(report)
    assert 'id="recovered">RECOVERED on attempt 2' in page and "oncall-anna" in page
    assert page.count('class="attempt"') == 2 and 'data-attempt="1"' in page and 'data-attempt="2"' in page
    trend = build_trend("fan_dr", [recovered()])
    assert trend.points[0].achieved_seconds == 68.0 and trend.points[0].attempts == 2


def test_the_timeline_is_drawn_to_the_run_with_the_rto_off_scale_when_far() -> None:
    report = build_report(recovered())  # 68 s under a 15 m RTO
    scale = axis(report)
    assert scale.rto_off_scale and scale.rto_x is None
    assert 68 <= scale.span <= 68 * 1.1  # the run fills the width
    assert scale.x(68) > scale.x(0) + 600
    page = report_html(report)
    assert 'id="rto-off-scale"' in page and "RTO 15m" in page
    labels = [label for _, label in scale.ticks]
    assert labels[0] == "0" and len(labels) <= 9
    near = build_report(merge_attempts(None, ended(FIRST, state="failed", queued=0, start=1, end=8).model_copy(
        update={"plan": None})))
    assert axis(near).rto_x is None and not axis(near).rto_off_scale  # no objective: nothing drawn
    close = build_report(recovered().model_copy(update={"plan": recovered().plan.model_copy(  # type: ignore[union-attr]
        update={"rto_seconds": 75.0})}))
    assert axis(close).rto_x is not None and not axis(close).rto_off_scale
    assert 'id="rto-line"' in report_html(close)


def test_cli_report_shows_the_attempts_and_the_trend_counts_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recovery_provider.cli.main import app

    Ledger(str(tmp_path)).write(recovered())
    one = CliRunner().invoke(app, ["report", "fan_dr", "incident-7", "--ledger", str(tmp_path)], env={"COLUMNS": "160"})
    assert one.exit_code == 0, one.output
    assert "RECOVERED on attempt 2" in one.output and "oncall-anna" in one.output
    assert "after_fan (attempt 1)  not run" in one.output
    trend = CliRunner().invoke(app, ["report", "fan_dr", "--ledger", str(tmp_path), "--json"])
    assert trend.exit_code == 0, trend.output
    [point] = json.loads(trend.output)["points"]
    assert (point["attempts"], point["achieved_seconds"]) == (2, 68.0)
