"""The Airflow plugin: records every run of a recovery DAG and shows the evidence in the UI.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so ``pip install`` brings
it with no file copied into a plugins folder. It adds a listener (the run ledger), the pages and
JSON API at ``/recovery`` and two links in the UI: "Recovery evidence" in the navigation, and a
"Recovery report" tab on every DAG run.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from recovery_provider.evidence import URL_PREFIX, listener


class _WebApps:
    """``fastapi_apps``, built on first use: every task process loads plugins (for macros) and
    must not pay for FastAPI and the page templates, which only the api-server serves."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: object, owner: type) -> list[dict[str, Any]]:
        if self._apps is None:
            from recovery_provider.evidence.web import create_app

            self._apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Recovery evidence"}]
        return self._apps


class RecoveryPlugin(AirflowPlugin):
    name = "recovery"
    # Airflow reads these as class attributes (declared on AirflowPlugin, hence no ClassVar)
    listeners: list[Any] = [listener]  # noqa: RUF012
    fastapi_apps = _WebApps()
    external_views: list[Any] = [  # noqa: RUF012
        {"name": "Recovery evidence", "href": f"{URL_PREFIX}/", "destination": "nav",
         "url_route": "recovery-evidence", "category": "browse"},
        {"name": "Recovery report", "href": f"{URL_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
         "destination": "dag_run", "url_route": "recovery-report"},
    ]
