"""Parquet files that appear atomically, and the folder layout they live in.

Layout: ``DIR/<table>/date=YYYY-MM-DD/<table>-<HHMMSS>-<seq>.parquet``. ``date`` is the trading
day of each row's ``recv_ts`` in the output timezone; ``HHMMSS`` and ``seq`` come from the
journal segment the rows belong to, so the name of a segment's file is known before it exists
(recovery relies on that to publish each file exactly once).

Rules and invariants:
- A :class:`PartialFile` is opened only when it gets rows; it is written as
  ``DIR/<table>/.writing/date=D~<name>.parquet.partial`` and becomes
  ``DIR/<table>/date=D/<name>.parquet`` only through :meth:`publish` (a rename), after close
  and fsync. Nothing ending in ``.parquet`` is ever half-written. Files being written are kept
  out of the ``date=`` folders, which ``recorder compact`` swaps for new ones while a
  recording runs.
- Every write is one row group, and its schema must equal the file's: a mismatch raises
  :class:`SchemaMismatch` showing both schemas.
- Every file's key-value metadata carries the schema version and the recorder version.
- Folders are created with default permissions (the umask decides).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import IO, Final
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.journal import Opener, default_opener

log = logging.getLogger(__name__)

PARTIAL: Final = ".partial"
WRITING: Final = ".writing"  # in a table's folder: the files being written, as *.partial
COMPRESSION: Final = "zstd"


def encoding_options(schema: pa.Schema) -> dict[str, list[str]]:
    """Dictionary-encode string columns only, and keep no statistics of binary columns.

    Numbers and timestamps are nearly all distinct, so a dictionary page is wasted work that
    pyarrow then falls back from; ``raw.payload`` statistics are two long byte strings per row
    group that no query filters on. Measured on the benchmark's mix: less write time, smaller
    files; the rows and schema are the same."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    stats = [f.name for f in schema if not pa.types.is_binary(f.type)
             and not pa.types.is_large_binary(f.type)]
    return {"use_dictionary": strings, "write_statistics": stats}


class SchemaMismatch(ValueError):
    """Rows whose schema is not the file's. The message shows both."""

    def __init__(self, path: Path, expected: pa.Schema, got: pa.Schema) -> None:
        super().__init__(
            f"schema mismatch writing {path.name}\n--- file schema:\n{expected}\n"
            f"--- rows schema:\n{got}"
        )


def file_metadata() -> dict[bytes, bytes]:
    """The key-value metadata every file carries."""
    from recorder import __version__
    from recorder.schema import SCHEMA_VERSION

    return {
        b"recorder.schema_version": str(SCHEMA_VERSION).encode(),
        b"recorder.version": __version__.encode(),
    }


def partition_dir(root: Path, table: str, date: str) -> Path:
    return root / table / f"date={date}"


def file_name(table: str, hhmmss: str, seq: int) -> str:
    return f"{table}-{hhmmss}-{seq}.parquet"


def segment_span(name: str) -> tuple[int, int] | None:
    """The journal segments a published file holds, first and last, from its name:
    ``<table>-<HHMMSS>-<n>.parquet`` holds n alone, a compacted ``…-<first>-<last>.parquet``
    first to last. None for a name of neither shape."""
    parts = name.removesuffix(".parquet").split("-")
    numbers = [int(p) for p in parts[2:] if p.isdigit()]
    if len(parts) not in (3, 4) or len(numbers) != len(parts) - 2:
        return None
    return numbers[0], numbers[-1]


def segment_of(name: str) -> int | None:
    """The last journal segment a published file holds (see :func:`segment_span`)."""
    span = segment_span(name)
    return span[1] if span else None


def hhmmss(created_ns: int, timezone: str) -> str:
    """Wall-clock time of ``created_ns`` in ``timezone``, as used in file names."""
    when = dt.datetime.fromtimestamp(created_ns / 1e9, ZoneInfo(timezone))
    return when.strftime("%H%M%S")


def day_of(ns: int, zone: ZoneInfo) -> str:
    """The trading day (``YYYY-MM-DD``) of the epoch nanoseconds ``ns`` in ``zone``."""
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, zone).date().isoformat()


