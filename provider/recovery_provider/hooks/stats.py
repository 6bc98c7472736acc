"""Row counts and content checksums per table: what a drill compares after a restore.

Why an order-independent sum of 64-bit row hashes: it needs constant memory on the server (no
``string_agg`` of millions of hashes), is the same whatever order rows come back in after a restore,
and changes when any row's text changes. Rows are hashed as ``md5(row::text)`` under fixed session
settings (DateStyle, TimeZone, extra_float_digits, bytea_output), so the text form is the same on
the source and on the restored copy of the same server version.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import psycopg

CHECKSUM_METHOD = "sha256(count:sum(md5(row::text)[0:16] as int64):sum(md5(row::text)[16:32] as int64))"

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


class TableStats(TypedDict):
    schema: str
    table: str
    rows: int
    checksum: str


def apply_stable_settings(conn: psycopg.Connection[Any]) -> None:
    for statement in STABLE_SETTINGS:
        conn.execute(statement)


def table_stats(conn: psycopg.Connection[Any]) -> list[TableStats]:
    """Stats of every user table, in the connection's current transaction (snapshot) if any."""
    from psycopg import sql

    apply_stable_settings(conn)
    result: list[TableStats] = []
    for schema, table in conn.execute(_TABLES).fetchall():
        query = sql.SQL(_SUMS).format(sql.Identifier(schema, table))
        row = conn.execute(query).fetchone()
        assert row is not None
        rows, high, low = int(row[0]), str(row[1]), str(row[2])
        digest = hashlib.sha256(f"{rows}:{high}:{low}".encode()).hexdigest()
        result.append({"schema": schema, "table": table, "rows": rows, "checksum": digest})
    return result


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
