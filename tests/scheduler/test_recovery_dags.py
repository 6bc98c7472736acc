"""Generated recovery DAGs on a real scheduler: every semantic read back from task instances.

The specs live in tests/scheduler/specs/; one loader file in the cluster's dags folder renders
them, exactly as a deployment would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.report import build_report
from tests.support import broken_specs
from tests.support.airflow_cluster import AirflowCluster, TaskInstance
from tests.support.browser import ARTIFACTS, chromium
from tests.support.timing import peak_concurrency, window

pytestmark = pytest.mark.scheduler

SPECS = Path(__file__).resolve().parent / "specs"
PACK = Path(__file__).resolve().parents[2] / "dags" / "specs"
UNSYNCED = Path(__file__).resolve().parent / "specs_unsynced"
LOADER = "# airflow DAG loader: safe mode parses only files that say 'airflow' and 'dag'\nfrom recovery_provider.loader import load_dags\nload_dags(__file__, {folder!r})\n"
ERRORS = "# airflow import errors of broken specs; this file has no dag\nfrom recovery_provider.loader import report_spec_errors\nreport_spec_errors(__file__, {folder!r})\n"
DAG_IDS = sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The DAG pack beside broken specs of every kind and two good neighbours, in a folder a test may edit."""
    folder = tmp_path_factory.mktemp("specs") / "broken"
    shutil.copytree(broken_specs.FOLDER, folder)
    for spec in PACK.glob("*.yaml"):
        shutil.copyfile(spec, folder / spec.name)
    return folder


@pytest.fixture(scope="module")
def cluster(airflow: AirflowCluster, broken: Path) -> AirflowCluster:
    airflow.add_dag_file(LOADER.format(folder=str(SPECS)), name="recovery_specs.py")
    airflow.add_dag_file(LOADER.format(folder=str(broken)), name="recovery_broken.py")
    airflow.add_dag_file(ERRORS.format(folder=str(broken)), name="recovery_broken_errors.py")
    airflow.add_dag_file(LOADER.format(folder=str(UNSYNCED)), name="recovery_unsynced.py")
    # the preflight task reads pools through the REST API with this connection
    airflow.api.request("POST", "/connections", json={
        "connection_id": "airflow_api", "conn_type": "http", "host": airflow.base_url,
        "login": "admin", "password": airflow.admin_password,
    }, ok=(200, 201, 409))
    port = airflow.metadata.port  # a real PostgreSQL for the deferral test to wait on
    airflow.api.request("POST", "/connections", json={
        "connection_id": "sched_meta_pg", "conn_type": "postgres", "host": "127.0.0.1", "port": port,
        "login": "postgres", "schema": "postgres",
    }, ok=(200, 201, 409))
    sync = subprocess.run(
        [str(Path(sys.executable).with_name("recovery")), "pools", "sync", str(SPECS), "--url", airflow.base_url],
        env={**os.environ, "RECOVERY_AIRFLOW_PASSWORD": airflow.admin_password}, capture_output=True, text=True, check=False,
    )
    assert sync.returncode == 0 and "sched_caps_io: created (2 slots" in sync.stdout, sync.stdout + sync.stderr
    assert airflow.admin_password not in sync.stdout + sync.stderr
    for dag_id in [*DAG_IDS, "sched_preflight"]:
        airflow.api.wait_for_dag(dag_id, timeout=120)
        airflow.api.unpause(dag_id)
    return airflow


def run(
    cluster: AirflowCluster, dag_id: str, conf: dict[str, object] | None = None, timeout: float = 180
) -> tuple[str, dict[tuple[str, int], TaskInstance]]:
    run_id = cluster.api.trigger(dag_id, conf or {})
    state = cluster.api.wait_for_run(dag_id, run_id, timeout=timeout)
    tis = {(t.task_id, t.map_index): t for t in cluster.api.task_instances(dag_id, run_id)}
    return state, tis


def states(tis: dict[tuple[str, int], TaskInstance]) -> dict[str, str | None]:
    return {f"{k[0]}[{k[1]}]" if k[1] >= 0 else k[0]: t.state for k, t in tis.items()}


