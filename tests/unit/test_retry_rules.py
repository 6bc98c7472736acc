"""Which errors are worth a retry: retry_on / no_retry_on by class (and base classes) or message,
the permanent errors that never retry, and the policy Airflow asks when a try fails."""

from __future__ import annotations

import datetime as dt

import pytest

from recovery_provider.exceptions import (
    ArgumentError,
    BackupCorrupt,
    BackupIncomplete,
    ConnectionMissing,
    PgBackRestError,
    PostgresUnavailable,
    RecoveryError,
    SpecError,
    StorageError,
    is_permanent,
)
from recovery_provider.retry_rules import check_rule, decide, matching_rule
from recovery_provider.spec.loader import load_spec_text
from tests.conftest import plan_of

pytestmark = pytest.mark.unit


class RestoreVerificationError(BackupCorrupt):  # a user's subclass, named in a spec
    pass


def test_a_class_name_matches_the_class_and_every_base_class() -> None:
    error = RestoreVerificationError("backup at x does not match its manifest")
    assert matching_rule(error, ["RestoreVerificationError"]) == "RestoreVerificationError"
    assert matching_rule(error, ["BackupCorrupt"]) == "BackupCorrupt"
    assert matching_rule(error, ["RecoveryError"]) == "RecoveryError"
    assert matching_rule(error, ["recovery_provider.exceptions.BackupCorrupt"]) is not None
    assert matching_rule(error, ["Exception"]) == "Exception"
    assert matching_rule(error, ["StorageError", "PgToolError", "other_pkg.BackupCorrupt"]) is None


def test_a_dotted_name_matches_a_class_defined_in_a_submodule() -> None:
    import psycopg

    error = psycopg.OperationalError("connection refused")
    assert type(error).__module__.startswith("psycopg")
    assert matching_rule(error, ["psycopg.OperationalError"]) == "psycopg.OperationalError"
    assert matching_rule(error, ["OperationalError"]) == "OperationalError"
    assert matching_rule(error, ["sqlalchemy.OperationalError"]) is None


def test_a_message_pattern_is_searched_in_the_message() -> None:
    error = StorageError("reading s3://b/k timed out after 30s")
    assert matching_rule(error, ["/timed out/"]) == "/timed out/"
    assert matching_rule(error, ["/(?i)TIMED OUT/"]) == "/(?i)TIMED OUT/"
    assert matching_rule(error, ["/^timed out/"]) is None


def test_no_retry_on_fails_at_once_and_wins_over_retry_on() -> None:
    error = StorageError("connection reset")
    assert decide(error).action == "default"  # a storage hiccup: Airflow's retries apply
    decision = decide(error, no_retry_on=["StorageError"])
    assert decision.action == "fail" and "no_retry_on StorageError" in decision.reason
    assert decide(error, retry_on=["StorageError"], no_retry_on=["/reset/"]).action == "fail"


def test_retry_on_retries_only_what_it_names() -> None:
    assert decide(PostgresUnavailable("refused"), retry_on=["PostgresUnavailable"]).action == "retry"
    decision = decide(StorageError("disk full"), retry_on=["PostgresUnavailable", "/timed out/"])
    assert decision.action == "fail" and "none of retry_on" in decision.reason
    # named explicitly, even a permanent error is retried (within the step's retries)
    assert decide(BackupCorrupt("x"), retry_on=["BackupCorrupt"]).action == "retry"


@pytest.mark.parametrize("error", [
    BackupCorrupt("checksum mismatch"), BackupIncomplete("no manifest"), ArgumentError("jobs: -1"),
    ConnectionMissing("connection 'x' is not defined"), PgBackRestError("[031] bad option", code=31, fatal=True),
    RestoreVerificationError("flipped byte"),
], ids=lambda e: type(e).__name__)
def test_errors_no_retry_fixes_fail_at_once_without_any_rule(error: Exception) -> None:
    assert is_permanent(error)
    assert decide(error).action == "fail"


@pytest.mark.parametrize("error", [
    PostgresUnavailable("refused"), StorageError("reset"), RecoveryError("x"), ValueError("x"),
    PgBackRestError("[056] lock", code=56, fatal=False), TimeoutError("slow"),
], ids=lambda e: type(e).__name__)
def test_other_errors_keep_airflows_retries(error: Exception) -> None:
    assert not is_permanent(error)
    assert decide(error).action == "default"


