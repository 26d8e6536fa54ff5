"""DuckDB views over a recording folder: what ``recorder.open`` and ``recorder query`` see.

One view per table over ``DIR/<table>/date=*/*.parquet``, each with a ``date`` column (the
trading day its file's folder names), plus three derived views:

- ``quotes``: ``market_data`` with every column carried forward per stream (``conid``, and
  ``conid_ex`` when a routing exchange was asked for) in receive order
  (``recv_ts, seq``): the full quote state at each update, since smd frames are deltas; a
  column a frame sent blank (listed in ``cleared``: a bid withdrawn) is null from there on,
  until a value comes again;
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
  on an empty one. The glob is read at each query (``allow_empty``, DuckDB 2.0), so a view
  shows the files published after the connection was opened, even a table's first.
- The folder's path is taken literally: ``*``, ``?`` and ``[`` in it are escaped in the glob,
  so ``run[1]`` reads its own files and ``x*y`` not a neighbour's too. ``date`` comes from
  the file's own ``date=`` folder, not from DuckDB's hive partitioning, which reads every
  ``key=value`` in the path and lets an outer one (``lake/date=2026-01-01/DIR``) win; a
  filter on ``date`` still skips the other days' files.
- Views are bound when queried, not when created (``DEFER_BINDING``): a file that is not
  Parquet, or one whose columns cannot be read as its table's, fails the queries that read its
  table (DuckDB's message names it), not the opening of the folder nor the other tables.
- Timestamps are shown in UTC (the connection's ``TimeZone``). Files keep ``recv_ts`` in
  nanoseconds; views show it as ``TIMESTAMPTZ`` (microseconds), because DuckDB's time
  functions (``date_trunc``, ``time_bucket``, ``epoch``, interval arithmetic) do not take
  ``TIMESTAMPTZ_NS``. Exact order within a microsecond is ``seq``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from recorder.schema import TABLES, arrow_schema, columns

_CARRY_KEYS: Final = ("recv_ts", "seq", "conid")
_CLEARED: Final = "cleared"  # market_data's list of field ids a frame sent blank
_FILE: Final = "_recorder_file"  # the path of the file a row was read from, inside a view
_GLOB_CHARS: Final = re.compile(r"[*?\[]")


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
    if pa.types.is_list(arrow_type):
        return f"{duckdb_type(arrow_type.value_type)}[]"
    simple = {pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
              pa.bool_(): "BOOLEAN", pa.string(): "VARCHAR", pa.binary(): "BLOB"}
    return simple[arrow_type]


def glob_escape(path: str) -> str:
    """``path`` as a DuckDB glob that matches only itself: ``*``, ``?`` and ``[`` each in a
    bracket of its own (``run[1]`` -> ``run[[]1]``)."""
    return _GLOB_CHARS.sub(lambda m: f"[{m[0]}]", path)


def table_glob(root: Path, table: str) -> str:
    return f"{glob_escape(str(root / table))}/date=*/*.parquet"


def view_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type a view shows a column as: nanosecond timestamps as microseconds."""
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    return duckdb_type(arrow_type)


def _no_rows(table: str, type_of: Callable[[pa.DataType], str]) -> str:
    """A SELECT of no rows with every column of ``table`` (and the file's path), typed."""
    columns = [f'CAST(NULL AS {type_of(f.type)}) AS "{f.name}"' for f in arrow_schema(table)]
    return f"SELECT {', '.join(columns)}, CAST(NULL AS VARCHAR) AS {_FILE} WHERE false"


def table_sql(root: Path, table: str, file: Path | None = None) -> str:
    """The SELECT behind a table's view: its files (or only ``file``). Files written before a
    column was added lack it; ``UNION ALL BY NAME`` with a typed empty SELECT gives it to them
    as null (even when no file has it yet, or there is no file at all), and projections and
    filters still reach the Parquet reader."""
    columns = [
        f'CAST("{f.name}" AS {view_type(f.type)}) AS "{f.name}"'
        if view_type(f.type) != duckdb_type(f.type) else f'"{f.name}"'
        for f in arrow_schema(table)
    ]
    glob = glob_escape(str(file)) if file else table_glob(root, table)
    read = (f"SELECT * FROM read_parquet({sql_string(glob)}, hive_partitioning = false, "
            f"union_by_name = true, allow_empty = true, filename = {sql_string(_FILE)})")
    date = f"TRY_CAST(regexp_extract({_FILE}, '/date=([^/]*)/[^/]*$', 1) AS DATE) AS date"
    return (f"SELECT {', '.join(columns)}, {date} FROM ({read} "
            f"UNION ALL BY NAME {_no_rows(table, duckdb_type)})")


# A market_data row's stream: its conid, with the routing exchange if one was asked for
# (``265598@NASDAQ``); a frame without conidEx (gateways before 2023) is the plain stream.
STREAM = "coalesce(conid_ex, CAST(conid AS VARCHAR))"


def quotes_sql() -> str:
    """Each column's latest value per stream (conid, and the routing exchange ``conid_ex``
    names: ``265598`` and ``265598@NASDAQ`` are two books): the latest non-null one, or null
    since a frame cleared it (sent one of its field ids blank). A struct carries the value, so
    a cleared column's null is a value that ``IGNORE NULLS`` keeps."""
    window = f"OVER (PARTITION BY conid, {STREAM} ORDER BY recv_ts, seq ROWS UNBOUNDED PRECEDING)"
    cols = []
    for col in columns("market_data"):
        name = col.name
        if name in _CARRY_KEYS or name == _CLEARED:
            continue
        if col.field_ids:
            ids = ", ".join(sql_string(f) for f in col.field_ids)
            value = (f'CASE WHEN "{name}" IS NOT NULL OR list_has_any({_CLEARED}, [{ids}]) '
                     f'THEN {{\'v\': "{name}"}} END')
            cols.append(f'(last_value({value} IGNORE NULLS) {window}).v AS "{name}"')
        else:
            cols.append(f'last_value("{name}" IGNORE NULLS) {window} AS "{name}"')
    return f"SELECT recv_ts, seq, conid, {', '.join(cols)}, date FROM market_data"


DERIVED: Final = {
    # the latest copy that carries a commission, else the latest: IBKR re-sends executions
    # (behaviours §35), and a re-send without one must not hide the one it had
    "trades_dedup": ("SELECT * FROM trades QUALIFY execution_id IS NULL OR row_number() OVER "
                     "(PARTITION BY execution_id ORDER BY commission IS NOT NULL DESC, "
                     "recv_ts DESC, seq DESC) = 1"),
    "bars_dedup": ("SELECT * FROM bars QUALIFY bar_time IS NULL OR row_number() OVER "
                   "(PARTITION BY conid, bar, source, bar_time "
                   "ORDER BY recv_ts DESC, seq DESC) = 1"),
}


def _create_view(con: duckdb.DuckDBPyConnection, name: str, sql: str) -> None:
    """Bound at each query, not now: binding reads every file's footer (``union_by_name``), so
    one bad file made every view, and the connection, fail to open."""
    con.execute(f'CREATE OR REPLACE VIEW "{name}" WITH (DEFER_BINDING) AS {sql}')


def create_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """(Re)create every view of ``root`` on ``con``; each reads the files published when it
    is queried."""
    for table in TABLES:
        _create_view(con, table, table_sql(root, table))
    _create_view(con, "quotes", quotes_sql())
    for name, sql in DERIVED.items():
        _create_view(con, name, sql)


# DuckDB's error for a file it listed and then could not open
_CANNOT_OPEN: Final = re.compile(r'Cannot open file "([^"]+)": No such file or directory')
RETRIES_AFTER_COMPACT: Final = 3


def compacted_away(exc: BaseException, root: Path) -> bool:
    """Whether ``exc`` is DuckDB failing to open a file of ``root`` it had listed, which is
    gone: ``recorder compact`` swapped the file's day for its merged file while the query
    ran. Nothing is lost (the merged file holds every row); the query, run again, reads it."""
    found = _CANNOT_OPEN.search(str(exc))
    if found is None:
        return False
    path = Path(found[1])
    return Path(root).resolve() in path.parents and not path.exists()


class NoRecording(ValueError):
    """The folder holds no recording: no table folder, no journal."""

    def __init__(self, root: Path) -> None:
        super().__init__(f"{root}: no recording here (no table folders, no journal)")


def is_recording(root: Path) -> bool:
    """True if ``root`` looks like a recording folder (a table folder or a journal)."""
    return root.is_dir() and (any((root / t).is_dir() for t in TABLES)
                              or (root / "_journal").is_dir())


def recorded_dates(root: Path) -> list[str]:
    """The trading days ``root`` holds published files of, oldest first (from the ``date=``
    folders, so no file is opened)."""
    return sorted({folder.name.removeprefix("date=")
                   for table in TABLES for folder in (root / table).glob("date=*")
                   if next(folder.glob("*.parquet"), None) is not None})


def open_views(path: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of the recording folder ``path``.

    An empty folder is a recording yet to start: its views are empty and show its files as
    they are published. A folder that holds other things but no recording raises
    :class:`NoRecording`, as ``recorder query`` and ``summary`` refuse it (a file:
    :class:`NotADirectoryError`; nothing there: :class:`FileNotFoundError`): it is far more often
    the wrong folder (a parent, a typo naming another folder) than one a recording is about to
    start in, and its empty views would pass for a day without data. A recording takes its
    folder at once (``_journal``), so from its first moment the folder opens."""
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: a file, not a recording folder (open the folder "
                                 "that holds the table folders)")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such recording folder")
    if not is_recording(root) and any(root.iterdir()):
        raise NoRecording(root)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    create_views(con, root)
    return con
