"""Golden files of the spec language: the valid corpus, the invalid corpus and the CLI on both.

``valid/*.yaml`` must load, compile, lint and estimate with no finding at all, and must also pass
the published JSON Schema. ``invalid/NAME.yaml`` must give exactly the lines of
``invalid/NAME.expected``: the diagnostics as ``Diagnostic.format()`` prints them, with the path
relative to the folder. ``warnings/`` holds valid specs whose expected files list their lint and
RTO warnings (an invalid spec never shows warnings: lint runs only on specs that compile).

Expected files are reviewed text, written by hand: when the tool disagrees, decide which is right
rather than copying its output. Where the tool is wrong, the expected file says what it should
print and KNOWN_BUGS marks the case as a strict xfail, so the fix shows up as an XPASS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from recovery_provider.check import CheckedSpec, check_file
from recovery_provider.cli.main import app
from recovery_provider.spec.schema import spec_schema

pytestmark = pytest.mark.spec

HERE = Path(__file__).resolve().parent
VALID = HERE / "valid"
INVALID = HERE / "invalid"
WARNINGS = HERE / "warnings"

VALID_SPECS = sorted(VALID.glob("*.yaml"))
INVALID_SPECS = sorted(INVALID.glob("*.yaml"))
WARNING_SPECS = sorted(WARNINGS.glob("*.yaml"))

# Product bugs this corpus found. The .expected file states the right output.
KNOWN_BUGS: dict[str, str] = {}

runner = CliRunner()


def _params(specs: list[Path], bugs: dict[str, str] = KNOWN_BUGS) -> list[Any]:
    params = []
    for spec in specs:
        reason = bugs.get(spec.stem)
        marks = [pytest.mark.xfail(strict=True, reason=f"product bug: {reason}")] if reason else []
        params.append(pytest.param(spec, id=spec.stem, marks=marks))
    return params


def _expected(spec: Path) -> list[str]:
    return spec.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


def _check_relative(spec: Path, monkeypatch: pytest.MonkeyPatch) -> CheckedSpec:
    """check_file as `recovery validate NAME.yaml` run inside the spec's folder sees it."""
    monkeypatch.chdir(spec.parent)
    return check_file(spec.name)


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


# -- the corpus itself ------------------------------------------------------------------------


def test_corpus_is_complete() -> None:
    assert len(VALID_SPECS) >= 8
    assert len(INVALID_SPECS) >= 25
    for folder in (INVALID, WARNINGS):
        specs = {p.stem for p in folder.glob("*.yaml")}
        expected = {p.stem for p in folder.glob("*.expected")}
        assert specs == expected, f"{folder.name}: specs without .expected {specs - expected}, .expected without spec {expected - specs}"
    assert set(KNOWN_BUGS) <= {p.stem for p in INVALID_SPECS}


# -- valid specs ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda p: p.stem)
def test_valid_spec_is_clean(spec: Path) -> None:
    checked = check_file(spec)
    assert checked.errors == [], "\n".join(d.format() for d in checked.errors)
    assert checked.plan is not None and checked.estimate is not None
    # The valid corpus is warning-free on purpose; specs with intended warnings live in warnings/.
    assert checked.warnings == [], "\n".join(d.format() for d in checked.warnings)


@pytest.fixture(scope="module")
def schema_validator() -> Any:
    schema = spec_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


@pytest.mark.parametrize("spec", [*VALID_SPECS, *WARNING_SPECS], ids=lambda p: p.stem)
def test_valid_spec_matches_the_published_schema(spec: Path, schema_validator: Any) -> None:
    data = yaml.safe_load(spec.read_text(encoding="utf-8"))
    data = json.loads(json.dumps(data, default=str))  # dates as the ISO text JSON would carry
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator.iter_errors(data)]
    assert problems == []


