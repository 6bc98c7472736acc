"""Recovery workflows for Apache Airflow 3: spec language, plan compiler, DAG factory, operators."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Airflow's provider discovery hook (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-recovery",
        "name": "Recovery",
        "description": "Declarative recovery and backup workflows: spec language, DAG factory, operators.",
        "versions": [__version__],
    }
