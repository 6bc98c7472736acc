from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit


def test_compose_file_is_consistent(repo: Path) -> None:
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    airflow = compose["services"]["airflow"]
    assert airflow["image"].startswith("apache/airflow:3.")
    assert airflow["depends_on"]["postgres"]["condition"] == "service_healthy"
    for volume in airflow["volumes"]:
        source, target = volume.split(":")[:2]
        assert (repo / source).exists(), f"mounted {source} does not exist"
        assert target.startswith("/opt/")
    env = airflow["environment"]
    assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "pip install --no-cache-dir /opt/recovery" in " ".join(airflow["command"])
    assert set(compose["volumes"]) == {"postgres-data"}
