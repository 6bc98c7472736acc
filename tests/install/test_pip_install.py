"""The wheel installed with plain pip beside an existing Airflow 3.3, then used as a platform team
would: validate the pack, list the provider, parse the DAGs, run one with `airflow dags test`."""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest

from tests.install.conftest import BACKTRACKING, FIGURES, REPO, Installed, json_output

pytestmark = [pytest.mark.install, pytest.mark.timeout(1500)]

INSTALL_LIMIT_S = 300  # the bar: under 5 minutes, without backtracking
PACK_DAGS = {"database_failover", "nightly_backup", "pitr_drill", "region_recovery", "restore_drill"}
AIRFLOW_ITSELF = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")

# A deployment's own spec, loaded by its own one-line loader file: no external service needed.
# No RTO on purpose: Airflow 3.3.2's `dags test` crashes at the end of a DAG with a deadline
# alert ('dict' object has no attribute 'hex'), after every task succeeded (docs/install.md).
SMOKE_SPEC = """\
recovery: install_smoke
description: Proves an installed package renders and runs a recovery DAG.
defaults: {{retries: 0, timeout: 2m}}
phases:
  - id: prepare
    steps:
      - {{id: mark, uses: bash, with: {{bash_command: "echo prepared > {marks}/prepared"}}, expected_duration: 1s}}
  - id: each
    for_each: {{over: [a, b, c], as: target}}
    steps:
      - {{id: touch, uses: bash, with: {{bash_command: "echo {{{{ target }}}} > {marks}/{{{{ target }}}}"}}, expected_duration: 1s}}
  - id: prune
    steps:
      - id: retention
        uses: backup.retention
        with: {{location: "{{{{ conn.backups.extra_dejson.location }}}}", keep_last: 1, confirm: true}}
        expected_duration: 1s
"""
SMOKE_LOADER = """\
# Airflow DAGs from this deployment's recovery specs (the words airflow and dag keep safe mode happy)
from recovery_provider.loader import load_dags
load_dags(__file__, "recovery_specs")
"""


def test_plain_pip_install_beside_airflow_is_quick_and_does_not_backtrack(installed: Installed) -> None:
    assert installed.install_seconds < INSTALL_LIMIT_S, FIGURES
    assert BACKTRACKING not in installed.install_log, installed.install_log[-3000:]
    assert installed.after["airflow-provider-recovery"]
    for name in AIRFLOW_ITSELF:  # the deployment's Airflow is left exactly as it was
        assert installed.after[name] == installed.before[name], name
    assert "apache-airflow-providers-amazon" not in installed.after, "S3 support is the [s3] extra"
    # the package runs from the venv, not from this checkout
    where = installed.run("python", "-c", "import recovery_provider; print(recovery_provider.__file__)").stdout
    assert str(installed.root) in where and str(REPO) not in where
    # docker-compose.yml installs this very wheel (by the name `uv build` gives it)
    assert f"/opt/recovery/dist/{installed.wheel.name}[" in (REPO / "docker-compose.yml").read_text()


def test_the_s3_extra_resolves_in_minutes(installed: Installed) -> None:
    """`pip install 'WHEEL[s3]'` as a dry run: pip steps boto3 down into aiobotocore's botocore
    range, a bounded walk (no more trips through old amazon, s3fs and PyAthena releases)."""
    started = time.monotonic()
    result = installed.run("python", "-m", "pip", "install", "--dry-run", f"{installed.wheel}[s3]", timeout=400)
    seconds = time.monotonic() - started
    would = next(line for line in result.stdout.splitlines() if line.startswith("Would install"))
    FIGURES["s3_extra_dry_run_s"] = round(seconds, 1)
    FIGURES["s3_extra_packages"] = len(would.split()) - 2
    # each boto3 release pip had to look at (downloaded, or taken from pip's cache)
    FIGURES["s3_extra_boto3_candidates"] = len(re.findall(r"(?:Downloading|Using cached) boto3-", result.stdout))
    assert seconds < 240, FIGURES
    assert "apache-airflow-providers-amazon-" in would and "s3fs-" in would and "aiobotocore-" in would
    for name in AIRFLOW_ITSELF:
        assert not re.search(rf" {name}-\d", would), f"the [s3] extra would reinstall {name}"


