"""docker-compose.yml checked without a Docker engine: structure, mounts, install step, and that its
CeleryExecutor settings are the ones the Celery test tier (tests/celery) proves."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

import recovery_provider
from tests.support.airflow_cluster import CELERY_EXECUTOR_SETTINGS, CeleryWorker

pytestmark = pytest.mark.unit

AIRFLOW_IMAGE = "apache/airflow:3.3.2-python3.11"
COMPONENTS = {"api-server", "scheduler", "dag-processor", "triggerer"}


@pytest.fixture
def compose(repo: Path) -> dict[str, Any]:
    data = yaml.safe_load((repo / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("apache/airflow:")}


def shell_of(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:2] == ["bash", "-c"], command
    return str(command[2])


def airflow_args(service: dict[str, Any]) -> list[str]:
    """The arguments after `exec airflow` (or `airflow`) in a service's shell command."""
    last = shell_of(service).split("&&")[-1]
    words = shlex.split(last)
    return words[words.index("airflow") + 1 :]


def test_compose_file_is_consistent(compose: dict[str, Any], repo: Path) -> None:
    services = compose["services"]
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                assert (repo / source).exists(), f"{name} mounts {source}, which does not exist"
                assert target.startswith("/opt/"), volume
            else:
                used.add(source)
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert used == declared, f"named volumes used {sorted(used)} != declared {sorted(declared)}"
    assert {"postgres", "source-db", "redis", "minio"} <= set(services)


def test_every_airflow_container_runs_the_same_image_env_and_mounts(compose: dict[str, Any]) -> None:
    airflow = airflow_services(compose)
    assert {s["image"] for s in airflow.values()} == {AIRFLOW_IMAGE}
    envs = [s["environment"] for s in airflow.values()]
    assert all(env == envs[0] for env in envs), "Airflow containers must share one configuration"
    runners = {n: s for n, s in airflow.items() if n != "airflow-init"}
    for name, service in runners.items():
        mounts = {v.split(":")[1] for v in service["volumes"]}
        assert {"/opt/recovery", "/opt/airflow/dags", "/opt/airflow/plugins"} <= mounts, name
        deps = service["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
    started = {airflow_args(s)[0] for s in runners.values() if airflow_args(s)[0] != "celery"}
    assert started == COMPONENTS
    assert airflow_args(airflow["airflow-init"]) == ["db", "migrate"]


def test_the_install_step_installs_the_built_wheel_with_its_extras_and_ci_constraints(
    compose: dict[str, Any], repo: Path
) -> None:
    # the wheel `uv build` writes for this version (tests/install installs the same file with pip)
    wheel = f"/opt/recovery/dist/airflow_provider_recovery-{recovery_provider.__version__}-py3-none-any.whl"
    for name, service in airflow_services(compose).items():
        if name == "airflow-init":
            continue  # migrating needs no provider: its tables are Airflow's own
        install = shlex.split(shell_of(service).split("&&")[0])
        assert install[:3] == ["pip", "install", "--no-cache-dir"], name
        assert install[install.index("-c") + 1] == "/opt/recovery/requirements/constraints.txt", name
        assert install[-1] == f"{wheel}[celery,s3]", name
    # the extras exist; celery carries the pin (celery 5.7.0 breaks the Celery provider), s3 the amazon provider
    pyproject = (repo / "pyproject.toml").read_text()
    extra = re.search(r"^celery = \[(.*?)\n\]", pyproject, re.S | re.M)
    assert extra and '"celery[redis]<5.7"' in extra.group(1) and "apache-airflow-providers-celery" in extra.group(1)
    s3 = re.search(r"^s3 = \[(.*?)\n\]", pyproject, re.S | re.M)
    assert s3 and "apache-airflow-providers-amazon[" in s3.group(1) and "s3fs" in s3.group(1)
    pins = dict(
        line.split("==", 1) for line in (repo / "requirements/constraints.txt").read_text().splitlines() if "==" in line
    )
    assert pins["apache-airflow"] == AIRFLOW_IMAGE.split(":")[1].split("-")[0]
    assert tuple(int(p) for p in pins["celery"].split(".")[:2]) < (5, 7)
    assert "apache-airflow-providers-celery" in pins and "redis" in pins


def test_celery_settings_match_the_test_tier(compose: dict[str, Any]) -> None:
    env = compose["x-airflow-env"]
    for section, values in CELERY_EXECUTOR_SETTINGS.items():
        for key, value in values.items():
            name = f"AIRFLOW__{section.upper()}__{key.upper()}"
            assert str(env.get(name)) == value, f"{name}={env.get(name)!r}, the tests prove {value!r}"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    # the same result-backend form as the tests: PostgreSQL through celery's database backend
    assert re.fullmatch(r"db\+postgresql://[^@]+@postgres:5432/airflow", env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")


def test_workers_are_started_like_the_test_tier_and_one_listens_to_the_site_queue(
    compose: dict[str, Any],
) -> None:
    workers = {n: s for n, s in airflow_services(compose).items() if airflow_args(s)[:2] == ["celery", "worker"]}
    assert len(workers) == 2
    seen: dict[str, CeleryWorker] = {}
    for name, service in workers.items():
        args = airflow_args(service)
        opts = dict(itertools.pairwise(args))  # option -> the word after it
        concurrency = int(opts["--concurrency"])
        assert str(concurrency) == CELERY_EXECUTOR_SETTINGS["celery"]["worker_concurrency"], name
        worker_name = opts["--celery-hostname"].split("@")[0]
        worker = CeleryWorker(
            worker_name,
            tuple(opts["--queues"].split(",")),
            concurrency,
            serve_logs="--skip-serve-logs" not in args,
        )
        # the test harness builds exactly this command line for the same worker
        assert worker.args() == args, name
        assert service["hostname"], name  # distinct task-instance hostnames, as in the tests
        seen[worker_name] = worker
    assert [w for w in seen.values() if "site_b" in w.queues] == [seen["w2"]]
    assert all("default" in w.queues for w in seen.values())
    assert sum(not w.serve_logs for w in seen.values()) == 1  # as verified: w2 skips the log server


def test_scheduler_and_api_server_share_the_run_ledger_in_the_bucket(compose: dict[str, Any]) -> None:
    env = compose["x-airflow-env"]
    ledger = env["AIRFLOW__RECOVERY__LEDGER_LOCATION"]
    conn_id, _, rest = ledger.removeprefix("s3://").partition("@")
    bucket = rest.split("/")[0]
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in env, f"the ledger's connection {conn_id} is not defined"
    assert f"local/{bucket}" in " ".join(compose["services"]["minio-init"]["entrypoint"]), "the ledger's bucket is never created"


def test_the_backup_store_connection_uses_this_providers_type_and_the_bucket(compose: dict[str, Any]) -> None:
    import json

    env = compose["x-airflow-env"]
    store = json.loads(env["AIRFLOW_CONN_RECOVERY_BACKUPS"])
    assert store["conn_type"] == "recovery_backup_store"
    conn_id, _, rest = store["extra"]["location"].removeprefix("s3://").partition("@")
    assert f"AIRFLOW_CONN_{conn_id.upper()}" in env
    assert f"local/{rest.split('/')[0]}" in " ".join(compose["services"]["minio-init"]["entrypoint"])