# -- invalid specs ----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", _params(INVALID_SPECS))
def test_invalid_spec_gives_exactly_the_expected_diagnostics(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _check_relative(spec, monkeypatch)
    assert [d.format() for d in checked.diagnostics] == _expected(spec)
    assert checked.errors, "an invalid spec needs at least one error"


@pytest.mark.parametrize("spec", INVALID_SPECS, ids=lambda p: p.stem)
def test_invalid_spec_diagnostics_are_located(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _check_relative(spec, monkeypatch)
    for diagnostic in checked.diagnostics:
        assert diagnostic.location is not None, diagnostic.format()
        assert diagnostic.location.file == spec.name
        assert diagnostic.location.line >= 1 and diagnostic.location.column >= 1
        assert diagnostic.severity in ("error", "warning") and diagnostic.code


@pytest.mark.parametrize("spec", WARNING_SPECS, ids=lambda p: p.stem)
def test_warning_spec_gives_exactly_the_expected_warnings(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _check_relative(spec, monkeypatch)
    assert checked.errors == []
    assert [d.format() for d in checked.diagnostics] == _expected(spec)


# -- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", _params(INVALID_SPECS))
def test_cli_rejects_each_invalid_file(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _check_relative(spec, monkeypatch)
    code, out = _cli("validate", spec.name)
    assert code == 1, out
    lines = out.splitlines()
    for diagnostic in checked.diagnostics:
        assert diagnostic.format() in lines
        assert diagnostic.format().startswith(f"{spec.name}:{diagnostic.location.line}:{diagnostic.location.column}: ")  # type: ignore[union-attr]
    assert "FAILED  1 spec: 0 valid, 1 invalid" in out


@pytest.mark.parametrize("spec", INVALID_SPECS, ids=lambda p: p.stem)
def test_cli_json_lists_the_same_diagnostics(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _check_relative(spec, monkeypatch)
    code, out = _cli("validate", "--json", spec.name)
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["missing"] == []
    [entry] = report["files"]
    assert entry["file"] == spec.name and entry["ok"] is False
    assert entry["diagnostics"] == [d.to_json() for d in checked.diagnostics]
    for item in entry["diagnostics"]:
        assert item["file"] == spec.name and item["line"] >= 1 and item["column"] >= 1


@pytest.mark.parametrize("command", ["plan", "render"])
@pytest.mark.parametrize("spec", [INVALID / "cycle.yaml", INVALID / "unknown_key.yaml"], ids=lambda p: p.stem)
def test_cli_plan_and_render_refuse_invalid_specs(command: str, spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = _check_relative(spec, monkeypatch)
    code, out = _cli(command, spec.name)
    assert code == 1
    assert all(d.format() in out.splitlines() for d in checked.diagnostics)
    code, out = _cli(command, "--json", spec.name)
    assert code == 1
    assert json.loads(out)["diagnostics"] == [d.to_json() for d in checked.diagnostics]


def test_cli_accepts_the_valid_folder() -> None:
    code, out = _cli("validate", str(VALID))
    assert code == 0, out
    assert f"OK  {len(VALID_SPECS)} specs: {len(VALID_SPECS)} valid, 0 invalid; 0 errors, 0 warnings" in out
    code, out = _cli("validate", "--strict", "--json", str(VALID))
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert sorted(Path(f["file"]).name for f in report["files"]) == [p.name for p in VALID_SPECS]
    assert all(f["ok"] and f["diagnostics"] == [] for f in report["files"])


def test_cli_rejects_the_invalid_folder() -> None:
    code, out = _cli("validate", str(INVALID))
    assert code == 1
    assert f"FAILED  {len(INVALID_SPECS)} specs: 0 valid, {len(INVALID_SPECS)} invalid" in out


def test_cli_warnings_fail_only_under_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(WARNINGS)
    code, out = _cli("validate", ".")
    assert code == 0, out
    assert "lint_warnings.yaml:3:11: warning: schedule '@daily' runs every 1d" in out
    code, out = _cli("validate", "--strict", ".")
    assert code == 1
    assert f"{len(WARNING_SPECS)} invalid; 0 errors" in out


@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda p: p.stem)
def test_cli_plan_and_render_the_valid_specs(spec: Path) -> None:
    code, out = _cli("plan", str(spec))
    assert code == 0, out
    assert "critical path: " in out
    code, out = _cli("plan", "--json", str(spec))
    assert code == 0
    assert json.loads(out)["diagnostics"] == []
    code, out = _cli("render", "--json", str(spec))
    assert code == 0
    resolved = json.loads(out)
    assert [p["id"] for p in resolved["phases"]] == [p["id"] for p in yaml.safe_load(spec.read_text(encoding="utf-8"))["phases"]]


def _recovery_executable() -> Path:
    executable = Path(sys.executable).parent / "recovery"
    if not executable.exists():
        pytest.skip("the recovery console script is not installed next to this interpreter")
    return executable


def test_console_script_on_an_invalid_file() -> None:
    result = subprocess.run(
        [str(_recovery_executable()), "validate", "cycle.yaml"], cwd=INVALID, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[: len(_expected(INVALID / "cycle.yaml"))] == _expected(INVALID / "cycle.yaml")
    assert "Traceback" not in result.stdout + result.stderr


def test_console_script_on_the_valid_folder() -> None:
    result = subprocess.run(
        [str(_recovery_executable()), "validate", "--json", str(VALID)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(HERE / "lib")},  # the corpus's own operators, as Airflow would find them
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True
