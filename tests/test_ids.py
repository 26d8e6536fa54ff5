"""``seq`` and ``conn_id`` continue across the runs of one folder (``recorder/ids.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from recorder.compact import compact_day
from recorder.frames import Frame, event_frame
from recorder.ids import LastIds, last_ids
from recorder.storage import Pipeline
from tests.storage_frames import T0, real_frames

DAY_NS = 86_400 * 10**9


def _run(root: Path, frames: list[Frame], *, first_seq: int, conn_id: int,
         shift_ns: int = 0) -> list[Frame]:
    """One run's pipeline writing ``frames`` renumbered from ``first_seq`` on connection
    ``conn_id``, their receive times moved by ``shift_ns``, and a last ``stop`` event, as a
    run ends; closed, so all is published."""
    ours = [f._replace(seq=first_seq + i, conn_id=conn_id, recv_ts_ns=f.recv_ts_ns + shift_ns)
            for i, f in enumerate(frames)]
    last = ours[-1]
    ours.append(event_frame(last.recv_ts_ns + 1, conn_id, last.seq + 1, "stop"))
    pipe = Pipeline(root, timezone="UTC", clock=lambda: T0 + shift_ns)
    pipe.write(ours)
    pipe.close()
    return ours


def test_a_new_folder_starts_at_zero(tmp_path: Path) -> None:
    assert last_ids(tmp_path) == LastIds(0, 0)
    assert last_ids(tmp_path / "missing") == LastIds(0, 0)


def test_the_newest_segment_holds_the_last_ids_whatever_its_date(tmp_path: Path) -> None:
    """The second run's clock was set back a day: its files land in an older ``date=``
    partition than the first run's, and still hold the folder's highest ids."""
    frames = real_frames(300)
    _run(tmp_path, frames[:200], first_seq=1, conn_id=4, shift_ns=DAY_NS)
    second = _run(tmp_path, frames[200:], first_seq=202, conn_id=5)
    dates = sorted(p.name for p in (tmp_path / "raw").glob("date=*"))
    assert dates == ["date=2026-04-30", "date=2026-05-01"]
    assert second[-1].direction == "event"  # the highest seq is in events alone
    assert last_ids(tmp_path) == LastIds(second[-1].seq, 5) == LastIds(302, 5)


def test_compacted_files_keep_their_last_segment(tmp_path: Path) -> None:
    frames = real_frames(300)
    _run(tmp_path, frames[:150], first_seq=1, conn_id=1)
    _run(tmp_path, frames[150:], first_seq=152, conn_id=2)
    compact_day(tmp_path, "2026-04-30")
    names = sorted(p.name for p in (tmp_path / "events").glob("*/*.parquet"))
    assert names == ["events-140000-1-2.parquet"]  # UTC
    assert last_ids(tmp_path) == LastIds(302, 2)


def test_a_compaction_swapping_the_folder_mid_scan_is_met_by_scanning_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compact`` does not wait for a recorder: it may swap today's folder and delete its
    files after ``last_ids`` listed them and before it read them."""
    frames = real_frames(300)
    _run(tmp_path, frames[:150], first_seq=1, conn_id=1)
    _run(tmp_path, frames[150:], first_seq=152, conn_id=2)
    read_metadata = pq.read_metadata
    compactions: list[int] = []

    def compacting_first(path: Path, *args: Any, **kwargs: Any) -> Any:
        if not compactions:
            compactions.append(len(compact_day(tmp_path, "2026-04-30").tables))
        return read_metadata(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_metadata", compacting_first)
    assert last_ids(tmp_path) == LastIds(302, 2)
    assert compactions and compactions[0] > 0
    names = sorted(p.name for p in (tmp_path / "events").glob("*/*.parquet"))
    assert names == ["events-140000-1-2.parquet"]  # the files it listed first are gone


def test_files_without_statistics_are_read_for_their_ids(tmp_path: Path) -> None:
    _run(tmp_path, real_frames(100), first_seq=1, conn_id=3)
    for path in tmp_path.glob("*/date=*/*.parquet"):
        pq.write_table(pq.read_table(path), path, write_statistics=False)
        assert pq.read_metadata(path).row_group(0).column(0).statistics is None
    assert last_ids(tmp_path) == LastIds(101, 3)
