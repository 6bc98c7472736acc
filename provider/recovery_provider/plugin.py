"""The Airflow plugin: records every run of a recovery DAG and shows the evidence in the UI.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so ``pip install`` brings
it with no file copied into a plugins folder. It adds a listener (the run ledger), the pages and
JSON API at ``/recovery`` and two links in the UI: "Recovery evidence" in the navigation, and a
"Recovery report" tab on every DAG run.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from recovery_provider.evidence import listener
from recovery_provider.evidence.web import URL_PREFIX, create_app


class RecoveryPlugin(AirflowPlugin):
    name = "recovery"
    # Airflow reads these as class attributes (declared on AirflowPlugin, hence no ClassVar)
    listeners: list[Any] = [listener]  # noqa: RUF012
    fastapi_apps: list[Any] = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Recovery evidence"}]  # noqa: RUF012
    external_views: list[Any] = [  # noqa: RUF012
        {"name": "Recovery evidence", "href": f"{URL_PREFIX}/", "destination": "nav",
         "url_route": "recovery-evidence", "category": "browse"},
        {"name": "Recovery report", "href": f"{URL_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
         "destination": "dag_run", "url_route": "recovery-report"},
    ]
