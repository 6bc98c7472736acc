"""The `recovery` CLI on the shipped DAG pack and on broken input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from recovery_provider.cli.main import app
from recovery_provider.spec.schema import schema_json

pytestmark = pytest.mark.unit
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_the_dag_pack_validates(repo: Path) -> None:
    code, out = run("validate", str(repo / "dags"))
    assert code == 0, out
    assert "0 invalid; 0 errors" in out


def test_validate_fails_on_errors_and_names_the_place(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("recovery: r\nphases:\n  - id: a\n    steps:\n      - {id: s, uses: empty, retires: 2}\n")
    code, out = run("validate", str(spec))
    assert code == 1
    assert f"{spec}:5:30: error: phases[0].steps[0]: unknown key 'retires', did you mean 'retries'?" in out


def test_validate_json_lists_diagnostics(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("recovery: a\nphases: [{id: p, steps: [{id: s, uses: empty}]}]\n")
    (tmp_path / "b.yml").write_text("recovery: b\nphases: []\n")
    code, out = run("validate", "--json", str(tmp_path))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    by_file = {Path(f["file"]).name: f for f in report["files"]}
    assert by_file["a.yaml"]["ok"] is True
    assert by_file["a.yaml"]["diagnostics"][0]["code"] == "step-no-timeout"
    (error,) = by_file["b.yml"]["diagnostics"]
    assert (error["line"], error["column"], error["severity"]) == (2, 9, "error")


def test_strict_makes_warnings_fail(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("recovery: a\nphases: [{id: p, steps: [{id: s, uses: empty}]}]\n")
    assert run("validate", str(tmp_path))[0] == 0
    assert run("validate", "--strict", str(tmp_path))[0] == 1


def test_validate_reports_missing_paths_and_empty_folders(tmp_path: Path) -> None:
    code, out = run("validate", str(tmp_path / "nope"))
    assert code == 1 and "no such file or folder" in out
    code, out = run("validate", str(tmp_path))
    assert code == 1 and "no spec files" in out


def test_plan_shows_paths_critical_path_and_verdict(repo: Path) -> None:
    code, out = run("plan", str(repo / "dags/specs/database_failover.yaml"))
    assert code == 0, out
    for expected in ("promote", "restore", "critical path:", "verdict (worst path): meets the RTO of 15m", "Gantt"):
        assert expected in out


def test_plan_json_carries_the_estimate(repo: Path) -> None:
    code, out = run("plan", "--json", str(repo / "dags/specs/database_failover.yaml"))
    plan = json.loads(out)
    assert code == 0
    assert {s["label"] for s in plan["scenarios"]} == {"promote", "restore", "restore_pitr"}
    assert plan["worst"]["label"] == "restore" and plan["verdict"] == "meets"
    assert plan["worst"]["planned_seconds"] <= plan["rto_seconds"]


def test_plan_of_a_broken_spec_shows_its_errors(tmp_path: Path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text("recovery: x\nphases: [{id: a, after: ghost, steps: [{id: s, uses: empty}]}]\n")
    code, out = run("plan", str(spec))
    assert code == 1 and "runs after 'ghost', which does not exist" in out


def test_render_spells_out_defaults_and_dependencies(repo: Path) -> None:
    code, out = run("render", str(repo / "dags/specs/database_failover.yaml"))
    resolved = yaml.safe_load(out)
    assert code == 0
    phases = {p["id"]: p for p in resolved["phases"]}
    assert phases["approve_cutover"]["after"] == ["promote", "restore", "restore_pitr"]
    stop_writes = phases["promote"]["steps"][0]
    assert (stop_writes["retries"], stop_writes["timeout"], stop_writes["max_retry_delay"]) == (3, "10m", "2m")
    assert resolved["params"]["dry_run"] == {"default": False, "description": "Log what would be done; change nothing.", "type": "boolean"}


def test_schema_is_published_and_current(repo: Path) -> None:
    code, out = run("schema")
    assert code == 0 and json.loads(out)["properties"]["recovery"]["type"] == "string"
    published = (repo / "docs/spec.schema.json").read_text()
    assert published == schema_json(), "docs/spec.schema.json is stale: run `recovery schema -o docs/spec.schema.json`"


def test_no_arguments_prints_help() -> None:
    result = runner.invoke(app, [])
    assert "validate" in result.output and "plan" in result.output


def test_spec_reference_is_generated_from_the_schema_and_current(repo: Path) -> None:
    code, out = run("schema", "--markdown")
    assert code == 0 and "| `on_failure` |" in out and "## Step" in out
    assert (repo / "docs/spec-reference.md").read_text() == out, "stale: run `recovery schema --markdown -o docs/spec-reference.md`"


def test_pools_sync_refuses_specs_that_disagree_on_a_pool(tmp_path: Path) -> None:
    for name, slots in (("a", 2), ("b", 3)):
        (tmp_path / f"{name}.yaml").write_text(
            f"recovery: {name}\npools: {{io: {{slots: {slots}}}}}\ndefaults: {{timeout: 1m}}\n"
            "phases: [{id: p, steps: [{id: s, uses: empty, pool: io}]}]\n"
        )
    result = runner.invoke(app, ["pools", "sync", str(tmp_path), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "pool 'io' is declared with 2 slots in" in result.output and "and 3 in" in result.output
