"""An operator Airflow cannot serialize (its extra links raise): the dag-processor would refuse its DAG."""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.operator import BaseOperator


class LinkedOperator(BaseOperator):
    @property
    def operator_extra_links(self) -> Any:  # type: ignore[override]
        raise RuntimeError("the links service is not configured")

    def execute(self, context: Any) -> None:
        pass
