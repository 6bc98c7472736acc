"""What every recovery operator shares: dry-run handling, run keys, durations, secret-free results.

``supports_dry_run = True`` tells the DAG factory that the operator honours
``params.dry_run`` itself: it logs exactly what it would do and changes nothing, instead of being
skipped, so a dry run still exercises argument rendering, connections and read-only checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

from recovery_provider.exceptions import ArgumentError
from recovery_provider.retry_rules import decide
from recovery_provider.spec.durations import parse_duration


def seconds(value: object, what: str) -> float:
    """A duration argument: ``"30s"``/``"15m"`` text, a timedelta, or a number of seconds."""
    if isinstance(value, bool):
        raise ArgumentError(f"{what}: expected a duration such as 30s or 15m, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ArgumentError(f"{what}: {exc}") from None


def is_dry_run(context: Any) -> bool:
    params = context.get("params") or {}
    return bool(params.get("dry_run"))


def run_key_from_context(context: Any) -> str:
    """The run's key in the backup layout: its logical date (UTC, compact) or, without one, its run id."""
    logical = context.get("logical_date")
    if isinstance(logical, dt.datetime):
        return logical.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = context.get("run_id")
    if run_id:
        return str(run_id)
    raise ArgumentError("no logical date and no run id in the context: pass run_key explicitly")


class ErrorRulesPolicy(RetryPolicy):
    """Airflow's retry policy deciding with :func:`recovery_provider.retry_rules.decide`: fail at once on
    errors no retry fixes and on the step's ``no_retry_on``; with ``retry_on``, retry only those."""

    def __init__(self, retry_on: Sequence[str] = (), no_retry_on: Sequence[str] = ()) -> None:
        self.retry_on, self.no_retry_on = tuple(retry_on), tuple(no_retry_on)

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int, context: Any = None) -> RetryDecision:
        decision = decide(exception, self.retry_on, self.no_retry_on)
        if decision.action == "fail":
            return RetryDecision.fail(decision.reason)
        if decision.action == "retry":
            return RetryDecision.retry(reason=decision.reason)
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"__type": "ErrorRulesPolicy", "retry_on": list(self.retry_on), "no_retry_on": list(self.no_retry_on)}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> ErrorRulesPolicy:
        return cls(data.get("retry_on", ()), data.get("no_retry_on", ()))


class RecoveryOperator(BaseOperator):
    """Base of the provider's operators; subclasses implement ``run`` and ``describe_dry_run``.

    Unless given a ``retry_policy``, errors no retry can fix (``exceptions.is_permanent``: a corrupt
    or missing backup, a bad argument, a missing connection) fail the task at once.
    """

    supports_dry_run: ClassVar[bool] = True
    ui_color = "#e8f4ea"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.retry_policy is None:
            self.retry_policy = ErrorRulesPolicy()

    def execute(self, context: Any) -> Any:
        if is_dry_run(context):
            plan = self.describe_dry_run(context)
            self.log.info("dry run: would %s (nothing changed)", plan)
            return {"dry_run": True, "would": plan}
        return self.run(context)

    def run(self, context: Any) -> Any:
        raise NotImplementedError

    def describe_dry_run(self, context: Any) -> str:
        raise NotImplementedError


class PostgresOperatorBase(RecoveryOperator):
    """Arguments every PostgreSQL operator shares: the connection and how hard to try reaching it."""

    def __init__(
        self,
        *,
        conn_id: str,
        connect_attempts: int = 3,
        connect_retry_delay: float | str = 1.0,
        pg_bin_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.connect_attempts = connect_attempts
        self.connect_retry_delay = connect_retry_delay
        self.pg_bin_dir = pg_bin_dir

    def target(self, database: str | None = None) -> Any:
        from recovery_provider.hooks.pg import PgTarget

        return PgTarget.from_conn_id(self.conn_id, database)

    @property
    def retry_delay_seconds(self) -> float:
        return seconds(self.connect_retry_delay, "connect_retry_delay")