def explain(cluster: AirflowCluster, dag_id: str, tis: dict[tuple[str, int], TaskInstance]) -> str:
    """Every task instance of the run and the log tail of each that did not succeed."""
    run_id = next(iter(tis.values())).raw["dag_run_id"]
    return cluster.describe_run(dag_id, run_id)


def test_broken_specs_hide_no_dag_are_shown_with_their_place_and_come_back_when_fixed(
    cluster: AirflowCluster, broken: Path
) -> None:
    """On the real dag-processor: every good DAG beside the broken specs stays active (listed, not
    stale, triggerable); each broken spec is one line of the errors file's import error; a fixed
    spec's DAG comes back and its line goes, with no restart."""
    good = [*broken_specs.GOOD_IDS, *(p.stem for p in PACK.glob("*.yaml"))]
    for dag_id in good:
        dag = cluster.api.wait_for_dag(dag_id, timeout=120)  # waits until not stale, no import error
        assert dag["is_stale"] is False and dag["has_import_errors"] is False, dag
    listed = {d["dag_id"] for d in cluster.api.dags()}
    assert set(good) | set(DAG_IDS) <= listed
    assert not listed & set(broken_specs.BROKEN_IDS)
    deadline = time.monotonic() + 120  # the errors file may be parsed after the DAG file
    while not _errors_text(cluster) and time.monotonic() < deadline:
        time.sleep(1)
    errors = {e["filename"]: e["stack_trace"] for e in cluster.api.import_errors()}
    assert not [name for name in errors if name.endswith(("recovery_broken.py", "recovery_specs.py"))], errors
    (message,) = [text for name, text in errors.items() if name.endswith("recovery_broken_errors.py")]
    broken_specs.assert_names_every_broken_spec(message, broken)
    cluster.api.unpause("sched_good_callable")
    state, tis = run(cluster, "sched_good_callable")
    assert state == "success" and tis[("a.parse", -1)].state == "success", states(tis)

    with chromium(1400, 1000) as browser:  # what a person sees: the DAG list and its import-error banner
        browser.get(f"{cluster.base_url}/")
        browser.add_cookie({"name": "_token", "value": cluster.api.token(), "path": "/"})
        browser.get(f"{cluster.base_url}/dags")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "broken-spec-dag-list.png"
        deadline = time.monotonic() + 60
        while "sched_good_neighbour" not in browser.page_source and time.monotonic() < deadline:
            time.sleep(1)
        _open_import_errors(browser)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        shown = browser.find_elements("xpath", "//*[contains(text(), 'broken.yaml:5:30')]")
        assert shown and shown[0].is_displayed(), "the import error's text is not shown"

    started = time.monotonic()
    (broken / "broken.yaml").write_text(broken_specs.fixed_text())
    cluster.api.wait_for_dag("sched_broken", timeout=90)
    while "broken.yaml:" in _errors_text(cluster) and time.monotonic() - started < 90:
        time.sleep(1)
    back_after = time.monotonic() - started
    assert "broken.yaml:" not in _errors_text(cluster)
    print(f"fixed spec: DAG back and its error gone after {back_after:.1f}s (min_file_process_interval 10s)")
    cluster.api.unpause("sched_broken")
    state, _ = run(cluster, "sched_broken")
    assert state == "success"
    for dag_id in good:  # and the neighbours never left
        dag = cluster.api.dag(dag_id)
        assert dag is not None and dag["is_stale"] is False, dag


def _errors_text(cluster: AirflowCluster) -> str:
    return "\n".join(e["stack_trace"] for e in cluster.api.import_errors() if e["filename"].endswith("recovery_broken_errors.py"))


