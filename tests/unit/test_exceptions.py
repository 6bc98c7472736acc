"""One exception hierarchy: every error the provider raises on purpose is a RecoveryError, lives in
exceptions.py and survives pickling; argument errors are ValueErrors too."""

from __future__ import annotations

import inspect
import pickle
import re
from pathlib import Path

import pytest

from recovery_provider import exceptions
from recovery_provider.exceptions import ArgumentError, RecoveryError, RenderError, SpecError
from recovery_provider.spec.diagnostics import Diagnostic, Location

pytestmark = pytest.mark.unit
PROVIDER = Path(exceptions.__file__).parent
CLASSES = [c for _, c in inspect.getmembers(exceptions, inspect.isclass)
           if issubclass(c, BaseException) and c.__module__ == exceptions.__name__]


def example(cls: type[BaseException]) -> BaseException:
    if cls is SpecError:
        return SpecError([Diagnostic("error", "bad", "what is wrong", Location("r.yaml", 3, 5))])
    if cls is RenderError:
        return RenderError("step 's': cannot import", ("phases", 0, "steps", 1))
    return cls("what is wrong, and what to do")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_a_recovery_error_and_survives_pickling(cls: type[BaseException]) -> None:
    assert issubclass(cls, RecoveryError)
    error = example(cls)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error)
    assert vars(back) == vars(error)  # diagnostics, message, path


def test_errors_are_defined_in_exceptions_py_only() -> None:
    found = [f"{path.relative_to(PROVIDER)}: {m.group(1)}" for path in PROVIDER.rglob("*.py") if path.name != "exceptions.py"
             for m in re.finditer(r"^class ([A-Z]\w*)\((?:\w*Error|\w*Exception)\)", path.read_text(), re.M)]
    assert found == []
    assert len(CLASSES) >= 13


def test_argument_errors_are_value_errors_too() -> None:
    from recovery_provider.plan.estimate import estimate_plan
    from recovery_provider.spec.durations import parse_duration
    from tests.conftest import plan_of

    with pytest.raises(ArgumentError, match="max_scenarios"):
        estimate_plan(plan_of("recovery: r\nphases: [{id: a, steps: [{id: s, uses: empty}]}]"), 0)
    with pytest.raises(ValueError, match="is not a duration") as raised:
        parse_duration("5")
    assert isinstance(raised.value, ArgumentError)


def test_the_old_homes_still_name_them() -> None:
    from recovery_provider.airflow_api import AirflowApiError
    from recovery_provider.evidence.ledger import LedgerError
    from recovery_provider.hooks.pg import PostgresUnavailable
    from recovery_provider.hooks.store import BackupCorrupt
    from recovery_provider.spec.expressions import UnknownState

    assert {AirflowApiError, LedgerError, PostgresUnavailable, BackupCorrupt, UnknownState} <= set(CLASSES)
