"""The PITR drill's two steps around ``pgbackrest.restore``: write markers around a target T, prove them.

``pgbackrest.drill_markers`` writes rows with known commit times on the source and returns T (its
XCom ``target_time`` feeds the restore's ``target``); ``pgbackrest.drill_verify`` reads the restored
copy and fails unless exactly the rows committed before T are there, returning the achieved RPO.
The work is in ``hooks.pitr_drill``. A failed proof, like a bad argument, fails the task at once
(``AirflowFailException``): a retry cannot make the restored data right.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from recovery_provider.operators.base import RecoveryOperator, seconds
from recovery_provider.operators.pgbackrest import fail_fast


class _DrillOperator(RecoveryOperator):
    def __init__(self, *, conn_id: str, database: str | None = None, table: str = "recovery_pitr_markers",
                 tag: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.database = database
        self.table = table
        self.tag = tag

    def source(self) -> Any:
        from recovery_provider.exceptions import RecoveryError
        from recovery_provider.hooks.pg import PgTarget
        from recovery_provider.hooks.pitr_drill import drill_error

        try:
            return PgTarget.from_conn_id(self.conn_id, self.database or None)
        except RecoveryError as exc:
            raise drill_error(str(exc)) from None

    def tag_of(self, context: Any) -> str:
        return str(self.tag or context.get("run_id") or "")

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except Exception as exc:
            raise fail_fast(exc) from None


class PgBackRestDrillMarkersOperator(_DrillOperator):
    """Write marker rows around a target time T on the source: ``before`` rows, T, ``after`` rows.

    Each row is its own transaction; ``gap`` (1s) separates T from the rows on either side. Rows go
    into ``table`` (``recovery_pitr_markers``, created if absent) of ``database`` (the connection's
    schema), tagged with ``tag`` (the run id); an earlier try's rows of the tag are replaced, rows
    older than 30 days removed. XCom:
    ``target_time`` (ISO 8601 with zone, the server's clock), ``tag``, ``rows_before``,
    ``rows_after``, ``last_before_committed_by``, ``first_after_committed_by``. Follow it with
    ``pgbackrest.check`` so the markers' WAL reaches the repository. Alias ``pgbackrest.drill_markers``.
    """

    template_fields: Sequence[str] = ("conn_id", "database", "table", "tag", "before", "after", "gap")

    def __init__(self, *, before: int | str = 3, after: int | str = 2, gap: float | str = "1s", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.before = before
        self.after = after
        self.gap = gap

    def markers(self, context: Any) -> Any:
        from recovery_provider.hooks.pitr_drill import Markers, drill_error

        try:
            before, after = int(str(self.before)), int(str(self.after))
            gap = seconds(self.gap, "gap")
        except ValueError as exc:
            raise drill_error(f"{self.task_id}: {exc}") from None
        spec = Markers(tag=self.tag_of(context), table=str(self.table), before=before, after=after, gap=gap)
        spec.validate()
        return spec

    def describe_dry_run(self, context: Any) -> str:
        spec = self.markers(context)
        return (f"write {spec.before} marker rows, pick T, write {spec.after} more into {spec.table} "
                f"(tag {spec.tag}) through connection '{self.conn_id}'")

    def execute(self, context: Any) -> Any:
        result = super().execute(context)
        if isinstance(result, dict) and result.get("dry_run"):
            # the restore's target is templated from this XCom: give it a well-formed time
            result["target_time"] = dt.datetime.now(dt.timezone.utc).isoformat()
        return result

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.pitr_drill import write_markers

        spec = self.markers(context)  # the arguments first: a bad one fails before any connection
        return write_markers(self.source(), spec, self.log)


class PgBackRestDrillVerifyOperator(_DrillOperator):
    """Prove a copy restored to ``target`` (T): every marker committed before T is there, none after.

    ``conn_id`` is the source (its markers are the truth; its login and password reach the copy,
    which is a physical copy of it); the copy listens on ``host`` (127.0.0.1) and ``port``. Fails at
    once when a row is missing or one too many, when the copy replayed no commit, or when the
    achieved RPO exceeds ``max_rpo`` (optional duration). XCom: ``achieved_rpo_seconds`` (T minus the
    copy's last replayed commit), ``target_time``, ``last_restored_commit_at``, ``rows_before_found``,
    ``rows_after_found`` (0). Alias ``pgbackrest.drill_verify``.
    """

    template_fields: Sequence[str] = ("conn_id", "database", "table", "tag", "target", "host", "port", "max_rpo")

    def __init__(self, *, target: str, port: int | str, host: str = "127.0.0.1", max_rpo: str | float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.port = port
        self.host = host
        self.max_rpo = max_rpo

    def arguments(self) -> tuple[dt.datetime, int, float | None]:
        from recovery_provider.hooks.pgbackrest_restore import parse_target_time
        from recovery_provider.hooks.pitr_drill import drill_error

        when = parse_target_time(self.target)
        try:
            port = int(str(self.port))
            limit = None if self.max_rpo in (None, "") else seconds(self.max_rpo, "max_rpo")
        except ValueError as exc:
            raise drill_error(f"{self.task_id}: port {self.port!r} / max_rpo {self.max_rpo!r}: {exc}") from None
        return when, port, limit

    def describe_dry_run(self, context: Any) -> str:
        when, port, _ = self.arguments()
        return f"compare the markers of tag {self.tag_of(context)} on {self.host}:{port} with the source, T={when.isoformat()}"

    def run(self, context: Any) -> Any:
        from recovery_provider.hooks.pitr_drill import prove_markers

        when, port, limit = self.arguments()
        source = self.source()
        copy = dataclasses.replace(source, conn_id=f"{source.conn_id} (restored copy)", host=str(self.host), port=port)
        result = prove_markers(source, copy, tag=self.tag_of(context), table=str(self.table), target_time=when,
                               max_rpo_seconds=limit, log=self.log)
        return {**result, "port": port}