def _open_import_errors(browser: Any) -> None:
    """Click the DAG list's import-error badge (a red button showing the count, "1" here, next
    to "N Dags"), so the screenshot shows the messages."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for button in browser.find_elements(By.TAG_NAME, "button"):
            try:
                html = (button.get_attribute("outerHTML") or "").lower()
                if "import" in html or button.text.strip() == "1":
                    button.click()
                    time.sleep(3)
            except WebDriverException:  # the page changed under us: look again
                break
            if "recovery_broken_errors.py" in browser.page_source:
                # the modal lists files folded: unfold ours to show its text
                for item in browser.find_elements(By.XPATH, "//*[contains(text(), 'recovery_broken_errors.py')]"):
                    with contextlib.suppress(WebDriverException):
                        item.click()
                        time.sleep(2)
                        break
                return
        time.sleep(1)


def test_parallel_steps_overlap_and_sequential_steps_do_not(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_overlap")
    assert state == "success", states(tis)
    s1, s2 = window(tis[("seq.s1", -1)]), window(tis[("seq.s2", -1)])
    p1, p2 = window(tis[("par.p1", -1)]), window(tis[("par.p2", -1)])
    assert s2[0] >= s1[1], "sequential steps overlapped"
    assert p1[0] < p2[1] and p2[0] < p1[1], "parallel steps did not overlap"
    assert min(p1[0], p2[0]) >= s2[1], "the parallel phase started before the sequential one ended"


def test_pool_and_fan_out_caps_are_never_exceeded(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_caps")
    assert state == "success", cluster.describe_run("sched_caps", next(iter(tis.values())).raw["dag_run_id"])
    pooled = [t for (task, _), t in tis.items() if task == "pooled.each.pooled_work"]
    capped = [t for (task, _), t in tis.items() if task == "capped.each.capped_work"]
    assert len(pooled) == len(capped) == 5
    assert {t.pool for t in pooled} == {"sched_caps_io"}
    assert peak_concurrency(pooled) == 2
    assert peak_concurrency(capped) == 2


def test_fail_fast_gates_need_no_worker_and_stop_the_later_phases(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_fail_fast")
    got = states(tis)
    assert state == "failed", got
    assert "preflight" not in got  # no pools, nothing to check before the work
    ok_gate, wide_gate = tis[("ok.gate", -1)], tis[("wide.gate", -1)]
    # the scheduler marks an EmptyOperator done itself: no worker took it (no host, no try run)
    assert ok_gate.state == "success" and not ok_gate.raw.get("hostname"), ok_gate.raw
    # a phase wider than MAX_LEAVES_FOLLOWED is followed through its gate, settled the same way
    assert wide_gate.state == "success" and not wide_gate.raw.get("hostname"), wide_gate.raw
    wide_done = max(tis[(f"wide.w{i}", -1)].end_date for i in range(5))  # type: ignore[type-var]
    assert all(tis[(f"ok.{s}", -1)].start_date >= wide_done for s in "ab"), explain(cluster, "sched_fail_fast", tis)  # type: ignore[operator]
    assert got["bad.fails"] == "failed" and got["bad.slow"] == "success", got
    assert got["bad.gate"] == "upstream_failed" and got["never.after"] == "upstream_failed", got
    # no outcome task (no `finally`, no compensation): the leaf gate failed the run, and the
    # listener wrote the verdict
    assert "outcome" not in got, explain(cluster, "sched_fail_fast", tis)
    [record] = Ledger(str(cluster.home / "recovery-ledger")).runs("sched_fail_fast")
    assert (record.outcome, record.failed_phases, record.not_run_phases) == ("failed", ["bad"], ["never"])
    assert record.note == "FAILED in phase(s) bad; not run: never"
    assert cluster.api.dag_run("sched_fail_fast", record.run_id).get("note") == record.note


def test_failure_policies_count_tolerate_percent_continue(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_policies")
    got = states(tis)
    assert state == "failed", got
    for phase in ("tolerate_two", "tolerate_half", "keep_going"):
        assert got[f"{phase}.gate"] == "success", got
        assert sorted(got[f"{phase}.each.{phase}_work[{i}]"] for i in range(4)) == [
            "failed",
            "failed",
            "success",
            "success",
        ]
    assert got["tolerate_one.gate"] == "failed", got
    assert got["never.after"] == "upstream_failed", got
    assert "outcome" not in got, got


def test_compensation_undoes_what_succeeded_newest_first_and_finally_still_fails_the_run(
    cluster: AirflowCluster,
) -> None:
    state, tis = run(cluster, "sched_compensate")
    got = states(tis)
    assert state == "failed", got
    assert (got["change.first"], got["change.second"], got["change.third"]) == (
        "success",
        "success",
        "failed",
    )
    assert got["change.third__undo"] == "skipped"  # it failed: nothing to undo
    assert got["change.second__undo"] == got["change.first__undo"] == "success"
    assert window(tis[("change.second__undo", -1)])[1] <= window(tis[("change.first__undo", -1)])[0]
    assert got["later.never"] == "upstream_failed"
    assert got["cleanup"] == "success"
    assert window(tis[("cleanup", -1)])[0] >= window(tis[("change.first__undo", -1)])[1]
    # the run ledger tells the same story, including what the scheduler decided as the run ended
    [record] = Ledger(str(cluster.home / "recovery-ledger")).runs("sched_compensate")
    assert {t.key: t.state for t in record.tasks} == got
    report = build_report(record)
    assert report.compensations == ["change.second__undo: success", "change.first__undo: success"]
    assert (report.outcome, report.failed_phases, report.failures) == ("failed", ["change"], ["change.third: failed", "later.never: upstream_failed"])
    assert report.not_run_phases == ["later"]  # its gate failed only because `change` did: not blamed


def test_a_failing_non_critical_step_fails_neither_its_target_nor_its_wave_nor_its_phase(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_non_critical")
    got = states(tis)
    assert state == "success", got
    # targets are mapped in order: a 0, b 1, c 2
    assert [got[f"fan.each.optional_work[{i}]"] for i in range(3)] == ["success", "failed", "success"]
    assert [got[f"fan.each.main_work[{i}]"] for i in range(3)] == ["success", "success", "success"]
    assert got["fan.gate"] == "success"
    assert [got[f"rolling.wave1.optional_bounce[{i}]"] for i in range(2)] == ["success", "failed"]
    assert [got[f"rolling.wave1.bounce[{i}]"] for i in range(2)] == ["success", "success"]
    assert got["rolling.wave1_checkpoint"] == "success"  # max_failed_waves 1: the wave did not fail
    assert got["rolling.wave2.bounce[0]"] == "success" and got["rolling.gate"] == "success"
    assert got["after.done"] == "success" and "outcome" not in got
    [record] = Ledger(str(cluster.home / "recovery-ledger")).runs("sched_non_critical")
    kinds = {t.task_id: t.kind for t in record.tasks}
    assert (kinds["fan.each.optional_work"], kinds["rolling.wave1_checkpoint"]) == ("step", "control")
    assert "fan.targets" not in kinds  # a literal list maps without a resolver task: labels from the layout
    assert sorted(str(t.target) for t in record.tasks if t.task_id == "fan.each.optional_work") == ["a", "b", "c"]
    assert record.outcome == "ok"


def test_a_phase_that_succeeds_undoes_nothing(cluster: AirflowCluster, tmp_path: Path) -> None:
    state, tis = run(cluster, "sched_compensate_ok", {"dir": str(tmp_path)})
    got = states(tis)
    assert state == "success", got
    undos = {k: v for k, v in got.items() if "__undo" in k}
    # (a mapped undo skipped by its trigger rule is never expanded: one instance, not one per target)
    assert {k.split("[")[0] for k in undos} == {
        "change.first__undo", "change.second__undo", "fan.undo.one__undo", "fan.undo.two__undo"}
    assert set(undos.values()) == {"skipped"}, undos
    assert list(tmp_path.iterdir()) == []


def test_fan_out_compensates_per_target_only_what_succeeded_and_probes_skip_done_work(
    cluster: AirflowCluster, tmp_path: Path,
) -> None:
    (tmp_path / "beta.done").touch()  # beta's change was made by an earlier run
    state, tis = run(cluster, "sched_fanout_saga", {"dir": str(tmp_path)})
    got = states(tis)
    assert state == "failed", got
    # targets are mapped in order: alpha 0, beta 1, bad 2
    assert [got[f"apply.each.change[{i}]"] for i in range(3)] == ["success", "skipped", "failed"]
    assert [got[f"apply.undo.change__undo[{i}]"] for i in range(3)] == ["success", "skipped", "skipped"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.changed", "alpha.undone", "beta.done"]
    assert got["apply.each.verify[1]"] == "success"  # beta's change was skipped as done: verify still runs
    assert window(tis[("apply.undo.change__undo", 0)])[0] >= window(tis[("apply.gate", -1)])[1]
    assert got["later.never"] == "upstream_failed"


@pytest.mark.parametrize(
    ("failure_type", "taken"),
    [
        ("replica_healthy", "promote"),
        ("primary_lost", "restore"),
        ("lag_check", "investigate"),
        ("unheard_of", "investigate"),
    ],
)
def test_branch_takes_the_right_path_and_the_fallback_for_unknown_states(
    cluster: AirflowCluster, failure_type: str, taken: str
) -> None:
    state, tis = run(cluster, "sched_branch", {"failure_type": failure_type})
    got = states(tis)
    assert state == "success", got
    work = {
        "promote": "promote.promote_replica",
        "restore": "restore.restore_backup",
        "investigate": "investigate.page_human",
    }
    for path, task in work.items():
        assert got[task] == ("success" if path == taken else "skipped"), got
    assert got["verify.check"] == "success", got  # the join neither skips nor fails


def test_approval_goes_on_when_approved_through_the_rest_api(cluster: AirflowCluster) -> None:
    api = cluster.api
    run_id = api.trigger("sched_approval", {})
    api.answer_hitl("sched_approval", run_id, "gate.approve", ["Approve"])
    state = api.wait_for_run("sched_approval", run_id, timeout=120)
    got = {t.task_id: t.state for t in api.task_instances("sched_approval", run_id)}
    assert state == "success", got
    assert got["cutover.switch"] == "success"


def test_approval_times_out_to_reject_and_the_run_fails(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_approval", timeout=150)
    got = states(tis)
    assert state == "failed", got
    assert got["gate.approve"] == "failed"
    assert got["cutover.switch"] == "upstream_failed"


def test_dry_run_has_no_side_effects(cluster: AirflowCluster, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    state, tis = run(cluster, "sched_dry_run", {"dry_run": True, "marker": str(marker)})
    assert state == "success", states(tis)
    assert states(tis)["act.write"] == "skipped"
    assert not marker.exists()
    state, tis = run(cluster, "sched_dry_run", {"dry_run": False, "marker": str(marker)})
    assert state == "success" and marker.read_text().strip() == "done"


def test_rto_deadline_alert_fires_on_an_overrunning_run(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_deadline")
    assert state == "success", states(tis)
    log = cluster.log_path("triggerer").read_text(errors="replace")
    assert "RTO missed: recovery sched_deadline" in log, cluster.log_path("triggerer")


def wave_windows(tis: dict[tuple[str, int], TaskInstance], wave: int) -> tuple[datetime, datetime]:
    mine = [t for (task, _), t in tis.items() if task.startswith(f"restart.wave{wave}.") or task == f"restart.wave{wave}_health"]
    return min(window(t)[0] for t in mine), max(window(t)[1] for t in mine)


def test_waves_never_overlap_and_pause_between(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_waves")
    assert state == "success", explain(cluster, "sched_waves", tis)
    assert [len([k for k in tis if k[0] == f"restart.wave{w}.bounce"]) for w in (1, 2, 3)] == [3, 3, 1]
    for wave in (1, 2):
        _, end = wave_windows(tis, wave)
        start_next, _ = wave_windows(tis, wave + 1)
        assert (start_next - end).total_seconds() >= 5, f"wave {wave + 1} started {start_next - end} after wave {wave}"


def test_a_failing_health_check_stops_the_later_waves(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_waves", {"fail_wave": 2})
    got = states(tis)
    assert state == "failed", got
    assert got["restart.wave2_health"] == "failed", explain(cluster, "sched_waves", tis)
    assert got["restart.wave2_checkpoint"] == "failed"
    wave3 = {k: v for k, v in got.items() if k.startswith("restart.wave3.bounce")}
    assert wave3 and set(wave3.values()) == {"upstream_failed"}, got  # the wave never started
    assert not any(k[0] == "restart.wave3.bounce" and t.state == "success" for k, t in tis.items())
    assert got["restart.gate"] == "failed"


def test_preflight_fails_a_run_whose_pool_is_missing(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_preflight", timeout=60)
    got = states(tis)
    assert state == "failed", got
    assert got["preflight"] == "failed"
    assert got["work.step"] == "upstream_failed"
    log = cluster.task_log("sched_preflight", tis[("preflight", -1)].raw["dag_run_id"], "preflight")
    assert "pool 'sched_never_created' does not exist" in log


def test_continue_flags_a_partial_recovery_on_the_run(cluster: AirflowCluster) -> None:
    api = cluster.api
    run_id = api.trigger("sched_partial", {})
    state = api.wait_for_run("sched_partial", run_id, timeout=120)
    got = {(t.task_id, t.map_index): t.state for t in api.task_instances("sched_partial", run_id)}
    assert state == "success", got
    assert sorted(got[("streams.each.dump", i)] for i in range(3)) == ["failed", "success", "success"]
    assert got[("verify.check", -1)] == "success"
    note = api.dag_run("sched_partial", run_id).get("note") or ""
    assert note.startswith("PARTIAL recovery") and "1 of 3 failed" in note, note


def test_an_idempotency_probe_skips_work_already_done(cluster: AirflowCluster, tmp_path: Path) -> None:
    marker = tmp_path / "created"
    state, tis = run(cluster, "sched_idempotent", {"marker": str(marker)})
    assert state == "success" and states(tis)["ensure.create"] == "success", states(tis)
    marker.write_text("kept\n")  # a second run must not redo (or overwrite) the work
    state, tis = run(cluster, "sched_idempotent", {"marker": str(marker)})
    assert state == "success", states(tis)
    assert states(tis)["ensure.create__probe"] == "success" and states(tis)["ensure.create"] == "skipped"
    assert states(tis)["ensure.check"] == "success"  # the work is done: what follows it still runs
    assert marker.read_text() == "kept\n"


def test_a_long_wait_defers_to_the_triggerer_and_resumes(cluster: AirflowCluster) -> None:
    api = cluster.api
    run_id = api.trigger("sched_deferral", {})
    api.wait_for_task_state("sched_deferral", run_id, "wait.database_appears", {"deferred"}, timeout=90)
    cluster.metadata.psql("CREATE DATABASE sched_deferral_ready")
    try:
        state = api.wait_for_run("sched_deferral", run_id, timeout=120)
        assert state == "success", cluster.describe_run("sched_deferral", run_id)
    finally:
        cluster.metadata.psql("DROP DATABASE IF EXISTS sched_deferral_ready")


def test_an_error_no_retry_fixes_fails_on_its_first_try_despite_retries(cluster: AirflowCluster) -> None:
    state, tis = run(cluster, "sched_no_retry")
    got = states(tis)
    assert state == "failed", explain(cluster, "sched_no_retry", tis)
    refused, unnamed, named = (tis[(f"work.{s}", -1)] for s in ("refused", "unnamed", "named"))
    assert (refused.state, refused.try_number) == ("failed", 1), got  # no_retry_on matched: no 30s retry
    assert (unnamed.state, unnamed.try_number) == ("failed", 1), got  # retry_on does not name exit code 5
    assert (named.state, named.try_number) == ("success", 2), got  # retry_on names exit code 4: retried
    [record] = Ledger(str(cluster.home / "recovery-ledger")).runs("sched_no_retry")
    assert {t.task_id: t.tries for t in record.tasks if t.task_id.startswith("work.")} == {
        "work.refused": 1, "work.unnamed": 1, "work.named": 2,
        "work.gate": 0}  # a fail_fast gate: settled by trigger rule, never run


def test_a_restore_falls_back_to_the_previous_backup_and_the_report_says_why(cluster: AirflowCluster, tmp_path: Path) -> None:
    state, tis = run(cluster, "sched_fallback", {"location": f"file://{tmp_path}/backups"})
    assert state == "success", explain(cluster, "sched_fallback", tis)
    assert tis[("restore.restore", -1)].try_number == 1
    [record] = Ledger(str(cluster.home / "recovery-ledger")).runs("sched_fallback")
    [line] = build_report(record).restores
    assert line.startswith(
        "restore.restore: restored postgres/older into 'sched_fallback_restored' INSTEAD OF postgres/newer "
        "(fallback: previous), which was refused: does not match its manifest: dump.pgcustom.zst: SHA-256 "), line
