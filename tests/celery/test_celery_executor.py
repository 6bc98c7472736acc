"""Generated recovery DAGs on CeleryExecutor with two workers: spread, caps, routing, a lost worker.

Who ran a task is read from the task instance's `hostname` (each harness worker reports its own
name, see tests/support/airflow_cluster.py); concurrency from task-instance start/end times.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import psutil
import pytest

from tests.support.airflow_cluster import AirflowCluster, TaskInstance
from tests.support.timing import peak_concurrency

pytestmark = pytest.mark.scheduler

SPECS = Path(__file__).resolve().parent / "specs"
LOADER = "# airflow DAG loader: safe mode parses only files that say 'airflow' and 'dag'\nfrom recovery_provider.loader import load_dags\nload_dags(__file__, {folder!r})\n"
DAG_IDS = sorted(p.stem for p in SPECS.glob("*.yaml"))
WORKER_NAMES = {"w1", "w2"}
MARKERS = Path("/tmp/cel-worker-loss")  # see specs/cel_worker_loss.yaml


@pytest.fixture(scope="module")
def cluster(celery_airflow: AirflowCluster) -> AirflowCluster:
    celery_airflow.add_dag_file(LOADER.format(folder=str(SPECS)), name="recovery_celery_specs.py")
    celery_airflow.api.create_pool("cel_caps_io", 2)  # before any run: a missing pool never schedules
    # a spec with pools gets a preflight task that reads them through the REST API with this connection
    celery_airflow.api.request("POST", "/connections", json={
        "connection_id": "airflow_api", "conn_type": "http", "host": celery_airflow.base_url,
        "login": celery_airflow.admin_user, "password": celery_airflow.admin_password,
    }, ok=(200, 201, 409))  # fmt: skip
    for dag_id in DAG_IDS:
        celery_airflow.api.wait_for_dag(dag_id, timeout=120)
        celery_airflow.api.unpause(dag_id)
    return celery_airflow


def run(
    cluster: AirflowCluster, dag_id: str, conf: dict[str, object] | None = None, timeout: float = 180
) -> tuple[str, str, dict[tuple[str, int], TaskInstance]]:
    run_id = cluster.api.trigger(dag_id, conf or {})
    state = cluster.api.wait_for_run(dag_id, run_id, timeout=timeout)
    tis = {(t.task_id, t.map_index): t for t in cluster.api.task_instances(dag_id, run_id)}
    return run_id, state, tis


def test_tasks_of_one_run_are_spread_over_both_workers(cluster: AirflowCluster) -> None:
    run_id, state, tis = run(cluster, "cel_spread")
    assert state == "success", cluster.describe_run("cel_spread", run_id)
    assert all(t.state == "success" for t in tis.values()), cluster.describe_run("cel_spread", run_id)
    # every task that ran ran on a worker; fail_fast gates (EmptyOperator) are settled by the scheduler
    ran = {k: t for k, t in tis.items() if t.raw.get("operator") != "EmptyOperator"}
    assert {t.hostname for t in ran.values()} <= WORKER_NAMES, {k: t.hostname for k, t in tis.items()}
    assert all(not t.hostname for k, t in tis.items() if k not in ran), {k: t.raw.get("operator") for k, t in tis.items()}
    restores = [t for (task, _), t in tis.items() if task in {f"restore.r{i}" for i in range(1, 5)}]
    assert len(restores) == 4
    # two workers of concurrency 2 and prefetch 1: four parallel tasks cannot fit on one
    assert {t.hostname for t in restores} == WORKER_NAMES, {t.task_id: t.hostname for t in restores}
    assert peak_concurrency(restores) >= 3


def test_a_failure_policy_holds_when_tasks_run_on_different_workers(cluster: AirflowCluster) -> None:
    run_id, state, tis = run(cluster, "cel_partial")
    got = {(k[0], k[1]): t.state for k, t in tis.items()}
    assert state == "success", cluster.describe_run("cel_partial", run_id)
    dumps = sorted(s or "" for (task, _), s in got.items() if task == "streams.each.dump")
    assert dumps == ["failed", "success", "success"], got
    assert got[("verify.check", -1)] == "success", got


def test_pool_and_fan_out_caps_hold_across_workers(cluster: AirflowCluster) -> None:
    run_id, state, tis = run(cluster, "cel_caps")
    assert state == "success", cluster.describe_run("cel_caps", run_id)
    pooled = [t for (task, _), t in tis.items() if task == "pooled.each.pooled_work"]
    capped = [t for (task, _), t in tis.items() if task == "capped.each.capped_work"]
    assert len(pooled) == len(capped) == 6
    assert {t.pool for t in pooled} == {"cel_caps_io"}
    # the workers together have 4 slots: the caps, not the workers, are what limits here
    assert peak_concurrency(pooled) == 2
    assert peak_concurrency(capped) == 3
    assert {t.hostname for t in pooled + capped} == WORKER_NAMES


def test_a_step_routed_to_a_queue_runs_only_on_the_worker_listening_to_it(cluster: AirflowCluster) -> None:
    run_id, state, tis = run(cluster, "cel_queue")
    assert state == "success", cluster.describe_run("cel_queue", run_id)
    site_b = [t for (task, _), t in tis.items() if task in {"site_b.b1", "site_b.b2", "site_b.b3"}]
    assert len(site_b) == 3
    assert {t.queue for t in site_b} == {"site_b"}
    # three tasks, w2 runs two at a time and w1 idles: only routing keeps them all on w2
    assert {t.hostname for t in site_b} == {"w2"}, {t.task_id: t.hostname for t in site_b}
    central = [t for (task, _), t in tis.items() if task in {"central.c1", "central.c2"}]
    assert {t.queue for t in central} == {"default"}


def test_a_worker_killed_mid_fan_out_costs_a_retry_on_the_survivor(cluster: AirflowCluster) -> None:
    dag_id = "cel_worker_loss"
    api = cluster.api
    run_id = api.trigger(dag_id, {})
    out = MARKERS / run_id  # where each attempt that completes writes <target>.try<N>.done
    # four 20 s restores on 2 x 2 slots: wait until both workers run two each, then lose one
    deadline = time.monotonic() + 90
    while True:
        running = [t for t in api.task_instances(dag_id, run_id) if t.state == "running" and t.hostname]
        if len(running) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(running) == 4, cluster.describe_run(dag_id, run_id)
    victim = "w1"
    lost = sorted(t.map_index for t in running if t.hostname == victim)
    assert lost, {t.map_index: t.hostname for t in running}
    t_kill = time.monotonic()
    killed = cluster.kill_worker(victim)
    try:
        state = api.wait_for_run(dag_id, run_id, timeout=240)
        recovery_s = time.monotonic() - t_kill
        assert state == "success", cluster.describe_run(dag_id, run_id)
        restores = [t for t in api.task_instances(dag_id, run_id) if t.task_id == "restore.each.restore"]
        assert len(restores) == 4
        for ti in restores:
            assert ti.state == "success", ti
            target = f"t{ti.map_index + 1}"
            tries = api.task_instance_tries(dag_id, run_id, ti.task_id, ti.map_index)
            if ti.map_index in lost:
                # try 1 died with the worker; the retry ran on the survivor and completed
                assert [t.try_number for t in tries] == [1, 2], tries
                assert tries[0].hostname == victim and tries[0].state in ("failed", "up_for_retry"), tries
                assert tries[1].hostname == "w2" and tries[1].state == "success", tries
                assert not (out / f"{target}.try1.done").exists(), "the killed attempt looks complete"
                assert (out / f"{target}.try2.done").read_text().strip() == target
            else:
                assert [t.try_number for t in tries] == [1], tries
                assert (out / f"{target}.try1.done").read_text().strip() == target
        print(f"worker {victim} ({len(killed)} processes) killed; run done {recovery_s:.1f}s later")
    finally:
        shutil.rmtree(out, ignore_errors=True)
        with contextlib.suppress(OSError):
            MARKERS.rmdir()  # only if empty: a concurrent session may still use it
        cluster.start_worker(victim)  # later tests (and stop()) expect the full cluster


BIG_DATABASES = ("cel_big_a", "cel_big_b")  # see specs/cel_backup_loss.yaml


@pytest.fixture(scope="module")
def big_source(cluster: AirflowCluster) -> AirflowCluster:
    """Two databases on the metadata server whose compressed dumps take seconds (killable mid-dump)."""
    pg = cluster.metadata
    for name in BIG_DATABASES:
        pg.create_database(name)
        pg.psql("CREATE TABLE payload (id int, a text, b text, c text)", dbname=name)
        pg.psql("INSERT INTO payload SELECT g, md5(g::text), md5((g * 7)::text), repeat(md5(random()::text), 2)"
                " FROM generate_series(1, 400000) g", dbname=name)  # fmt: skip
    # stored in the metadata DB: workers get it through the execution API, as in a deployment
    cluster.api.request("POST", "/connections", json={
        "connection_id": "cel_source", "conn_type": "postgres", "host": "127.0.0.1", "port": pg.port,
        "login": pg.superuser, "schema": "postgres",
    }, ok=(200, 201, 409))  # fmt: skip
    return cluster


def tool_pids(cluster: AirflowCluster, worker: str, tool: str) -> list[int]:
    """Processes named `tool` (pg_dump, pg_restore) running under a worker."""
    return [p.pid for p in cluster.worker_processes(worker) if _name(p) == tool]


def kill_first_worker_running(cluster: AirflowCluster, tool: str, dag_id: str, run_id: str,
                              poll: float) -> tuple[str, str, list[int], float]:
    """SIGKILL the first worker seen running `tool`: (victim, survivor, tool pids, kill time)."""
    deadline = time.monotonic() + 120
    victim = None
    while victim is None:
        victim = next((w for w in ("w1", "w2") if tool_pids(cluster, w, tool)), None)
        assert time.monotonic() < deadline, cluster.describe_run(dag_id, run_id)
        time.sleep(poll)
    t_kill = time.monotonic()
    pids = tool_pids(cluster, victim, tool)
    cluster.kill_worker(victim)
    return victim, ({"w1", "w2"} - {victim}).pop(), pids, t_kill


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def test_a_worker_killed_mid_backup_leaves_no_manifest_and_the_retry_completes_a_verified_backup(
    big_source: AirflowCluster, tmp_path: Path
) -> None:
    from recovery_provider.hooks.store import BackupStore

    cluster, api, dag_id = big_source, big_source.api, "cel_backup_loss"
    location = f"file://{tmp_path}/backups"
    tmp_path.chmod(0o777)
    run_id = api.trigger(dag_id, {"location": location})
    victim, survivor, dumps, t_kill = kill_first_worker_running(cluster, "pg_dump", dag_id, run_id, poll=0.2)
    try:
        store = BackupStore(location)
        # the killed attempt is gone for good; whatever it wrote, it is not a complete backup
        lost = [t for t in api.task_instances(dag_id, run_id) if t.task_id == "backup.each.dump" and t.hostname == victim]
        assert lost, "the victim ran no dump task"
        for ti in lost:
            database = BIG_DATABASES[ti.map_index]
            assert not [b for b in store.list_backups(database) if b.complete], f"{database}: manifest after the kill"
        state = api.wait_for_run(dag_id, run_id, timeout=300)
        assert state == "success", cluster.describe_run(dag_id, run_id)
        for database in BIG_DATABASES:
            (backup,) = store.list_backups(database)  # the retry reused the key: one folder, complete
            assert backup.complete and backup.manifest is not None, backup
            assert store.verify(backup.path, backup.manifest) == []
            assert backup.verified  # the DAG's verify step marked it
        for ti in lost:
            tries = api.task_instance_tries(dag_id, run_id, ti.task_id, ti.map_index)
            assert [(t.try_number, t.hostname) for t in tries] == [(1, victim), (2, survivor)], tries
        print(f"worker {victim} killed during {len(dumps)} pg_dump(s), {len(lost)} dump task(s) lost;"
              f" run done {time.monotonic() - t_kill:.1f}s later")
    finally:
        cluster.start_worker(victim)


RESTORED = {database: f"{database}_restored" for database in BIG_DATABASES}  # see specs/cel_restore_loss.yaml


def restore_marker(cluster: AirflowCluster, database: str) -> str | None:
    """The database's comment (the restore writes `... in progress`, then `... complete`); None if absent."""
    sql = "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s"
    rows = cluster.metadata.psql(sql, [database])
    return rows[0][0] if rows else None