def split_by_date(table: pa.Table, timezone: str) -> dict[str, pa.Table]:
    """Rows of ``table`` grouped by the trading day of ``recv_ts`` in ``timezone``.

    The day is Python's (:mod:`zoneinfo`, which falls back to the ``tzdata`` package), not
    Arrow's, which reads only the system's zone database: without one (a slim container),
    Arrow failed on every batch that crossed midnight, and nothing was published after it."""
    if table.num_rows == 0:
        return {}
    zone = ZoneInfo(timezone)
    ns = table.column("recv_ts").cast(pa.int64())
    bounds = pc.min_max(ns)
    first, last = day_of(bounds["min"].as_py(), zone), day_of(bounds["max"].as_py(), zone)
    if first == last:  # the common case: a whole batch in one day
        return {first: table}
    # a day per distinct second (a batch spans seconds to minutes), then per row
    seconds = pc.divide(ns, 1_000_000_000)
    distinct = pc.unique(seconds)
    distinct_days = pa.array([day_of(s * 1_000_000_000, zone) for s in distinct.to_pylist()])
    days = distinct_days.take(pc.index_in(seconds, value_set=distinct))
    return {day: table.filter(pc.equal(days, day))
            for day in sorted(set(distinct_days.to_pylist()))}


def partial_path_of(final_path: Path) -> Path:
    """Where the file that becomes ``final_path`` is written: for a day's folder, its table's
    ``.writing`` folder, under a name that keeps the day; beside it in any other folder (a
    compaction's staging folder, which the compaction alone uses)."""
    folder = final_path.parent
    if not folder.name.startswith("date="):
        return final_path.with_name(final_path.name + PARTIAL)
    return folder.parent / WRITING / f"{folder.name}~{final_path.name}{PARTIAL}"


class PartialFile:
    """A Parquet file being written as ``*.partial``; :meth:`publish` makes it visible."""

    def __init__(self, final_path: Path, schema: pa.Schema,
                 opener: Opener = default_opener,
                 metadata: dict[bytes, bytes] | None = None) -> None:
        self.final_path = final_path
        self.partial_path = partial_path_of(final_path)
        self.schema = schema
        self._metadata = metadata
        self._opener = opener
        self._file: IO[bytes] | None = None
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.row_groups = 0
        self.closed = False

    def write(self, rows: pa.Table) -> None:
        """Append ``rows`` as one row group (opening the file on the first rows)."""
        if rows.num_rows == 0:
            return
        if not rows.schema.equals(self.schema, check_metadata=False):
            raise SchemaMismatch(self.final_path, self.schema, rows.schema)
        if self.closed:
            raise ValueError(f"{self.partial_path} is already closed")
        if self._writer is None:
            self.partial_path.parent.mkdir(parents=True, exist_ok=True)
            meta = self._metadata if self._metadata is not None else file_metadata()
            self._file = self._opener(self.partial_path, "wb")
            self._writer = pq.ParquetWriter(
                self._file, self.schema.with_metadata(meta), compression=COMPRESSION,
                **encoding_options(self.schema),
            )
        self._writer.write_table(rows, row_group_size=rows.num_rows)
        self.rows += rows.num_rows
        self.row_groups += 1

    def finish(self) -> bool:
        """Close and fsync the partial file. False if it never got rows (no file)."""
        if self.closed:
            return self._file is not None
        self.closed = True
        if self._writer is None or self._file is None:
            return False
        self._writer.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return True

    def publish(self) -> None:
        """Rename the finished partial file to its final name (fsync the folder, and its
        parent, after: the folder may be new)."""
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial_path, self.final_path)

    def abort(self) -> None:
        """Drop the partial file, whatever state it is in; safe to call twice."""
        self.closed = True
        try:
            if self._writer is not None:
                self._writer.close()
        except (OSError, ValueError):
            pass
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        try:
            self.partial_path.unlink(missing_ok=True)
        except OSError as exc:  # a stray .partial is unread and harmless; a raise here is not
            log.warning("could not remove %s: %s", self.partial_path, exc)
