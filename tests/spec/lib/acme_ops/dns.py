"""DNS operators as a team would write them; they only log, the corpus only needs them to import."""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.operator import BaseOperator


class LowerTtlOperator(BaseOperator):
    template_fields = ("zone", "ttl")

    def __init__(self, *, zone: str, ttl: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone = zone
        self.ttl = ttl

    def execute(self, context: Any) -> None:
        self.log.info("TTL of %s lowered to %s s", self.zone, self.ttl)


class SwitchRecordsOperator(BaseOperator):
    template_fields = ("zone", "to")

    def __init__(self, *, zone: str, to: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone = zone
        self.to = to

    def execute(self, context: Any) -> None:
        self.log.info("records of %s switched to %s", self.zone, self.to)
