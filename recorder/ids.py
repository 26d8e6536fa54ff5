"""The two ids that order everything a folder holds: ``seq`` and ``conn_id``.

``seq`` numbers every frame (in, out and event) and ``conn_id`` every websocket connection.
Both continue across the runs that record into one folder, so within a folder a ``seq`` names
one frame: a table row joins its ``raw`` frame on ``seq`` alone, and ``ORDER BY seq`` is the
order the frames were received in, whichever run received them.

A run learns where to continue from the folder itself, with :func:`last_ids`, after recovery
has published whatever a killed run left (the journal then holds nothing unpublished):

- Every frame is a row of ``raw`` (in, out) or ``events`` (event), so those two tables hold
  the highest ids.
- A published file's name ends in its journal segment number (``<table>-<HHMMSS>-<n>``, or
  ``…-<first>-<last>`` once compacted), and segment numbers only grow in a folder; the files
  of the highest segment hold the newest frames, whatever ``date=`` partition they are in
  (a changed ``output.timezone`` or a clock set back cannot hide them). Only their Parquet
  footers are read: the column statistics give the maxima.
- ``compact`` may run meanwhile (it does not wait for a recorder): a day folder swapped between
  the listing and the read makes a file vanish. The compacted file keeps the newest segment
  number in its name, so the scan simply starts over.

Folders recorded before ids continued have ``seq`` starting again at 1 in each run; their rows
are still told apart by ``(recv_ts, seq)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, NamedTuple

import pyarrow.parquet as pq

from recorder.writer import segment_of

ID_TABLES: Final = ("raw", "events")
SCAN_ATTEMPTS: Final = 5  # a compaction swaps each table's folder once


class Counters:
    """The ids of a run: one ``seq`` for every frame, one ``conn_id`` for every websocket
    connection, each one more than the last. Start them with :func:`last_ids` to continue a
    folder."""

    def __init__(self, seq: int = 0, conn_id: int = 0) -> None:
        self.seq = seq
        self.conn_id = conn_id

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class LastIds(NamedTuple):
    seq: int = 0
    conn_id: int = 0


def last_ids(root: Path) -> LastIds:
    """The highest ``seq`` and ``conn_id`` published in ``root`` (zeros for a new folder).
    Call it after recovery, with the folder's lock held."""
    for _ in range(SCAN_ATTEMPTS - 1):
        try:
            return _scan(root)
        except FileNotFoundError:
            pass  # a compaction swapped a folder under the scan: look again
    return _scan(root)


def _scan(root: Path) -> LastIds:
    seq = conn_id = 0
    for table in ID_TABLES:
        newest: list[Path] = []
        newest_segment = -1
        for path in (root / table).glob("date=*/*.parquet"):
            segment = segment_of(path.name)
            if segment is None or segment < newest_segment:
                continue
            if segment > newest_segment:
                newest, newest_segment = [], segment
            newest.append(path)
        for path in newest:
            file_seq, file_conn = _maxima(path)
            seq, conn_id = max(seq, file_seq), max(conn_id, file_conn)
    return LastIds(seq, conn_id)


def _maxima(path: Path) -> tuple[int, int]:
    """The file's highest ``seq`` and ``conn_id``, from its footer's statistics when every row
    group has them, else from the two columns themselves."""
    meta = pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    found = []
    for name in ("seq", "conn_id"):
        index = names.index(name)
        stats = [meta.row_group(g).column(index).statistics for g in range(meta.num_row_groups)]
        if all(s is not None and s.has_min_max for s in stats):
            found.append(max((int(s.max) for s in stats if s is not None), default=0))
        else:
            column = pq.read_table(path, columns=[name]).column(name)
            found.append(max((v for v in column.to_pylist() if v is not None), default=0))
    return found[0], found[1]
