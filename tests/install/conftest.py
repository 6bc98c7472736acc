"""A platform team's install, for real: a fresh virtualenv with an existing Airflow 3.3 (installed with
pip under the constraints CI uses, as a team installs Airflow under its own), then this project's
wheel with plain `pip install WHEEL` and no constraints. Once per session (about 3 minutes, most
of it installing Airflow); pip's own cache is used, as on any build machine.

The figures (seconds, packages added, pip version) are printed at the end of the session and kept
in tests/artifacts/install-figures.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VERSION = "3.3.2"
FIGURES: dict[str, Any] = {}
BACKTRACKING = "pip is looking at multiple versions"


def freeze(python: Path) -> dict[str, str]:
    """name -> version (or the file URL of a local wheel) of every package in a venv."""
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def json_output(text: str) -> Any:
    """The JSON document of an `airflow ... -o json` output (Airflow prints warnings on stdout too)."""
    for line in reversed(text.splitlines()):
        if line.startswith(("[", "{")):
            return json.loads(line)
    raise AssertionError(f"no JSON in the output:\n{text[-3000:]}")


@dataclass
class Installed:
    """The venv after the install, and how to run its commands in its own Airflow home."""

    root: Path
    wheel: Path
    home: Path
    dags: Path
    before: dict[str, str]
    after: dict[str, str]
    install_seconds: float
    install_log: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(self, *args: str, timeout: float = 300, extra_env: Mapping[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command of the venv (`airflow`, `recovery`, `python`...), run outside the repository."""
        command = [str(self.bin / args[0]), *args[1:]]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.home,
            env={**self.env, **(extra_env or {})},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result


def clean_env(home: Path, dags: Path) -> dict[str, str]:
    """The machine's environment without this repository's venv, sources or Airflow settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHON", "RECOVERY_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def build_wheel(out: Path, python: Path) -> Path:
    """`uv build --wheel` (what scripts/_env.sh installs), else pip's PEP 517 build."""
    uv = shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    if Path(uv).exists():
        subprocess.run([uv, "build", "--wheel", "--quiet", "-o", str(out), str(REPO)], check=True, timeout=300)
    else:
        subprocess.run([str(python), "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                       check=True, timeout=300)
    (wheel,) = out.glob("airflow_provider_recovery-*.whl")
    return wheel


def timed(figure: str, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    FIGURES[figure] = round(time.monotonic() - started, 1)
    return result


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("install")
    home, dags = base / "airflow-home", base / "airflow-home" / "dags"
    dags.mkdir(parents=True)
    env = clean_env(home, dags)
    venv = base / "venv"
    python = venv / "bin" / "python"
    # sys.executable is the project's venv; `-m venv` takes its base interpreter, as a team would
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    # an official image ships a current pip: so does this venv
    timed("pip_upgrade_s", [str(python), "-m", "pip", "install", "-q", "-U", "pip"], check=True, env=env, timeout=300)
    FIGURES["pip"] = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, text=True,
                                    check=True).stdout.split()[1]
    existing = timed(
        "existing_airflow_install_s",
        [str(python), "-m", "pip", "install", "-q", f"apache-airflow=={AIRFLOW_VERSION}",
         "-c", str(REPO / "requirements/constraints.txt")],
        env=env, timeout=900,
    )
    assert existing.returncode == 0, existing.stderr[-3000:]
    before = freeze(python)
    wheel = build_wheel(base / "dist", python)
    # THE step under test: plain pip, no constraints, no --no-deps, against the existing Airflow
    started = time.monotonic()
    install = subprocess.run([str(python), "-m", "pip", "install", str(wheel)],
                             capture_output=True, text=True, env=env, timeout=900)
    seconds = time.monotonic() - started
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    after = freeze(python)
    added = sorted(set(after) - set(before))
    changed = sorted(n for n in before if n in after and before[n] != after[n])
    FIGURES.update(
        wheel_install_s=round(seconds, 1),
        command=f"pip install {wheel.name}",
        packages_before=len(before),
        packages_added=len(added),
        added=[f"{n}=={after[n]}" for n in added],
        changed=[f"{n} {before[n]} -> {after[n]}" for n in changed],
    )
    yield Installed(venv, wheel, home, dags, before, after, seconds, install.stdout + install.stderr, env)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.write_line("install figures: " + json.dumps(FIGURES))
    artifacts = REPO / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "install-figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