@pytest.fixture(scope="module")
def deployment(installed: Installed) -> Installed:
    """The pack's dags folder plus a deployment's own spec folder and loader; a migrated SQLite
    metadata DB; the backup store as a connection of this package's type."""
    shutil.copytree(REPO / "dags", installed.dags, dirs_exist_ok=True)
    marks = installed.home / "marks"
    marks.mkdir()
    (installed.dags / "recovery_specs").mkdir()
    (installed.dags / "recovery_specs" / "install_smoke.yaml").write_text(SMOKE_SPEC.format(marks=marks))
    (installed.dags / "deployment_recovery_dags.py").write_text(SMOKE_LOADER)
    store = installed.home / "backups"
    for day in (1, 2, 3):  # three complete backups of one database, oldest first
        folder = store / "orders" / f"2026-01-0{day}"
        folder.mkdir(parents=True)
        manifest = {"manifest_version": 1, "objects": [], "finished_at": f"2026-01-0{day}T02:00:00+00:00"}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    installed.env["AIRFLOW_CONN_BACKUPS"] = json.dumps(
        {"conn_type": "recovery_backup_store", "extra": {"location": f"file://{store}"}}
    )
    started = time.monotonic()
    installed.run("airflow", "db", "migrate")
    FIGURES["db_migrate_s"] = round(time.monotonic() - started, 1)
    return installed


def test_the_installed_package_validates_and_parses_the_pack(deployment: Installed) -> None:
    out = deployment.run("recovery", "validate", str(deployment.dags)).stdout
    assert "6 specs: 6 valid, 0 invalid; 0 errors" in out, out
    deployment.run("airflow", "dags", "reserialize")
    listed = json_output(deployment.run("airflow", "dags", "list", "-o", "json").stdout)
    assert {d["dag_id"] for d in listed} == PACK_DAGS | {"install_smoke"}
    errors = json_output(deployment.run("airflow", "dags", "list-import-errors", "-o", "json").stdout)
    assert errors == [], errors


def test_airflow_lists_the_provider_its_hooks_forms_and_triggers(deployment: Installed) -> None:
    def ours(*command: str) -> list[dict[str, str]]:
        rows = json_output(deployment.run("airflow", "providers", *command, "-o", "json").stdout)
        return [row for row in rows if "recovery" in json.dumps(row)]

    (provider,) = ours("list")
    assert provider["package_name"] == "airflow-provider-recovery"
    assert provider["version"] == deployment.after["airflow-provider-recovery"]
    hooks = {row["connection_type"]: row for row in ours("hooks")}
    assert set(hooks) == {"recovery_backup_store", "recovery_airflow_api"}
    assert hooks["recovery_backup_store"]["class"] == "recovery_provider.hooks.backup_store.BackupStoreHook"
    assert hooks["recovery_airflow_api"]["hook_name"] == "Airflow REST API (recovery)"
    assert {row["field_behaviours"] for row in ours("behaviours")} == set(hooks)
    assert [row["connection_parameter_name"] for row in ours("widgets")] == ["extra__recovery_backup_store__location"]
    assert any("recovery_provider.triggers.probe" in json.dumps(row) for row in ours("triggers"))
    # the [recovery] section is Airflow configuration now
    value = deployment.run("airflow", "config", "get-value", "recovery", "ledger_location", check=False)
    assert value.returncode == 0, value.stderr[-2000:]


def test_a_recovery_dag_runs_with_airflow_dags_test(deployment: Installed) -> None:
    started = time.monotonic()
    result = deployment.run("airflow", "dags", "test", "install_smoke", check=False, timeout=600)
    FIGURES["dags_test_s"] = round(time.monotonic() - started, 1)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    marks = deployment.home / "marks"
    assert sorted(p.name for p in marks.iterdir()) == ["a", "b", "c", "prepared"]
    assert (marks / "b").read_text().strip() == "b"  # the fan-out target reached its step
    # the retention step found the store through the connection and kept only the newest backup
    assert sorted(p.name for p in (deployment.home / "backups" / "orders").iterdir()) == ["2026-01-03"]
    # the plugin (airflow.plugins entry point) recorded the run in the ledger: the report reads it
    assert list((deployment.home / "recovery-ledger" / "install_smoke").glob("*.json"))
    report = deployment.run("recovery", "report", "install_smoke").stdout
    assert "install_smoke" in report and "success" in report, report

