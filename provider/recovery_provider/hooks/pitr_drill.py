"""A PITR drill's proof: marker rows with known commit times around a target T, then their check.

Why markers: "the restore reached T" is what the server says; "rows committed before T are there
and rows after T are not" is what the drill proves, in the data. The markers are small rows in a
table of their own (``recovery_pitr_markers``), tagged with the run, each in its own transaction:

1. ``before`` rows, each committed (autocommit) and its commit bounded by a ``clock_timestamp()``
   read after it returns;
2. a pause, then T = the server's ``clock_timestamp()``, then another pause: every ``before``
   commit is older than T, every ``after`` row starts after T (the server's clock, not the worker's);
3. ``after`` rows, the same way.

The proof reads the restored copy: every ``before`` row of the tag must be there, no ``after`` row
may be. The achieved RPO is T minus the copy's last replayed commit
(``pg_last_xact_replay_timestamp()``, which stays put after promotion): the data written between
that commit and T is what a restore to T gives up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from typing import Any

from recovery_provider.exceptions import PgBackRestError

DEFAULT_TABLE = "recovery_pitr_markers"
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def drill_error(message: str) -> PgBackRestError:
    """A failed proof or a bad argument: no retry makes the restored data right."""
    return PgBackRestError(message, fatal=True)


def check_table(table: str) -> str:
    if not _TABLE.match(str(table or "")):
        raise drill_error(f"table {table!r}: use a plain lower-case name (letters, digits, '_'), e.g. {DEFAULT_TABLE}")
    return str(table)


def _iso(stamp: dt.datetime) -> str:
    return stamp.astimezone(dt.timezone.utc).isoformat()


@dataclasses.dataclass
class Markers:
    tag: str
    table: str = DEFAULT_TABLE
    before: int = 3
    after: int = 2
    gap: float = 1.0

    def validate(self) -> None:
        check_table(self.table)
        if not self.tag:
            raise drill_error("tag is empty: markers are tagged with the run id (or a tag you give)")
        if self.before < 1 or self.after < 1:
            raise drill_error(f"before={self.before}, after={self.after}: write at least one row on each side of T")
        if not 0 <= self.gap <= 60:
            raise drill_error(f"gap {self.gap}s: give 0 to 60 seconds between T and the rows around it")


def write_markers(target: Any, spec: Markers, log: Any) -> dict[str, Any]:
    """Write the markers on the source (``target`` is a ``PgTarget``) and return T and the commit bounds."""
    from psycopg import sql

    spec.validate()
    table = sql.Identifier(spec.table)
    with target.connect(attempts=3) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (tag text NOT NULL, seq int NOT NULL, side text NOT NULL,"
            " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (tag, seq))").format(table))
        # an earlier try's rows of this tag, and old drills' rows (the table stays small)
        conn.execute(sql.SQL("DELETE FROM {} WHERE tag = %s OR written_at < now() - interval '30 days'").format(table),
                     [spec.tag])

        def write(side: str, first: int, count: int) -> list[dt.datetime]:
            bounds = []
            for seq in range(first, first + count):
                conn.execute(sql.SQL("INSERT INTO {} (tag, seq, side) VALUES (%s, %s, %s)").format(table),
                             [spec.tag, seq, side])
                row = conn.execute("SELECT clock_timestamp()").fetchone()  # after the commit returned
                assert row is not None
                bounds.append(row[0])
            return bounds

        before = write("before", 1, spec.before)
        time.sleep(spec.gap)
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        target_time: dt.datetime = row[0]
        time.sleep(spec.gap)
        after = write("after", spec.before + 1, spec.after)
    log.info("wrote %d marker rows before T=%s and %d after it into %s (tag %s) on %s",
             spec.before, _iso(target_time), spec.after, spec.table, spec.tag, target.where)
    return {
        "tag": spec.tag, "database": target.dbname, "table": spec.table, "target_time": _iso(target_time),
        "rows_before": spec.before, "rows_after": spec.after, "last_before_committed_by": _iso(before[-1]),
        "first_after_committed_by": _iso(after[0]),
    }


def prove_markers(source: Any, copy: Any, *, tag: str, table: str, target_time: dt.datetime,
                  max_rpo_seconds: float | None, log: Any) -> dict[str, Any]:
    """Compare the restored copy with the source's markers of ``tag``; raise unless exactly the
    ``before`` rows are there. Returns the achieved RPO (T - the copy's last replayed commit)."""
    import psycopg
    from psycopg import sql

    check_table(table)
    query = sql.SQL("SELECT seq, side FROM {} WHERE tag = %s ORDER BY seq").format(sql.Identifier(table))
    with source.connect(attempts=3) as conn:
        try:
            expected = {int(r[0]): str(r[1]) for r in conn.execute(query, [tag]).fetchall()}
        except psycopg.errors.UndefinedTable:
            expected = {}
    sides = set(expected.values())
    if sides != {"before", "after"}:
        raise drill_error(
            f"the source {source.where} holds no complete set of markers for tag {tag!r} in {table} "
            f"(found sides: {sorted(sides) or 'none'}): run pgbackrest.drill_markers with the same tag first"
        )
    with copy.connect(attempts=3) as conn:
        try:
            found = {int(r[0]) for r in conn.execute(query, [tag]).fetchall()}
        except psycopg.errors.UndefinedTable:
            found = set()
        row = conn.execute("SELECT pg_last_xact_replay_timestamp(), pg_is_in_recovery()").fetchone()
    assert row is not None
    last_commit, in_recovery = row
    missing = sorted(seq for seq, side in expected.items() if side == "before" and seq not in found)
    extra = sorted(seq for seq, side in expected.items() if side == "after" and seq in found)
    if missing or extra:
        raise drill_error(
            f"the copy restored to T={_iso(target_time)} ({copy.where}) is not the data as of T: "
            + "; ".join(filter(None, [
                f"markers committed before T are missing (seq {missing})" if missing else "",
                f"markers committed after T are present (seq {extra})" if extra else "",
            ]))
            + ". The restore did not stop at the target: check the restore step's target and the WAL archive."
        )
    if last_commit is None:
        raise drill_error(f"the copy ({copy.where}) replayed no commit from the WAL archive: the achieved RPO is "
                          "unknown. Check that archive_command feeds the repository (pgbackrest.check)")
    achieved = round((target_time - last_commit).total_seconds(), 3)
    result = {
        "tag": tag, "table": table, "target_time": _iso(target_time), "last_restored_commit_at": _iso(last_commit),
        "achieved_rpo_seconds": achieved, "rows_before_found": sum(1 for s in expected.values() if s == "before"),
        "rows_after_found": 0, "in_recovery": bool(in_recovery), "max_rpo_seconds": max_rpo_seconds,
    }
    log.info("PITR drill proven: every marker before T is restored, none after; achieved RPO %.3fs "
             "(T %s - last restored commit %s)", achieved, result["target_time"], result["last_restored_commit_at"])
    if max_rpo_seconds is not None and achieved > max_rpo_seconds:
        raise drill_error(f"achieved RPO {achieved:.3f}s exceeds max_rpo {max_rpo_seconds:.0f}s: the newest commit "
                          f"restored ({result['last_restored_commit_at']}) is older than T minus the RPO")
    return result
