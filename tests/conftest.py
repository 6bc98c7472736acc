from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from recovery_provider.plan.compiler import compile_plan
from recovery_provider.plan.model import Plan
from recovery_provider.spec.diagnostics import Diagnostic
from recovery_provider.spec.loader import load_spec_text

REPO = Path(__file__).resolve().parent.parent


def compile_text(text: str) -> tuple[Plan | None, list[Diagnostic]]:
    """Load and compile a spec written inline in a test (dedented)."""
    return compile_plan(load_spec_text(textwrap.dedent(text), "test.yaml").spec)


def plan_of(text: str) -> Plan:
    plan, diagnostics = compile_text(text)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert plan is not None and not errors, errors
    return plan


@pytest.fixture(autouse=True, scope="session")
def _plan_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Loaders in the test process keep their compiled plans out of ~/airflow (plan/cache.py)."""
    os.environ.setdefault("AIRFLOW__RECOVERY__PLAN_CACHE", str(tmp_path_factory.mktemp("plan-cache")))


@pytest.fixture
def repo() -> Path:
    return REPO
