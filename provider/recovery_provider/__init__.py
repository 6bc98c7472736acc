"""Recovery workflows for Apache Airflow 3: spec language, plan compiler, DAG factory, operators."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (hatch dynamic version)


def get_provider_info() -> dict[str, Any]:
    """Airflow's provider discovery hook (entry point ``apache_airflow_provider``)."""
    from recovery_provider.provider_info import provider_info

    return provider_info(__version__)
