"""The plugin's pages on a running api-server with authentication on, read by a real browser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.evidence.conftest import PG_PASSWORD, EvidenceRuns
from tests.support.browser import ARTIFACTS, chromium

pytestmark = pytest.mark.scheduler



def token(runs: EvidenceRuns, user: str) -> str:
    resp = httpx.post(f"{runs.cluster.base_url}/auth/token",
                      json={"username": user, "password": runs.cluster.passwords[user]}, timeout=30)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["access_token"])


def get(runs: EvidenceRuns, path: str, bearer: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.get(f"{runs.cluster.base_url}/recovery{path}", headers=headers, timeout=30, **kwargs)


def report_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def test_anonymous_requests_get_nothing(evidence_runs: EvidenceRuns) -> None:
    drill = report_path("evidence_drill", evidence_runs.drill_run)
    for path in ("/", "/api/dags", drill, "/api" + drill, "/api/dags/evidence_drill/runs"):
        for bearer, cookies in ((None, None), ("not-a-token", None), (None, {"_token": "forged"})):
            resp = get(evidence_runs, path, bearer, cookies=cookies)
            assert resp.status_code in (401, 403), (path, resp.status_code)
            assert evidence_runs.drill_run not in resp.text and "evidence_drill" not in resp.text


def test_admin_reads_every_recorded_dag_and_the_report(evidence_runs: EvidenceRuns) -> None:
    admin = token(evidence_runs, "admin")
    listed = get(evidence_runs, "/api/dags", admin).json()
    assert {t["dag_id"] for t in listed} == {"evidence_check", "evidence_drill"}
    check = next(t for t in listed if t["dag_id"] == "evidence_check")
    assert [p["run_id"] for p in check["points"]] == evidence_runs.check_runs  # oldest first
    assert check["missed"] == 2
    report = get(evidence_runs, "/api" + report_path("evidence_drill", evidence_runs.drill_run), admin).json()
    assert report["rto"]["verdict"] == "met" and report["partial_phases"] == ["restore"]
    assert report["approvals"][0]["responded_by"] == "admin"
    assert report["critical_path"][-1] == "outcome"
    checked = get(evidence_runs, "/api" + report_path("evidence_check", evidence_runs.check_runs[1]), admin).json()
    # calibrated from the ledger on S3: the other check run times its tasks, every DAG's runs the overheads
    assert checked["expected_seconds"] > 0 and "1 other run(s) of this DAG" in checked["expected_basis"]
    missing = get(evidence_runs, "/api" + report_path("evidence_drill", "no-such-run"), admin)
    assert missing.status_code == 404 and "recovery report evidence_drill" in missing.text
    for path in ("/", report_path("evidence_drill", evidence_runs.drill_run)):
        assert PG_PASSWORD not in get(evidence_runs, path, admin).text


def test_a_user_sees_only_runs_of_dags_they_may_read(evidence_runs: EvidenceRuns) -> None:
    drills = token(evidence_runs, "drills")
    assert [t["dag_id"] for t in get(evidence_runs, "/api/dags", drills).json()] == ["evidence_drill"]
    page = get(evidence_runs, "/", drills)
    assert page.status_code == 200 and "evidence_drill" in page.text and "evidence_check" not in page.text
    forbidden = [
        "/api" + report_path("evidence_check", evidence_runs.check_runs[0]),
        report_path("evidence_check", evidence_runs.check_runs[0]),
        "/api/dags/evidence_check/runs",
    ]
    for path in forbidden:
        resp = get(evidence_runs, path, drills)
        assert resp.status_code == 403 and evidence_runs.check_runs[0] not in resp.text, path
    assert get(evidence_runs, "/api" + report_path("evidence_drill", evidence_runs.drill_run), drills).status_code == 200


def test_the_plugin_is_registered_once_with_its_views(evidence_runs: EvidenceRuns) -> None:
    plugins = evidence_runs.cluster.api.get("/plugins")["plugins"]
    ours = [p for p in plugins if p["name"] == "recovery"]
    assert len(ours) == 1, [p["name"] for p in plugins]
    [plugin] = ours
    assert "recovery_provider.evidence.listener" in plugin["listeners"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/recovery"]
    views = {v["destination"]: v["href"] for v in plugin["external_views"]}
    assert views == {"nav": "/recovery/", "dag_run": "/recovery/dags/{DAG_ID}/runs/{RUN_ID}"}


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def test_chromium_renders_the_report_and_the_runs_page(evidence_runs: EvidenceRuns, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base = evidence_runs.cluster.base_url
    browser.get(f"{base}/recovery/")  # no cookie yet: refused
    assert "evidence_drill" not in browser.page_source
    # logged in as the UI is: the JWT in the `_token` cookie
    browser.add_cookie({"name": "_token", "value": token(evidence_runs, "admin"), "path": "/"})
    browser.get(f"{base}/recovery{report_path('evidence_drill', evidence_runs.drill_run)}")
    assert browser.find_element(By.ID, "run-id").text == evidence_runs.drill_run
    assert browser.find_element(By.ID, "rto-verdict").text == "RTO met"
    assert browser.find_element(By.ID, "outcome").text == "partial"
    assert "restore" in browser.find_element(By.ID, "partial").text
    timeline = browser.find_element(By.ID, "timeline")
    labels = [t.text for t in timeline.find_elements(By.TAG_NAME, "text")]
    assert {"backup", "restore", "backup.dump", "cutover.switch", "outcome"} <= set(labels)
    critical = timeline.find_elements(By.CSS_SELECTOR, "rect.bar[stroke]")
    assert critical, "no bar of the timeline is marked as the critical path"
    assert browser.find_element(By.ID, "critical-path").text.endswith("outcome")
    assert browser.find_element(By.ID, "failures").text == "restore.each.load[bad]: failed"
    assert "admin" in browser.find_element(By.ID, "approvals").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "evidence-report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    browser.get(f"{base}/recovery/")
    sections = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert sections == ["evidence_check", "evidence_drill"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.trend circle")) == 4  # two runs of each: trend lines
    # every run stands alone here (no `incident` param): each is an incident; the stopped drill never recovered
    assert browser.find_element(By.ID, "mttr-evidence_check").text.startswith("MTTR ")
    assert "2 resolved incident(s)" in browser.find_element(By.ID, "mttr-evidence_check").text
    assert "1 resolved incident(s), 1 unresolved" in browser.find_element(By.ID, "mttr-evidence_drill").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.mttr rect.incident")) == 4
    assert browser.save_screenshot(str(ARTIFACTS / "evidence-runs.png"))
