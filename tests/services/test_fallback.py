"""A flipped byte in the newest backup: the restore fails on its first try (no retry can fix it),
and with ``fallback: previous`` it restores the previous backup instead and says so."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tests.services.conftest import database_exists, seed
from tests.services.test_faults import RUN_KEY, _flip_byte
from tests.services.test_roundtrip import backup, restore
from tests.support.postgres import PostgresCluster
from tests.support.retries import airflow_decides

from recovery_provider.exceptions import ArgumentError, BackupCorrupt
from recovery_provider.hooks.store import BackupStore

pytestmark = pytest.mark.services
RunOp = Callable[..., Any]
OLDER = "20240101T030405Z"


def _two_backups(pg: PostgresCluster, location: str, run_op: RunOp, fmt: str) -> tuple[str, str]:
    """A database backed up twice (the newer backup has 5 more orders), the newer one with a flipped byte."""
    name = f"fb_{uuid.uuid4().hex[:8]}"
    seed(pg, name, rows=500)
    run_op(backup(name, location, format=fmt, run_key=OLDER))
    pg.psql("INSERT INTO orders (id, customer) SELECT g, 'late' FROM generate_series(100001, 100005) g", dbname=name)
    manifest = run_op(backup(name, location, format=fmt))  # run key RUN_KEY: the newest
    victim = max(manifest["objects"], key=lambda o: o["size"])["key"]
    _flip_byte(location, BackupStore(location), name, victim)
    return name, victim.split("/")[-1]


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_flipped_byte_fails_at_once_then_falls_back_to_the_previous_backup(
    pg: PostgresCluster, location: str, fmt: str, run_op: RunOp, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, victim = _two_backups(pg, location, run_op, fmt)
    target = f"{name}_r"

    # without a fallback: refused before creating anything, and Airflow does not retry it
    plain = restore(name, location, target, retries=3)
    with pytest.raises(BackupCorrupt, match=f"(?s)nothing was created.*{victim}") as refused:
        run_op(plain)
    assert not database_exists(pg, target)
    assert airflow_decides(plain, refused.value, try_number=1) == "failed"

    # with fallback: previous, the previous backup is restored and the result says so
    caplog.clear()
    capsys.readouterr()
    result = run_op(restore(name, location, target, retries=3, fallback="previous"))
    assert result["backup"] == f"{name}/{OLDER}" and result["action"] == "created"
    assert result["fallback_from"] == f"{name}/{RUN_KEY}"
    assert "does not match its manifest" in result["fallback_reason"] and victim in result["fallback_reason"]
    assert [r["backup"] for r in result["refused"]] == [f"{name}/{RUN_KEY}"]
    assert pg.scalar("SELECT count(*) FROM orders", dbname=target) == 500  # the older data, not the newer
    assert pg.scalar("SELECT count(*) FROM orders", dbname=name) == 505
    said = caplog.text + capsys.readouterr().out  # Airflow's task logger writes to stdout here
    assert f"backup {name}/{RUN_KEY} does not match its manifest" in said and "fallback: previous" in said
    assert f"restored {name}/{OLDER} into '{target}' INSTEAD OF the newer {name}/{RUN_KEY}" in said

    # a re-run finds the fallback restore done, and still says which backup it is and why
    again = run_op(restore(name, location, target, fallback="previous"))
    assert again["action"] == "already restored" and again["backup"] == f"{name}/{OLDER}"
    assert again["fallback_from"] == f"{name}/{RUN_KEY}"


def test_fallback_with_nothing_older_fails_at_once_and_says_so(pg: PostgresCluster, file_location: str,
                                                              run_op: RunOp) -> None:
    name = f"fb_{uuid.uuid4().hex[:8]}"
    seed(pg, name, rows=100)
    manifest = run_op(backup(name, file_location))
    _flip_byte(file_location, BackupStore(file_location), name, manifest["objects"][0]["key"])
    op = restore(name, file_location, f"{name}_r", retries=3, fallback="previous")
    with pytest.raises(BackupCorrupt, match="fallback: previous found no older backup to try") as refused:
        run_op(op)
    assert airflow_decides(op, refused.value) == "failed"
    assert not database_exists(pg, f"{name}_r")


def test_an_unknown_fallback_is_a_bad_argument() -> None:
    with pytest.raises(ArgumentError, match="'newest' is not one of previous"):
        restore("shop", "file:///nowhere", "x", fallback="newest")
