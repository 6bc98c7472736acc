"""A small client of Airflow's REST API (v2), for pools: `recovery pools sync` and the preflight task.

Airflow 3 task code cannot read pools from the metadata database and the execution API has no
pool endpoint, so both go through the public API with a token, as any user would. No Airflow
import here: the CLI uses this too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# defined in exceptions.py, one hierarchy; still importable from here
from recovery_provider.exceptions import AirflowApiError as AirflowApiError


@dataclass
class AirflowApi:
    base_url: str  # e.g. http://127.0.0.1:8080
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 10.0

    def _client(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout)

    def _headers(self, client: Any) -> dict[str, str]:
        if self.token is None and self.username is not None:
            response = client.post("/auth/token", json={"username": self.username, "password": self.password or ""})
            if response.status_code not in (200, 201):
                raise AirflowApiError(f"Airflow at {self.base_url} refused the login of '{self.username}' (HTTP {response.status_code}): check the user and password")
            self.token = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, json: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        import httpx

        try:
            with self._client() as client:
                response = client.request(method, f"/api/v2{path}", json=json, headers=self._headers(client))
        except httpx.HTTPError as exc:
            raise AirflowApiError(f"cannot reach the Airflow API at {self.base_url}: {exc}") from None
        if response.status_code not in ok:
            raise AirflowApiError(f"Airflow API {method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def pool(self, name: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/pools/{quote(name, safe='')}", ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def ensure_pool(self, name: str, slots: int, description: str) -> str:
        """Create the pool or set its slots; returns 'created', 'updated' or 'unchanged'."""
        current = self.pool(name)
        body = {"name": name, "slots": slots, "description": description}
        if current is None:
            self.request("POST", "/pools", json=body)
            return "created"
        if current.get("slots") == slots and (current.get("description") or "") == description:
            return "unchanged"
        self.request("PATCH", f"/pools/{quote(name, safe='')}", json=body)
        return "updated"


def pool_problems(api: AirflowApi, needed: dict[str, int]) -> list[str]:
    """What is wrong with the pools a DAG needs: missing, or fewer slots than the spec declares."""
    problems = []
    for name, slots in sorted(needed.items()):
        found = api.pool(name)
        if found is None:
            problems.append(f"pool '{name}' does not exist: its tasks would never be scheduled. Run `recovery pools sync <specs>` or create it with {slots} slots")
        elif int(found.get("slots", 0)) < slots:
            problems.append(f"pool '{name}' has {found.get('slots')} slots, the spec declares {slots}: run `recovery pools sync <specs>`")
    return problems
