"""The pgBackRest hook without a server: repositories, the generated config, errors, parsed reports."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from recovery_provider.exceptions import PgBackRestError
from recovery_provider.hooks.pgbackrest import PgBackRestHook, PgCluster, Repository, Result
from recovery_provider.hooks.pgbackrest_report import parse_verify
from recovery_provider.hooks.pgbackrest_restore import PitrRequest, parse_target_time

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="pgbackrest is not installed (scripts/_env.sh installs it)"),
]
KEY, SECRET = "AKIAEXAMPLE", "wJalr/secret+value"


@pytest.fixture
def s3_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_PITR_S3", json.dumps({
        "conn_type": "aws", "login": KEY, "password": SECRET,
        "extra": {"endpoint_url": "https://127.0.0.1:9443", "region_name": "eu-west-1", "verify": False},
    }))
    return "s3://pitr_s3@bucket/pg/prod"


def hook(repo: Repository, **kwargs: Any) -> PgBackRestHook:
    return PgBackRestHook(stanza="orders", repo=repo, run_as=None, **kwargs)


def test_s3_repository_keeps_keys_out_of_the_config_and_in_the_environment(s3_conn: str) -> None:
    repo = Repository.parse(s3_conn)
    h = hook(repo, pg=PgCluster(data_dir="/srv/pg", port=5433, socket_dir="/run/pg", user="backup", password="pgpw"))
    text = h.config_text()
    assert "repo1-s3-endpoint=127.0.0.1" in text and "repo1-storage-port=9443" in text
    assert "repo1-storage-verify-tls=n" in text and "repo1-s3-bucket=bucket" in text and "repo1-path=/pg/prod" in text
    assert "pg1-path=/srv/pg" in text and "pg1-port=5433" in text and "pg1-socket-path=/run/pg" in text
    assert KEY not in text and SECRET not in text and "pgpw" not in text
    env = h.environment()
    assert env["PGBACKREST_REPO1_S3_KEY"] == KEY and env["PGBACKREST_REPO1_S3_KEY_SECRET"] == SECRET
    assert env["PGPASSWORD"] == "pgpw"
    argv = " ".join(h.argv("/tmp/cfg", "backup", "--type=full"))
    assert KEY not in argv and SECRET not in argv and argv.endswith("backup --type=full")
    assert h.redact(f"said {SECRET} and pgpw") == "said *** and ***"
    assert SECRET not in repr(repo) and "pgpw" not in repr(h)


@pytest.mark.parametrize(("location", "says"), [
    ("relative/path", "is not understood"),
    ("s3://no_such_conn@bucket/x", "'no_such_conn'"),
    ("ftp://host/x", "is not understood"),
])
def test_bad_repositories_are_refused_with_the_fix(location: str, says: str) -> None:
    with pytest.raises(PgBackRestError, match=says) as caught:
        Repository.parse(location)
    assert caught.value.fatal


def test_plain_http_endpoint_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN", json.dumps({"conn_type": "aws", "extra": {"endpoint_url": "http://minio:9000"}}))
    with pytest.raises(PgBackRestError, match="speaks HTTPS only"):
        Repository.parse("s3://plain@b/p")


def test_secret_options_and_bad_stanzas_are_refused() -> None:
    repo = Repository.parse("file:///srv/pgbackrest")
    with pytest.raises(PgBackRestError, match="carries a secret"):
        hook(repo, options={"repo1-cipher-pass": "x"})
    with pytest.raises(PgBackRestError, match="option names"):
        hook(repo, options={"Repo1 Path": "x"})
    with pytest.raises(PgBackRestError, match="stanza"):
        PgBackRestHook(stanza="../etc", repo=repo)
    assert "repo1-retention-full=7" in hook(repo, options={"repo1-retention-full": 7}).config_text()


def test_error_codes_decide_whether_a_retry_can_help() -> None:
    h = hook(Repository.parse("file:///srv/pgbackrest"))
    corrupt = h.error(Result("restore", 29, "ERROR: [029]: raised from local-1 protocol: lz4 error", 1.0))
    assert corrupt.fatal and corrupt.code == 29 and "retrying cannot fix this" in str(corrupt)
    no_set = h.error(Result("restore", 75, "ERROR: [075]: backup set 2000 is not valid", 1.0))
    assert no_set.fatal
    locked = h.error(Result("backup", 50, "ERROR: [050]: unable to acquire lock", 1.0))
    assert not locked.fatal and "a retry may succeed" in str(locked)


def test_restore_targets_are_checked_before_anything_is_touched() -> None:
    h = hook(Repository.parse("file:///srv/pgbackrest"), pg=PgCluster(data_dir="/srv/scratch/orders"))
    assert PitrRequest(hook=h, type="time", target="2024-01-02T03:04:05Z", port=5999).validate() == "2024-01-02 03:04:05+00:00"
    assert PitrRequest(hook=h, type="lsn", target="0/3000060", port=5999).validate() == "0/3000060"
    for bad, says in [({"type": "xid", "target": "1"}, "use one of"), ({"type": "time", "target": "yesterday"}, "not a time"),
                      ({"type": "latest", "target": "0/1"}, "takes no target"), ({"type": "latest", "port": None}, "port is required"),
                      ({"type": "time", "target": "2024-01-02 03:04:05"}, "no time zone")]:
        with pytest.raises(PgBackRestError, match=says):
            PitrRequest(hook=h, **{"port": 5999, **bad}).validate()
    assert parse_target_time("2024-01-02T03:04:05+02:00").utcoffset() is not None


def test_verify_report_lists_damaged_backups() -> None:
    good = """INFO: stanza: st
      status: ok
        archiveId: 15-1, total WAL checked: 3, total valid WAL: 3
          missing: 0, checksum invalid: 0, size invalid: 0, other: 0
        backup: 20240101-010101F, status: valid, total files checked: 9, total valid files: 9
          missing: 0, checksum invalid: 0, size invalid: 0, other: 0"""
    assert parse_verify(good) == {"ok": True, "status": "ok", "backups": [{"label": "20240101-010101F", "status": "valid"}],
                                  "problems": []}
    bad = good.replace("status: ok", "status: error").replace("status: valid, total files checked: 9, total valid files: 9\n"
                                                              "          missing: 0, checksum invalid: 0",
                                                              "status: invalid, total files checked: 9, total valid files: 8\n"
                                                              "          missing: 0, checksum invalid: 1")
    report = parse_verify(bad)
    assert not report["ok"] and any("20240101-010101F" in p and "checksum invalid: 1" in p for p in report["problems"])
