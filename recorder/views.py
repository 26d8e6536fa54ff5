"""DuckDB views over a recording folder: what ``recorder.open`` and ``recorder query`` see.

One view per table over ``DIR/<table>/date=*/*.parquet`` (hive partitioning on, so every view
has a ``date`` column), plus three derived views:

- ``quotes``: ``market_data`` with every column carried forward per conid in receive order
  (``recv_ts, seq``): the full quote state at each update, since smd frames are deltas;
- ``trades_dedup``: one row per ``execution_id``, the latest received (it carries the
  commission IBKR sends in a second copy);
- ``bars_dedup``: one row per (conid, bar, source, bar_time), the latest received.

A row whose key is null (an execution without an id, a bar without a ``t``) cannot be told
apart from another one, so the dedup views keep every such row rather than fold them into one.

Rules:
- The glob only matches published files: ``*.partial`` files and compaction staging folders
  (``.compact-*``) are never read, so a view never sees a row twice or a half-written file.
- A table with no files yet is still a view, empty, with the columns of
  :func:`recorder.schema.arrow_schema` (and ``date``), so queries written for a full day run
  on an empty one.
- Timestamps are shown in UTC (the connection's ``TimeZone``). Files keep ``recv_ts`` in
  nanoseconds; views show it as ``TIMESTAMPTZ`` (microseconds), because DuckDB's time
  functions (``date_trunc``, ``time_bucket``, ``epoch``, interval arithmetic) do not take
  ``TIMESTAMPTZ_NS``. Exact order within a microsecond is ``seq``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from recorder.schema import TABLES, arrow_schema

_CARRY_KEYS: Final = ("recv_ts", "seq", "conid")


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type a Parquet column of ``arrow_type`` is read as."""
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.unit == "ns":
            return "TIMESTAMPTZ_NS" if arrow_type.tz else "TIMESTAMP_NS"
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_map(arrow_type):
        return f"MAP({duckdb_type(arrow_type.key_type)}, {duckdb_type(arrow_type.item_type)})"
    simple = {pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
              pa.bool_(): "BOOLEAN", pa.string(): "VARCHAR", pa.binary(): "BLOB"}
    return simple[arrow_type]


def table_glob(root: Path, table: str) -> str:
    return str(root / table / "date=*" / "*.parquet")


def has_files(root: Path, table: str) -> bool:
    return next((root / table).glob("date=*/*.parquet"), None) is not None


def view_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type a view shows a column as: nanosecond timestamps as microseconds."""
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    return duckdb_type(arrow_type)


def table_sql(root: Path, table: str) -> str:
    """The SELECT behind a table's view."""
    fields = list(arrow_schema(table))
    if has_files(root, table):
        columns = [
            f'CAST("{f.name}" AS {view_type(f.type)}) AS "{f.name}"'
            if view_type(f.type) != duckdb_type(f.type) else f'"{f.name}"'
            for f in fields
        ]
        return (f"SELECT {', '.join(columns)}, date FROM read_parquet("
                f"{sql_string(table_glob(root, table))}, hive_partitioning = true, "
                "union_by_name = true)")
    columns = [f"CAST(NULL AS {view_type(f.type)}) AS \"{f.name}\"" for f in fields]
    return f"SELECT {', '.join(columns)}, CAST(NULL AS DATE) AS date WHERE false"


def quotes_sql() -> str:
    carried = [f.name for f in arrow_schema("market_data") if f.name not in _CARRY_KEYS]
    window = "OVER (PARTITION BY conid ORDER BY recv_ts, seq ROWS UNBOUNDED PRECEDING)"
    cols = ", ".join(f'last_value("{c}" IGNORE NULLS) {window} AS "{c}"' for c in carried)
    return f"SELECT recv_ts, seq, conid, {cols}, date FROM market_data"


DERIVED: Final = {
    "trades_dedup": ("SELECT * FROM trades QUALIFY execution_id IS NULL OR row_number() OVER "
                     "(PARTITION BY execution_id ORDER BY recv_ts DESC, seq DESC) = 1"),
    "bars_dedup": ("SELECT * FROM bars QUALIFY bar_time IS NULL OR row_number() OVER "
                   "(PARTITION BY conid, bar, source, bar_time "
                   "ORDER BY recv_ts DESC, seq DESC) = 1"),
}


def create_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """(Re)create every view of ``root`` on ``con``; call again to see newly published files."""
    for table in TABLES:
        con.execute(f'CREATE OR REPLACE VIEW "{table}" AS {table_sql(root, table)}')
    con.execute(f"CREATE OR REPLACE VIEW quotes AS {quotes_sql()}")
    for name, sql in DERIVED.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")


def is_recording(root: Path) -> bool:
    """True if ``root`` looks like a recording folder (a table folder or a journal)."""
    return root.is_dir() and (any((root / t).is_dir() for t in TABLES)
                              or (root / "_journal").is_dir())


def open_views(path: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of the recording folder ``path``."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such recording folder")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    create_views(con, root)
    return con
