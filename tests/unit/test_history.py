"""The ledger's history without Airflow: folding runs in, usual durations, slow steps, circuit breakers."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from recovery_provider.alerts import CALLBACK_ENV
from recovery_provider.evidence.history import (
    SAMPLES_PER_RUN,
    History,
    breaker_note,
    breaker_state,
    fold,
    percentile,
    phase_results,
    record_run,
    reset,
    reset_breaker,
    slow_steps,
    usual_duration,
)
from recovery_provider.evidence.html import report_html
from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.record import BreakerRecord, PlanEvidence, RunRecord, TaskRecord
from recovery_provider.evidence.report import build_report
from recovery_provider.render.breakers import _watch
from recovery_provider.spec.alerts import HISTORY_RUNS, CircuitBreaker

pytestmark = pytest.mark.unit
UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLAN = PlanEvidence(planned_seconds=10, scenario="only", slow_step_factor=2.0, min_samples=4)
ALERTS_FIRED: list[Any] = []


def notify(alert: Any) -> None:
    """An alert_callback, as a team would configure one."""
    ALERTS_FIRED.append(alert)


def task(task_id: str, seconds: float | None, state: str = "success", map_index: int = -1, kind: str = "step",
         phase: str | None = None) -> TaskRecord:
    start = T0
    return TaskRecord(task_id=task_id, map_index=map_index, phase=phase or task_id.split(".")[0], kind=kind,
                      state=state, start=start, end=start + dt.timedelta(seconds=seconds or 0), duration=seconds)


def run(n: int, tasks: list[TaskRecord], *, failed: tuple[str, ...] = (), dry_run: bool = False,
        breakers: tuple[BreakerRecord, ...] = (), run_id: str | None = None) -> RunRecord:
    when = T0 + dt.timedelta(minutes=n)
    return RunRecord(dag_id="dr", run_id=run_id or f"run{n:03d}", state="failed" if failed else "success",
                     queued_at=when, start=when, end=when, outcome="failed" if failed else "ok",
                     failed_phases=list(failed), tasks=tasks, plan=PLAN, recorded_at=when, dry_run=dry_run,
                     breakers=list(breakers))


def folded(*records: RunRecord) -> History:
    history = History(dag_id="dr")
    for i, record in enumerate(records):
        history = fold(history, record, now=T0 + dt.timedelta(minutes=i, seconds=30))
    return history


def test_mapped_steps_and_waves_pool_into_their_step_and_a_run_keeps_at_most_20_samples() -> None:
    tasks = [task("fan.each.copy", 1.0 + i / 100, map_index=i) for i in range(50)]
    tasks += [task("fan.wave2.copy", 9.0, map_index=0), task("fan.each.copy", 99.0, state="failed", map_index=50)]
    history = folded(run(1, tasks))
    (entry,) = history.steps["fan.copy"]
    assert entry.outcome == "failed" and len(entry.durations) == SAMPLES_PER_RUN
    assert entry.durations[0] == 1.0 and entry.durations[-1] == 9.0  # extremes kept, failed try left out


def test_history_is_bounded_and_a_re_run_replaces_its_run() -> None:
    records = [run(i, [task("work.step", 1.0)]) for i in range(HISTORY_RUNS + 5)]
    history = folded(*records)
    assert len(history.runs) == HISTORY_RUNS == len(history.steps["work.step"])
    assert history.runs[0].run_id == "run005"
    again = fold(history, run(40, [task("work.step", 7.0)], run_id="run020"))  # run020 ended again
    assert [e.durations for e in again.steps["work.step"] if e.run_id == "run020"] == [[7.0]]
    assert len(again.runs) == HISTORY_RUNS and sum(r.run_id == "run020" for r in again.runs) == 1
    assert fold(history, run(41, [task("work.step", 50.0)], dry_run=True)) == history  # dry runs: not learnt from


def test_usual_duration_needs_min_samples_then_gives_median_and_p95() -> None:
    history = folded(*(run(i, [task("work.step", float(s))]) for i, s in enumerate([1, 2, 3, 4, 10])))
    assert usual_duration(history, "work.step", 6) is None
    usual = usual_duration(history, "work.step", 5)
    assert usual is not None and (usual.median, usual.samples) == (3.0, 5)
    assert usual.p95 == pytest.approx(percentile([1, 2, 3, 4, 10], 0.95)) == pytest.approx(8.8)
    assert usual.threshold(2.0) == pytest.approx(17.6)


def test_slow_steps_are_judged_against_the_history_before_the_run() -> None:
    history = folded(*(run(i, [task("work.step", 1.0), task("fan.each.copy", 2.0, map_index=0)]) for i in range(4)))
    slow = run(10, [task("work.step", 2.5), task("fan.each.copy", 3.0, map_index=0), task("new.step", 99.0)])
    flagged = slow_steps(slow, history)
    assert [(s.task, s.step, s.threshold_seconds) for s in flagged] == [("work.step", "work.step", 2.0)]
    # recorded again (a re-run): its own first end does not count in the history it is judged by
    assert slow_steps(slow, fold(history, slow)) == flagged
    off = slow.model_copy(update={"plan": PLAN.model_copy(update={"slow_step_factor": None})})
    assert slow_steps(off, history) == []
    report = build_report(record_run(slow, history))
    assert "past its alert threshold of 2.0s" in report_html(report)


def test_phase_results_count_partial_as_success_and_ignore_phases_not_run() -> None:
    record = run(1, [task("a.s", 1.0), task("b.s", 1.0, state="failed"), task("c.s", None, state="upstream_failed")],
                 failed=("b",))
    record = record.model_copy(update={"not_run_phases": ["c"], "partial_phases": ["a"]})
    assert phase_results(record) == {"a": "success", "b": "failed"}


BREAKER = CircuitBreaker(failures=2, within=4)


def path_run(n: int, result: str) -> RunRecord:
    if result == "failed":
        return run(n, [task("primary.s", 1.0, state="failed")], failed=("primary",))
    if result == "open":
        return run(n, [task("fallback.s", 1.0)], breakers=(BreakerRecord(name="primary", kind="branch", reason="r"),))
    if result == "success":
        return run(n, [task("primary.s", 1.0)])
    return run(n, [task("fallback.s", 1.0)])  # not chosen


def state_after(*results: str) -> tuple[bool, tuple[str, ...]]:
    history = folded(*(path_run(i, r) for i, r in enumerate(results)))
    found = breaker_state(history, "primary", "branch", BREAKER)
    return found.open, found.failures


def test_breaker_opens_after_k_failures_in_the_last_n_runs() -> None:
    assert state_after("failed") == (False, ("run000",))
    assert state_after("failed", "-", "failed") == (True, ("run000", "run002"))
    assert state_after("failed", "failed", "success")[0] is False  # a success closes it
    # runs where the path was blocked still take a place in the window: the failures age out
    assert state_after("failed", "failed", "open", "open")[0] is True
    assert state_after("failed", "failed", "open", "open", "open") == (False, ("run001",))


def test_a_reset_closes_the_breaker_and_is_kept_in_the_ledger(tmp_path: Path) -> None:
    history = folded(path_run(0, "failed"), path_run(1, "failed"))
    assert breaker_state(history, "primary", "branch", BREAKER).open
    closed = reset(history, "primary", now=T0 + dt.timedelta(hours=1))
    assert not breaker_state(closed, "primary", "branch", BREAKER).open
    ledger = Ledger(f"file://{tmp_path}")
    ledger.write_history(history)
    reset_breaker(ledger, "dr", "primary")
    assert not breaker_state(ledger.read_history("dr"), "primary", "branch", BREAKER).open
    # a failure after the reset counts again
    later = fold(ledger.read_history("dr"), path_run(120, "failed"), now=dt.datetime.now(UTC) + dt.timedelta(seconds=1))
    assert breaker_state(later, "primary", "branch", BREAKER).failures == ("run120",)


def test_breaker_note_and_record_say_what_was_done_instead() -> None:
    breakers = [BreakerRecord(name="primary", kind="branch", reason="why", fallback="fallback"),
                BreakerRecord(name="fan.copy", kind="step", reason="why")]
    assert breaker_note(breakers) == "circuit breaker open: primary -> fallback; fan.copy (not called)"
    assert breaker_note([]) == ""
    record = record_run(run(1, [task("fallback.s", 1.0)]), History(dag_id="dr"), breakers)
    page = report_html(build_report(record))
    assert 'data-breaker="primary"' in page and "took fallback instead" in page


def test_the_ledger_keeps_history_beside_the_runs_and_lists_only_runs(tmp_path: Path) -> None:
    ledger = Ledger(f"file://{tmp_path}")
    ledger.write(run(1, [task("work.step", 1.0)]))
    ledger.write(run(2, [task("work.step", 1.0)], run_id="_history"))  # cannot overwrite the summary
    ledger.write_history(folded(run(1, [task("work.step", 1.0)])))
    assert sorted(p.name for p in (tmp_path / "dr").iterdir()) == ["%5Fhistory.json", "_history.json", "run001.json"]
    assert sorted(r.run_id for r in ledger.runs("dr")) == ["_history", "run001"]
    assert ledger.read_history("dr").steps["work.step"][0].durations == [1.0]
    assert ledger.read_history("other") == History(dag_id="other")
    assert json.loads((tmp_path / "dr" / "_history.json").read_text())["dag_id"] == "dr"


def test_the_watchdog_alerts_through_the_configured_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(str(tmp_path))
    ledger.write_history(folded(*(run(i, [task("work.step", 0.1)]) for i in range(4))))
    monkeypatch.setenv("AIRFLOW__RECOVERY__LEDGER_LOCATION", str(tmp_path))
    monkeypatch.setenv(CALLBACK_ENV, f"{__name__}:notify")
    ALERTS_FIRED.clear()
    started = dt.datetime.now(UTC)
    # not enough samples for this step: no alert
    assert _watch("dr", "run9", "other.step", "other.step", 2.0, 4, started) is False
    stop = threading.Event()
    stop.set()  # the try ended before its threshold
    assert _watch("dr", "run9", "work.step", "work.step", 2.0, 4, started, stop) is False
    assert _watch("dr", "run9", "work.step", "work.step", 2.0, 4, started - dt.timedelta(seconds=5)) is True
    (alert,) = ALERTS_FIRED
    assert alert.kind == "slow_step" and alert.details["threshold_seconds"] == 0.2
    assert alert.message.startswith("slow step: work.step of dr (run run9) has run 5.")


def test_circuit_breaker_settings_are_checked() -> None:
    from recovery_provider.exceptions import SpecError
    from tests.conftest import compile_text

    with pytest.raises(SpecError) as raised:
        compile_text("""
        recovery: b
        phases:
          - id: choose
            branch:
              - {when: "params.dry_run", then: a, circuit_breaker: {failures: 5, within: 3}}
              - {otherwise: b, circuit_breaker: {failures: 1, within: 3}}
          - {id: a, steps: [{id: s, uses: empty}]}
          - {id: b, steps: [{id: s2, uses: empty, circuit_breaker: {failures: 1, within: 31}}]}
        """)
    messages = str(raised.value)
    assert "test.yaml:6:60: error: phases[0].branch[0].circuit_breaker: failures (5) cannot exceed within (3)" in messages
    assert "test.yaml:7:9: error: phases[0].branch[1]: the fallback cannot have a circuit_breaker" in messages
    assert "circuit_breaker.within: Input should be less than or equal to 30" in messages


def test_breaker_cli_resets_a_known_path_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recovery_provider.cli.main import app
    from recovery_provider.exceptions import RecoveryError

    ledger = Ledger(str(tmp_path))
    ledger.write_history(folded(path_run(0, "failed"), path_run(1, "failed")))
    runner = CliRunner()
    status = runner.invoke(app, ["breaker", "status", "dr", "--ledger", str(tmp_path)], catch_exceptions=False)
    assert "primary: failed failed; failures since the last success 2" in status.output
    with pytest.raises(RecoveryError, match=r"'primery' has no history in 'dr'.*known phases and steps: primary, primary\.s"):
        runner.invoke(app, ["breaker", "reset", "dr", "primery", "--ledger", str(tmp_path)], catch_exceptions=False)
    done = runner.invoke(app, ["breaker", "reset", "dr", "primary", "--ledger", str(tmp_path)], catch_exceptions=False)
    assert done.exit_code == 0 and "reset" in done.output
    assert not breaker_state(ledger.read_history("dr"), "primary", "branch", BREAKER).open
