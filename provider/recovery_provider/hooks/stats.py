"""Row counts and content checksums per table: what a drill compares after a restore.

Why an order-independent sum of 64-bit row hashes: it needs constant memory on the server (no
``string_agg`` of millions of hashes), is the same whatever order rows come back in after a restore,
and changes when any row changes.

Two methods, named in the manifest's ``checksum_method`` so a drill recomputes the same one:

- ``HASH_METHOD`` (PostgreSQL 14+, new backups): ``hash_record_extended(row, 0)``, each column
  hashed by its type's own hash function, no text conversion: about 6x cheaper than the MD5 of
  the row's text (benchmarks/backup). A table with a column type that has no hash function (json,
  point, xml...) falls back to ``hashtextextended(row::text, 0)``; the kind is part of the digest.
  Equality is the types' own (numeric 1.0 = 1.00), as for any index lookup.
- ``CHECKSUM_METHOD`` (older backups, servers before 14): ``md5(row::text)`` halves.

Text forms are taken under fixed session settings (DateStyle, TimeZone, extra_float_digits,
bytea_output), so they are the same on the source and on the restored copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import TYPE_CHECKING, Any, TypedDict

from recovery_provider.exceptions import RecoveryError

if TYPE_CHECKING:
    import psycopg

CHECKSUM_METHOD = "sha256(count:sum(md5(row::text)[0:16] as int64):sum(md5(row::text)[16:32] as int64))"
HASH_METHOD = "sha256(kind:count:sum(hash_record_extended(row, 0))), kind text: hashtextextended(row::text, 0)"
METHODS = (HASH_METHOD, CHECKSUM_METHOD)

STABLE_SETTINGS = (
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET TimeZone = 'UTC'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

_SUMS = (
    "SELECT count(*),"
    " coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text,"
    " coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text"
    " FROM (SELECT md5(t::text) AS h FROM {} AS t) AS s"
)


_HASH_SUMS = {
    "record": "SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0)::text, '' FROM {} AS t",
    "text": "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text, '' FROM {} AS t",
}


def checksum_method_for(server_version_num: int) -> str:
    """The method a new backup records: hash_record_extended exists from PostgreSQL 14 on."""
    return HASH_METHOD if server_version_num >= 140000 else CHECKSUM_METHOD


class TableStats(TypedDict):
    schema: str
    table: str
    rows: int
    checksum: str


def apply_stable_settings(conn: psycopg.Connection[Any]) -> None:
    for statement in STABLE_SETTINGS:
        conn.execute(statement)


def table_stats(conn: psycopg.Connection[Any], method: str = HASH_METHOD) -> list[TableStats]:
    """Stats of every user table, in the connection's current transaction (snapshot).

    The transaction must be open (REPEATABLE READ): a type without a hash function is detected by
    the statement failing, and a savepoint keeps the snapshot through that failure.
    """
    from psycopg import errors, sql

    if method not in METHODS:
        raise RecoveryError(f"unknown checksum method {method!r} in the manifest: this provider knows {METHODS}")
    apply_stable_settings(conn)
    result: list[TableStats] = []
    for schema, table in conn.execute(_TABLES).fetchall():
        name = sql.Identifier(schema, table)
        if method == CHECKSUM_METHOD:
            kind, row = "", conn.execute(sql.SQL(_SUMS).format(name)).fetchone()
        else:
            kind = "record"
            conn.execute("SAVEPOINT recovery_stats")
            try:
                row = conn.execute(sql.SQL(_HASH_SUMS[kind]).format(name)).fetchone()
            except errors.UndefinedFunction:  # "could not identify a hash function for type json"
                conn.execute("ROLLBACK TO SAVEPOINT recovery_stats")
                kind, row = "text", conn.execute(sql.SQL(_HASH_SUMS["text"]).format(name)).fetchone()
            conn.execute("RELEASE SAVEPOINT recovery_stats")
        assert row is not None
        rows, high, low = int(row[0]), str(row[1]), str(row[2])
        text = f"{rows}:{high}:{low}" if method == CHECKSUM_METHOD else f"{kind}:{rows}:{high}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        result.append({"schema": schema, "table": table, "rows": rows, "checksum": digest})
    return result


class SnapshotStats:
    """``table_stats`` in a thread, on a connection whose snapshot a running pg_dump shares.

    psycopg serialises use of one connection and releases the GIL while the server works, so the
    statistics proceed while the dump streams; ``cancel`` stops them when the dump fails.
    """

    def __init__(self, conn: psycopg.Connection[Any], method: str) -> None:
        self._conn = conn
        self._method = method
        self._result: list[TableStats] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drill-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = table_stats(self._conn, self._method)
        except BaseException as exc:  # handed to result()
            self._error = exc

    def result(self) -> list[TableStats]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):  # best effort: the connection is closed right after
                self._conn.cancel_safe()
        self._thread.join(timeout=30)


def compare_stats(expected: list[TableStats], actual: list[TableStats]) -> list[str]:
    """Human-readable differences; empty when the restored data equals the source at backup time."""
    want = {(t["schema"], t["table"]): t for t in expected}
    have = {(t["schema"], t["table"]): t for t in actual}
    problems = []
    for key in sorted(want.keys() - have.keys()):
        problems.append(f"table {key[0]}.{key[1]} is missing from the restored database")
    for key in sorted(have.keys() - want.keys()):
        problems.append(f"table {key[0]}.{key[1]} is in the restored database but not in the backup")
    for key in sorted(want.keys() & have.keys()):
        w, h = want[key], have[key]
        if w["rows"] != h["rows"]:
            problems.append(f"table {key[0]}.{key[1]}: {h['rows']} rows restored, {w['rows']} at backup time")
        elif w["checksum"] != h["checksum"]:
            problems.append(f"table {key[0]}.{key[1]}: same row count ({w['rows']}) but different content")
    return problems
