"""An auth manager for the evidence tests: Airflow's SimpleAuthManager, except that user `drills`
may read only DAGs whose id starts with `evidence_drill` (SimpleAuthManager itself has no per-DAG
rules, and the plugin must show each user only the runs of DAGs they may read)."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

RESTRICTED_USER = "drills"
ALLOWED_PREFIX = "evidence_drill"


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() == RESTRICTED_USER:
            dag_id = getattr(details, "id", None) or ""
            if not dag_id.startswith(ALLOWED_PREFIX):
                return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