def test_airflows_missing_connection_is_permanent() -> None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    assert is_permanent(AirflowNotFoundException("The conn_id `nowhere` isn't defined"))
    assert not is_permanent(AirflowNotFoundException("no such variable"))


@pytest.mark.parametrize(("rule", "says"), [
    ("/unclosed(/", "not a valid regular expression"),
    ("/timed out", "starts and ends with '/'"),
    ("Backup Corrupt", "not an exception class name"),
    ("", "not an error rule"),
])
def test_bad_rules_are_refused_with_what_a_rule_may_be(rule: str, says: str) -> None:
    with pytest.raises(ArgumentError, match=says):
        check_rule(rule)


SPEC = """
recovery: r
phases:
  - id: p
    steps:
      - id: s
        uses: bash
        with: {bash_command: "exit 1"}
        retries: 3
        retry_delay: 1s
        {rules}
"""


def test_a_spec_step_names_its_rules_and_the_plan_keeps_them() -> None:
    plan = plan_of(SPEC.replace("{rules}", "no_retry_on: [BackupCorrupt, /exit code 1/]\n        retry_on: psycopg.OperationalError"))
    step = plan.phases[0].steps[0]
    assert step.no_retry_on == ("BackupCorrupt", "/exit code 1/")
    assert step.retry_on == ("psycopg.OperationalError",)


def test_a_bad_rule_in_a_spec_is_located() -> None:
    with pytest.raises(SpecError) as raised:
        load_spec_text(SPEC.replace("{rules}", "no_retry_on: [/unclosed(/]"), "r.yaml")
    assert "r.yaml:11" in str(raised.value) and "not a valid regular expression" in str(raised.value)


def test_the_rendered_task_carries_the_policy_airflow_asks() -> None:
    from airflow.sdk.definitions.retry_policy import RetryAction

    from recovery_provider.render.dag import build_dag

    dag = build_dag(plan_of(SPEC.replace("{rules}", "no_retry_on: [/exit code 1/]")))
    task = dag.task_dict["p.s"]
    assert task.retries == 3 and task.retry_delay == dt.timedelta(seconds=1)
    policy = task.retry_policy
    assert policy is not None
    decision = policy.evaluate(RuntimeError("Bash command failed. The command returned a non-zero exit code 1."), 1, 4)
    assert decision.action == RetryAction.FAIL and "no_retry_on /exit code 1/" in str(decision.reason)
    assert policy.evaluate(RuntimeError("exit code 2"), 1, 4).action == RetryAction.DEFAULT
    # a step without rules keeps Airflow's default (no policy) unless its operator is ours
    plain = build_dag(plan_of(SPEC.replace("{rules}", ""))).task_dict["p.s"]
    assert plain.retry_policy is None


def test_our_operators_fail_at_once_on_permanent_errors_by_default() -> None:
    from airflow.sdk.definitions.retry_policy import RetryAction

    from recovery_provider.operators.restore import PostgresRestoreOperator

    op = PostgresRestoreOperator(task_id="r", conn_id="pg", database="shop", retries=3)
    assert op.retry_policy is not None
    assert op.retry_policy.evaluate(BackupCorrupt("flipped byte"), 1, 4).action == RetryAction.FAIL
    assert op.retry_policy.evaluate(PostgresUnavailable("refused"), 1, 4).action == RetryAction.DEFAULT


def test_airflows_task_runner_fails_a_permanent_error_on_the_first_try() -> None:
    from recovery_provider.operators.restore import PostgresRestoreOperator
    from tests.support.retries import airflow_decides

    op = PostgresRestoreOperator(task_id="r", conn_id="pg", database="shop", retries=3)
    assert airflow_decides(op, BackupCorrupt("flipped byte"), try_number=1) == "failed"
    assert airflow_decides(op, PostgresUnavailable("refused"), try_number=1) == "up_for_retry"
    assert airflow_decides(op, PostgresUnavailable("refused"), try_number=4) == "failed"  # retries spent
