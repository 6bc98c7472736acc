"""The plugin's pages and JSON API, mounted by the api-server at ``/recovery``.

Behind Airflow's own authentication: every route resolves the user from the JWT (``Authorization:
Bearer`` header or the UI's ``_token`` cookie) exactly as the REST API does, so an anonymous
request gets 401 and nothing else; a run is shown only to users the auth manager lets read its DAG,
and the lists hold only such DAGs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from recovery_provider.evidence import URL_PREFIX
from recovery_provider.evidence.calibration import load_calibration
from recovery_provider.evidence.html import report_html, runs_html
from recovery_provider.evidence.ledger import Ledger, LedgerError
from recovery_provider.evidence.report import Report, Trend, build_report, build_trend

RUNS_PER_DAG = 50


async def _current_user(request: Request) -> Any:
    """The caller, as Airflow's REST API resolves it; 401 without a valid token."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if scheme and token else None
    return await get_user(request, None, bearer)


User = Annotated[Any, Depends(_current_user)]


def readable_dag_ids(user: Any, candidates: list[str]) -> list[str]:
    """The DAGs of ``candidates`` the user may read, as the auth manager decides."""
    from airflow.api_fastapi.app import get_auth_manager

    allowed = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    return [dag_id for dag_id in candidates if dag_id in allowed]


def _require_dag(user: Any, dag_id: str) -> None:
    if not readable_dag_ids(user, [dag_id]):
        # The same answer whether the DAG exists or not: no probing for DAG ids.
        raise HTTPException(status_code=403, detail=f"you may not read DAG '{dag_id}'")


def _trends(user: Any, ledger: Ledger) -> list[Trend]:
    return [build_trend(dag_id, ledger.runs(dag_id, limit=RUNS_PER_DAG))
            for dag_id in readable_dag_ids(user, ledger.dag_ids())]


def _report(user: Any, dag_id: str, run_id: str) -> Report:
    _require_dag(user, dag_id)
    try:
        ledger = Ledger()
        return build_report(ledger.read(dag_id, run_id), load_calibration(ledger, dag_id, exclude=run_id))
    except LedgerError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def create_app() -> FastAPI:
    app = FastAPI(title="Recovery evidence", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def runs_page(user: User) -> str:
        return runs_html(_trends(user, Ledger()), base=URL_PREFIX)

    @app.get("/dags/{dag_id}/runs/{run_id:path}", response_class=HTMLResponse)
    def report_page(dag_id: str, run_id: str, user: User) -> str:
        return report_html(_report(user, dag_id, run_id), base=URL_PREFIX)

    @app.get("/api/dags")
    def dags_api(user: User) -> list[Trend]:
        return _trends(user, Ledger())

    @app.get("/api/dags/{dag_id}/runs")
    def runs_api(dag_id: str, user: User) -> Trend:
        _require_dag(user, dag_id)
        return build_trend(dag_id, Ledger().runs(dag_id, limit=RUNS_PER_DAG))

    @app.get("/api/dags/{dag_id}/runs/{run_id:path}")
    def report_api(dag_id: str, run_id: str, user: User) -> Report:
        return _report(user, dag_id, run_id)

    return app
