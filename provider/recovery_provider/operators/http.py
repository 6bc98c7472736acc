"""HTTP health check for services after a recovery step (restart, cutover).

A sensor underneath (it waits until healthy or times out, and can defer), registered under the
operator alias ``http.health`` because in a spec it reads as a step: "check the service".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recovery_provider.sensors.base import ProbeSensor


class HttpHealthCheckOperator(ProbeSensor):
    """Request ``url`` (or ``http_conn_id`` + ``endpoint``) until it answers one of ``expected_status`` (and contains ``contains``).

    ``timeout`` (default 2m) bounds the wait; ``poke_interval`` (default 5s) spaces the attempts.
    Read-only, so it runs in dry runs as well. Alias ``http.health``.
    """

    template_fields: Sequence[str] = ("url", "http_conn_id", "endpoint", "method", "expected_status", "contains", "headers")
    probe_name = "http_health"

    def __init__(
        self,
        *,
        url: str | None = None,
        http_conn_id: str | None = None,
        endpoint: str | None = None,
        method: str = "GET",
        expected_status: int | Sequence[int] = (200,),
        contains: str | None = None,
        request_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 5.0)
        kwargs.setdefault("timeout", "2m")
        super().__init__(**kwargs)
        if not url and not http_conn_id:
            raise ValueError("give url, or http_conn_id (an Airflow HTTP connection) and endpoint")
        self.url = url
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.method = method
        self.expected_status = expected_status
        self.contains = contains
        self.request_timeout = request_timeout
        self.headers = headers

    def probe_kwargs(self) -> dict[str, Any]:
        expected = self.expected_status
        statuses = [int(expected)] if isinstance(expected, (int, str)) else [int(s) for s in expected]
        return {
            "url": self.url or None,
            "http_conn_id": self.http_conn_id or None,
            "endpoint": self.endpoint or None,
            "method": self.method.upper(),
            "expected_status": statuses,
            "contains": self.contains or None,
            "timeout": float(self.request_timeout),
            "headers": dict(self.headers) if self.headers else None,
        }
