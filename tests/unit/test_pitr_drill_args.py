"""The PITR drill's steps refuse bad arguments before touching a server, and fail without retry."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from recovery_provider.exceptions import PgBackRestError
from recovery_provider.hooks.pitr_drill import Markers, check_table
from recovery_provider.operators.pgbackrest_drill import (
    PgBackRestDrillMarkersOperator,
    PgBackRestDrillVerifyOperator,
)

pytestmark = pytest.mark.unit


def context(dry_run: bool = False) -> dict[str, Any]:
    return {"params": {"dry_run": dry_run}, "run_id": "manual__x", "ti": None}


@pytest.mark.parametrize(("table", "ok"), [
    ("recovery_pitr_markers", True), ("m2", True), ('x"; drop table t; --', False), ("Upper", False),
    ("public.markers", False), ("", False), ("a" * 64, False),
])
def test_the_markers_table_is_a_plain_name(table: str, ok: bool) -> None:
    if ok:
        assert check_table(table) == table
    else:
        with pytest.raises(PgBackRestError, match="plain lower-case name") as caught:
            check_table(table)
        assert caught.value.fatal


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"before": 0}, "at least one row on each side"),
    ({"after": 0}, "at least one row on each side"),
    ({"gap": 61.0}, "0 to 60 seconds"),
    ({"tag": ""}, "tag is empty"),
])
def test_marker_settings_are_checked(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(PgBackRestError, match=says):
        Markers(**{"tag": "t", **kwargs}).validate()


def test_bad_step_arguments_fail_at_once_without_a_connection() -> None:
    bad_count = PgBackRestDrillMarkersOperator(task_id="m", conn_id="nowhere", before="three")
    with pytest.raises(AirflowFailException, match="invalid literal"):
        bad_count.execute(context())
    no_zone = PgBackRestDrillVerifyOperator(task_id="v", conn_id="nowhere", target="2024-01-02 03:04:05", port=5433)
    with pytest.raises(AirflowFailException, match="no time zone"):
        no_zone.execute(context())
    bad_port = PgBackRestDrillVerifyOperator(task_id="v", conn_id="nowhere", target="2024-01-02T03:04:05Z", port="x")
    with pytest.raises(AirflowFailException, match="port 'x'"):
        bad_port.execute(context())
    no_conn = PgBackRestDrillVerifyOperator(task_id="v", conn_id="no_such_conn_xyz", target="2024-01-02T03:04:05Z", port=1)
    with pytest.raises(AirflowFailException, match="no_such_conn_xyz"):
        no_conn.execute(context())


def test_dry_runs_say_what_they_would_do() -> None:
    markers = PgBackRestDrillMarkersOperator(task_id="m", conn_id="nowhere", before=2, after=1).execute(context(True))
    assert markers["would"].startswith("write 2 marker rows") and "tag manual__x" in markers["would"]
    verify = PgBackRestDrillVerifyOperator(task_id="v", conn_id="nowhere", target="2024-01-02T03:04:05Z",
                                           port="5433").execute(context(True))
    assert "127.0.0.1:5433" in verify["would"] and "2024-01-02T03:04:05+00:00" in verify["would"]
