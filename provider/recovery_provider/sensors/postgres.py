"""PostgreSQL sensors: is the server up (and in the role we expect), is the replica close enough."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recovery_provider.operators.base import seconds
from recovery_provider.sensors.base import ProbeSensor


def _optional_int(value: object) -> int | None:
    """A rendered template may turn a number into text, or an unset value into ''."""
    if value is None or value == "":
        return None
    return int(str(value))


class PostgresHealthSensor(ProbeSensor):
    """Wait until a server accepts connections and ``check_sql`` returns a truthy first value.

    ``expect_in_recovery``: ``True`` waits for a standby, ``False`` for a primary (e.g. after a
    promotion), ``None`` for either. Alias ``postgres.health``.
    """

    template_fields: Sequence[str] = ("conn_id", "database", "check_sql", "expect_in_recovery")
    probe_name = "postgres_health"

    def __init__(
        self,
        *,
        conn_id: str,
        database: str | None = None,
        check_sql: str = "SELECT 1",
        expect_in_recovery: bool | None = None,
        connect_timeout: int = 5,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 10.0)
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.database = database
        self.check_sql = check_sql
        self.expect_in_recovery = expect_in_recovery
        self.connect_timeout = connect_timeout

    def probe_kwargs(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "database": self.database or None,
            "check_sql": self.check_sql,
            "expect_in_recovery": self.expect_in_recovery,
            "connect_timeout": self.connect_timeout,
        }


class ReplicaLagSensor(ProbeSensor):
    """Wait until a standby's lag is within ``max_lag`` (a duration) and/or ``max_lag_bytes``.

    Byte lag needs ``primary_conn_id`` (the primary's current WAL position). Alias
    ``postgres.replica_lag``.
    """

    template_fields: Sequence[str] = ("conn_id", "primary_conn_id", "max_lag", "max_lag_bytes")
    probe_name = "replica_lag"

    def __init__(
        self,
        *,
        conn_id: str,
        primary_conn_id: str | None = None,
        max_lag: str | float | None = "30s",
        max_lag_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 5.0)
        super().__init__(**kwargs)
        if max_lag is None and max_lag_bytes is None:
            raise ValueError("give max_lag (e.g. 30s) and/or max_lag_bytes: otherwise any lag would pass")
        self.conn_id = conn_id
        self.primary_conn_id = primary_conn_id
        self.max_lag = max_lag
        self.max_lag_bytes = max_lag_bytes
        if max_lag_bytes is not None and not primary_conn_id:
            raise ValueError("max_lag_bytes needs primary_conn_id: the lag in bytes is measured against the primary")

    def probe_kwargs(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "primary_conn_id": self.primary_conn_id or None,
            "max_lag_seconds": None if self.max_lag in (None, "") else seconds(self.max_lag, "max_lag"),
            "max_lag_bytes": _optional_int(self.max_lag_bytes),
        }
