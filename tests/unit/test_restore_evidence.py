"""The report says which backup a restore used and, after ``fallback: previous``, which it refused and why."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recovery_provider.cli.main import app
from recovery_provider.evidence.collect import build_record
from recovery_provider.evidence.html import report_html
from recovery_provider.evidence.ledger import Ledger
from recovery_provider.evidence.report import build_report
from recovery_provider.evidence.restores import restore_line

pytestmark = pytest.mark.unit
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
REASON = "does not match its manifest: dump.pgcustom.zst: size or SHA-256 differs from the manifest"
FELL_BACK = {"backup": "shop/20250228T020000Z", "target_database": "shop_drill", "action": "created",
             "finished_at": "2025-02-28T02:05:00+00:00", "fallback_from": "shop/20250301T020000Z",
             "fallback_reason": REASON, "refused": [{"backup": "shop/20250301T020000Z", "reason": REASON}]}


def test_a_restore_result_becomes_one_line_and_other_results_none() -> None:
    assert restore_line("r.restore", {**FELL_BACK, "fallback_from": None}) == (
        "r.restore: restored shop/20250228T020000Z into 'shop_drill'")
    line = restore_line("r.restore", FELL_BACK)
    assert line == ("r.restore: restored shop/20250228T020000Z into 'shop_drill' INSTEAD OF shop/20250301T020000Z "
                    f"(fallback: previous), which was refused: {REASON}")
    assert restore_line("r.restore", {**FELL_BACK, "fallback_reason": "x" * 1000}).endswith("x...")  # type: ignore[union-attr]
    for other in (None, "text", ["backup"], {"finished_at": "2025-01-01T00:00:00"}, {"backup": "b"}):
        assert restore_line("s", other) is None


def test_recovery_report_says_which_backup_was_restored_and_why(tmp_path: Path) -> None:
    fell_back = restore_line("drill.restore", FELL_BACK)
    assert fell_back is not None
    record = build_record(
        dag_id="restore_drill", run_id="manual__1", run_type="manual", state="success", queued_at=T0, start=T0,
        end=T0 + dt.timedelta(minutes=3), task_rows=[], upstream={}, approvals=[], step_results=[FELL_BACK],
        evidence=None, conf=None, now=T0, restores=[fell_back])
    # the recovery point is the backup actually restored: the older one
    assert record.recovery_point == dt.datetime(2025, 2, 28, 2, 5, tzinfo=dt.timezone.utc)
    report = build_report(record)
    assert report.restores == [fell_back]
    assert "INSTEAD OF shop/20250301T020000Z" in report_html(report)

    ledger = tmp_path / "ledger"
    Ledger(str(ledger)).write(record)
    result = CliRunner().invoke(app, ["report", "restore_drill", "manual__1", "--ledger", str(ledger)], terminal_width=400)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "backups restored:" in said
    assert ("drill.restore: restored shop/20250228T020000Z into 'shop_drill' INSTEAD OF shop/20250301T020000Z "
            "(fallback: previous), which was refused: does not match its manifest") in said
