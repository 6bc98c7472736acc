"""Which backup each restore step restored, and after a ``fallback: previous`` which it refused and why.

Read from the restore steps' results (``postgres.restore``: ``backup``, ``target_database``,
``fallback_from``, ``fallback_reason``) when a run's record is built; the report shows the lines as
they are. Backup names (``database/run_key``) and the verification problem only: no arguments, no
connection fields. Nothing here imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REASON_LIMIT = 300


def restore_line(task_id: str, result: Any) -> str | None:
    """``restore.db: restored shop/K1 into 'shop_r' (fallback: shop/K2 refused: <why>)``, or None."""
    if not isinstance(result, Mapping) or not result.get("backup") or "target_database" not in result:
        return None
    line = f"{task_id}: restored {result['backup']} into '{result['target_database']}'"
    if result.get("fallback_from"):
        reason = str(result.get("fallback_reason") or "failed verification")
        reason = reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 3] + "..."
        line += f" INSTEAD OF {result['fallback_from']} (fallback: previous), which was refused: {reason}"
    return line
