"""What every recovery operator shares: dry-run handling, run keys, durations, secret-free results.

``supports_dry_run = True`` tells the DAG factory that the operator honours
``params.dry_run`` itself: it logs exactly what it would do and changes nothing, instead of being
skipped, so a dry run still exercises argument rendering, connections and read-only checks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from airflow.sdk import BaseOperator

from recovery_provider.spec.durations import parse_duration


def seconds(value: object, what: str) -> float:
    """A duration argument: ``"30s"``/``"15m"`` text, a timedelta, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration such as 30s or 15m, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


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
    raise ValueError("no logical date and no run id in the context: pass run_key explicitly")


class RecoveryOperator(BaseOperator):
    """Base of the provider's operators; subclasses implement ``run`` and ``describe_dry_run``."""

    supports_dry_run: ClassVar[bool] = True
    ui_color = "#e8f4ea"

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
