"""Airflow's own REST API as a connection (type ``recovery_airflow_api``, default id ``airflow_api``).

The preflight pool check and the run notes of recovery DAGs call the public API with this
connection's user (Airflow 3 task code cannot read pools from the metadata database). Any
connection type with host, login and password works; this type gives it a form of its own
(declared in ``recovery_provider.provider_info``) and a *Test* button that reads the pools.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from recovery_provider.airflow_api import AirflowApi


def api_base_url(host: str | None, scheme: str | None, port: int | None) -> str:
    """The API server URL from a connection: a full URL in host, or host + scheme + port."""
    host = host or "localhost"
    return host if "://" in host else f"{scheme or 'http'}://{host}:{port or 8080}"


class AirflowApiHook(BaseHook):
    """An :class:`~recovery_provider.airflow_api.AirflowApi` client for a connection."""

    conn_name_attr = "airflow_api_conn_id"
    default_conn_name = "airflow_api"
    conn_type = "recovery_airflow_api"
    hook_name = "Airflow REST API (recovery)"

    def __init__(self, airflow_api_conn_id: str = default_conn_name, timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.airflow_api_conn_id = airflow_api_conn_id
        self.timeout = timeout

    def get_conn(self) -> AirflowApi:
        conn = self.get_connection(self.airflow_api_conn_id)
        return AirflowApi(api_base_url(conn.host, conn.schema, conn.port), conn.login, conn.password, timeout=self.timeout)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's *Test* button: log in and read the pools, which is what the DAGs will do."""
        try:
            api = self.get_conn()
            total = api.request("GET", "/pools?limit=1").json().get("total_entries")
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"{api.base_url}: logged in, {total} pool(s) readable"