def test_a_worker_killed_mid_restore_leaves_every_target_restored_and_verified_or_retried(
    big_source: AirflowCluster, tmp_path: Path
) -> None:
    cluster, api, dag_id = big_source, big_source.api, "cel_restore_loss"
    pg = cluster.metadata
    for target in RESTORED.values():  # the restore refuses a target it did not create for this backup
        pg.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    location = f"file://{tmp_path}/backups"
    tmp_path.chmod(0o777)
    run_id = api.trigger(dag_id, {"location": location})  # backs the databases up, then restores them
    victim, survivor, restores, t_kill = kill_first_worker_running(cluster, "pg_restore", dag_id, run_id, poll=0.1)
    try:
        lost = [
            t for t in api.task_instances(dag_id, run_id)
            if t.task_id == "restore.each.restore" and t.hostname == victim and t.state == "running"
        ]  # fmt: skip
        assert lost, "the victim ran no restore task"
        lost_targets = [RESTORED[BIG_DATABASES[t.map_index]] for t in lost]
        after_kill = {target: restore_marker(cluster, target) for target in lost_targets}
        for marker in after_kill.values():  # the killed attempt left its target absent or unfinished, never complete
            assert marker is None or marker.endswith(" in progress"), after_kill
        state = api.wait_for_run(dag_id, run_id, timeout=240)
        assert state == "success", cluster.describe_run(dag_id, run_id)
        tis = {(t.task_id, t.map_index): t for t in api.task_instances(dag_id, run_id)}
        for index, (database, target) in enumerate(RESTORED.items()):
            assert tis[("restore.each.restore", index)].state == "success", tis
            assert tis[("restore.each.drill", index)].state == "success", tis  # manifest's rows and checksums
            marker = restore_marker(cluster, target)
            assert marker is not None and marker.endswith(" complete"), marker
            count = "SELECT count(*), sum(id) FROM payload"
            assert pg.psql(count, dbname=target) == pg.psql(count, dbname=database), target
        for ti in lost:
            tries = api.task_instance_tries(dag_id, run_id, ti.task_id, ti.map_index)
            assert [(t.try_number, t.hostname) for t in tries] == [(1, victim), (2, survivor)], tries
            assert tries[1].state == "success", tries
        # nothing half-done lies around: exactly the sources and one complete restore of each
        names = {r[0] for r in pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'cel_big_%'")}
        assert names == set(RESTORED) | set(RESTORED.values()), names
        print(f"worker {victim} killed during {len(restores)} pg_restore(s), {len(lost)} restore task(s) lost;"
              f" run done {time.monotonic() - t_kill:.1f}s later; lost targets right after the kill:"
              f" { {k: v and v.rsplit('} ', 1)[-1] for k, v in after_kill.items()} }")
    finally:
        cluster.start_worker(victim)
        for target in RESTORED.values():
            with contextlib.suppress(Exception):
                pg.psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
