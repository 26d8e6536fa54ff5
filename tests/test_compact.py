"""Compaction: one sorted file per table per day, and no row twice or missing after a kill."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder import compact
from recorder.compact import (
    UnreadableFile,
    compact_day,
    overlapping_groups,
    recover_compactions,
    time_span,
)
from recorder.frames import Frame
from recorder.journal import segment_path
from recorder.normalizer import normalize
from recorder.recover import recover_dir
from recorder.schema import TABLES
from recorder.storage import Pipeline
from tests.storage_frames import (
    T0,
    empty_file,
    garbage_file,
    real_frames,
    rows,
    times_as_text_file,
)

TZ = "America/New_York"
DAY = "2026-04-30"


def record(root: Path, frames: list[Frame], per_segment: int) -> None:
    pipe = Pipeline(root, timezone=TZ, clock=lambda: T0)
    for i in range(0, len(frames), per_segment):
        pipe.write(frames[i : i + per_segment])
        pipe.rotate()
    pipe.close()


def table_counts(root: Path) -> dict[str, int]:
    out = {}
    for folder in sorted(root.glob("*/date=*")):
        out[folder.parent.name] = rows(f"SELECT count(*) FROM '{folder}/*.parquet'")[0][0]
    return out


def raw_seqs(root: Path) -> list[int]:
    return [r[0] for r in rows(f"SELECT seq FROM '{root}/raw/*/*.parquet' ORDER BY seq")]


def compact_killed_after_the_swap(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compact ``root``'s day, killed just after the first table's swap: its intent is
    written and its partition swapped, nothing is rolled forward."""

    class Killed(Exception):
        pass

    def killed_after_the_swap(*args: object) -> None:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(compact, "_finish", killed_after_the_swap)
        with pytest.raises(Killed):
            compact_day(root, DAY)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Frame]]:
    root = tmp_path_factory.mktemp("day") / "data"
    frames = real_frames(6_000)
    record(root, frames, per_segment=200)  # 30 files per table
    return root, frames


def test_one_sorted_file_per_table(day: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(day[0], root)
    frames = day[1]
    before = table_counts(root)
    report = compact_day(root, DAY)
    assert report.tables["raw"] == (30, 6_000)
    assert table_counts(root) == before
    for table in before:
        files = list((root / table / f"date={DAY}").iterdir())
        assert len(files) == 1, files
    raw = next((root / "raw" / f"date={DAY}").glob("*.parquet"))
    assert raw.name == "raw-100000-1-30.parquet"
    assert pq.read_table(raw).column("seq").to_pylist() == [f.seq for f in frames]
    assert pq.ParquetFile(raw).schema_arrow.metadata[b"recorder.version"]
    assert not list(root.glob("*/.compact-*")) and not list(root.glob("_compact/*.json"))
    assert compact_day(root, DAY).tables == {}  # nothing left to merge


def test_compacting_again_names_the_file_for_every_segment_it_holds(tmp_path: Path) -> None:
    """Segments 1-2 compacted, then 3-4 recorded: the second compaction's file holds 1..4."""
    frames = real_frames(800)
    root = tmp_path / "data"
    record(root, frames[:400], per_segment=200)
    compact_day(root, DAY)
    record(root, frames[400:], per_segment=200)
    names = sorted(p.name for p in (root / "raw" / f"date={DAY}").iterdir())
    assert names == ["raw-100000-1-2.parquet", "raw-100000-3.parquet", "raw-100000-4.parquet"]
    compact_day(root, DAY)
    [raw] = (root / "raw" / f"date={DAY}").iterdir()
    assert raw.name == "raw-100000-1-4.parquet"
    assert raw_seqs(root) == [f.seq for f in frames]


@pytest.mark.parametrize(("spans", "groups"), [
    ([(1, 2), (3, 4), (5, 6)], [[0], [1], [2]]),  # consecutive segments: one file a group
    ([(5, 6), (1, 2), (3, 4)], [[1], [2], [0]]),  # in time order, not name order
    ([(1, 4), (3, 6), (7, 8)], [[0, 1], [2]]),  # overlapping
    ([(1, 3), (3, 5)], [[0, 1]]),  # touching: equal recv_ts, seq decides across the two
    ([(1, 10), (2, 3), (4, 5), (11, 12)], [[0, 1, 2], [3]]),  # one file spanning others
    ([], []),
])
def test_files_whose_times_overlap_are_merged_together(
        spans: list[tuple[int, int]], groups: list[list[int]]) -> None:
    assert overlapping_groups(spans) == groups


def test_a_files_time_span_is_exact_to_the_ns_with_or_without_statistics(tmp_path: Path) -> None:
    frames = real_frames(500, start_ns=T0 + 7, step_ns=1_001)
    root = tmp_path / "data"
    record(root, frames, per_segment=500)
    raw = next(root.glob(f"raw/date={DAY}/*.parquet"))
    want = (frames[0].recv_ts_ns, frames[-1].recv_ts_ns)
    assert time_span(raw) == want
    bare = tmp_path / "no-stats.parquet"
    pq.write_table(pq.read_table(raw), bare, write_statistics=False, row_group_size=100)
    assert time_span(bare) == want


def test_overlapping_segments_still_come_out_in_time_order(tmp_path: Path) -> None:
    """Segment 2's frames fall between segment 1's (a clock stepped back, a replay): the two
    files are sorted together; a third, later one is written after them as it is."""
    first = real_frames(300, start_ns=T0, step_ns=2_000_000)
    second = real_frames(300, start_ns=T0 + 1_000_000, step_ns=2_000_000, first_seq=301)
    third = real_frames(300, start_ns=T0 + 10**10, first_seq=601)
    root = tmp_path / "data"
    record(root, first + second + third, per_segment=300)
    report = compact_day(root, DAY)
    assert report.tables["raw"] == (3, 900)
    raw = next((root / "raw" / f"date={DAY}").glob("*.parquet"))
    got = pq.read_table(raw, columns=["recv_ts", "seq"])
    want = sorted((f.recv_ts_ns, f.seq) for f in first + second + third)
    assert list(zip(got.column("recv_ts").cast("int64").to_pylist(),
                    got.column("seq").to_pylist(), strict=True)) == want


def test_files_of_a_live_segment_are_left_alone(tmp_path: Path) -> None:
    frames = real_frames(600)
    root = tmp_path / "data"
    record(root, frames[:400], per_segment=200)
    pipe = Pipeline(root, timezone=TZ, clock=lambda: T0)
    pipe.write(frames[400:])
    pipe.flush()
    shutil.copytree(root, tmp_path / "killed")  # a kill: segment 3 on disk, unpublished
    pipe.close()
    killed = tmp_path / "killed"
    seg = sorted((root / "raw" / f"date={DAY}").glob("*.parquet"))[-1]
    shutil.copy(seg, killed / "raw" / f"date={DAY}" / seg.name)  # ... after its rename
    compact_day(killed, DAY)
    names = sorted(p.name for p in (killed / "raw" / f"date={DAY}").iterdir())
    assert names == ["raw-100000-1-2.parquet", "raw-100000-3.parquet"]
    recover_dir(killed)
    assert raw_seqs(killed) == [f.seq for f in frames]


def test_files_left_out_stay_in_sight_across_the_swap_even_if_killed_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partition holds a file compaction must not merge (its segment is still in the
    journal). Killed just after the swap, before the intent is rolled forward, the partition
    must still show that file's rows beside the merged file: none missing, none twice."""
    frames = real_frames(600)
    root = tmp_path / "data"
    pipe = Pipeline(root, timezone=TZ, clock=lambda: T0)
    for i in (0, 200):
        pipe.write(frames[i : i + 200])
        pipe.rotate()
    pipe.write(frames[400:])
    pipe.flush()
    segment = segment_path(root / "_journal", 3)
    kept = segment.read_bytes()
    pipe.close()  # segment 3 published ...
    segment.write_bytes(kept)  # ... and a kill came before its segment was deleted
    before = table_counts(root)

    compact_killed_after_the_swap(root, monkeypatch)
    swapped = [t for t in TABLES if (root / "_compact" / f"{t}-{DAY}.json").exists()]
    assert len(swapped) == 1
    live = sorted(p.name for p in (root / swapped[0] / f"date={DAY}").glob("*.parquet"))
    assert live == [f"{swapped[0]}-100000-1-2.parquet", f"{swapped[0]}-100000-3.parquet"]
    assert table_counts(root) == before
    recover_dir(root)  # rolls the intent forward, replays segment 3
    assert table_counts(root) == before
    assert raw_seqs(root) == [f.seq for f in frames]


@pytest.mark.parametrize("damage", [
    b'{"table": "raw", "date": "2026-04-30", "outp', b"\xff\xfe{}", b"[1, 2]",
    b'{"table": "raw", "date": "2026-04-30", "output": "x.parquet", "inputs": "all"}',
])
def test_a_damaged_intent_is_set_aside_and_its_folders_left_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        damage: bytes) -> None:
    """An intent the disk damaged (it is written atomically, so nothing else does) cannot be
    rolled either way without its inputs. Recovery, which every record starts with, ended in
    a traceback; now the intent is set aside, that compaction's folders are kept for a person
    to check, and the partition reads as it did."""
    frames = real_frames(600)
    root = tmp_path / "data"
    record(root, frames, per_segment=200)
    before = table_counts(root)

    compact_killed_after_the_swap(root, monkeypatch)
    [intent] = (root / "_compact").glob("*.json")
    table = intent.name.removesuffix(f"-{DAY}.json")
    intent.write_bytes(damage)
    for _ in range(2):  # and the next recovery does not clean the folders up either
        recover_dir(root)
        assert table_counts(root) == before
        assert (root / "_compact" / "damaged" / intent.name).read_bytes() == damage
        assert not list((root / "_compact").glob("*.json"))
        assert (root / table / f".compact-{DAY}").is_dir()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning == (
        f"{intent}: a damaged compaction intent, set aside in {root}/_compact/damaged; nothing "
        f"of that compaction was changed: compare {root}/{table}/date={DAY} and its "
        f".compact-{DAY} folders by hand, then delete the intent")


def test_a_rotation_during_the_busy_check_is_not_merged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A segment rotates while compaction decides which files are settled: its file lands and
    the recorder is killed before deleting the segment. Compaction must not merge that file,
    or recovery publishes it again and its rows are there twice."""
    frames = real_frames(600)
    root = tmp_path / "data"
    record(root, frames[:400], per_segment=200)
    real_list = compact.list_segments

    def list_with_a_rotation_meanwhile(journal_dir: Path) -> list[int]:
        busy = real_list(journal_dir)
        if not raced:
            raced.append(True)
            pipe = Pipeline(root, timezone=TZ, clock=lambda: T0)
            pipe.write(frames[400:])
            segment = segment_path(root / "_journal", 3)
            pipe.flush()
            kept = segment.read_bytes()
            pipe.close()  # the files are published ...
            segment.write_bytes(kept)  # ... and the kill came before the segment's delete
        return busy

    raced: list[bool] = []
    monkeypatch.setattr(compact, "list_segments", list_with_a_rotation_meanwhile)
    compact_day(root, DAY)  # the race comes while the first table is compacted
    assert raced
    recover_dir(root)
    clean = tmp_path / "clean"
    record(clean, frames, per_segment=200)
    for table in TABLES:
        query = f"SELECT count(*) FROM read_parquet('{{}}/{table}/*/*.parquet')"
        if (clean / table).is_dir():
            assert rows(query.format(root)) == rows(query.format(clean)), table


CHILD = """
import sys
from pathlib import Path
from recorder.compact import compact_day
compact_day(Path(sys.argv[1]), sys.argv[2])
print("done", flush=True)
"""


def test_sigkill_during_compaction(day: tuple[Path, list[Frame]], tmp_path: Path) -> None:
    frames = day[1]
    want = {t: v.num_rows for t, v in normalize(frames).items()}
    rng = random.Random(7)
    for attempt in range(5):
        root = tmp_path / f"run{attempt}"
        shutil.copytree(day[0], root)
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root), DAY],
                                stdout=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 1.2))  # imports take ~0.3 s; compaction about as long
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        recover_compactions(root)
        recover_dir(root)
        assert table_counts(root) == want, f"attempt {attempt}"
        assert raw_seqs(root) == [f.seq for f in frames]
        assert not list(root.glob("*/.compact-*")) and not list(root.glob("_compact/*.json"))
        compact_day(root, DAY)  # and it can finish the job afterwards
        assert table_counts(root) == want


def test_the_merged_file_has_the_tables_current_columns_and_descriptions(tmp_path: Path) -> None:
    """A day whose first file was written before a column was added and a description
    changed: the merged file carries the current schema (the old rows read the new column as
    null). It used to keep the first input's field metadata, so the older text."""
    from recorder.schema import arrow_schema

    root = tmp_path / "data"
    record(root, [f for f in real_frames(2_000) if b'"smd+' in f.payload], per_segment=200)
    first, *others = sorted((root / "market_data" / f"date={DAY}").glob("*.parquet"))
    old = pq.read_table(first).drop_columns(["cleared"])
    bid = old.schema.get_field_index("bid")
    old = old.cast(old.schema.set(bid, old.schema.field(bid).with_metadata(
        {"description": "an older description"})))
    pq.write_table(old, first)
    total = old.num_rows + sum(pq.read_metadata(p).num_rows for p in others)
    compact_day(root, DAY)
    [merged] = (root / "market_data" / f"date={DAY}").glob("*.parquet")
    schema = pq.read_schema(merged)
    want = arrow_schema("market_data")
    assert schema.names == want.names
    for name in want.names:
        assert schema.field(name).metadata == want.field(name).metadata, name
    last_old = max(old.column("seq").to_pylist())
    assert rows(f"SELECT count(*) FILTER (seq <= {last_old} AND cleared IS NULL), count(*) "
                f"FROM '{merged}'") == [(old.num_rows, total)]


@pytest.mark.parametrize("group_rows", [1_000, 2_000, compact.ROW_GROUP_ROWS])
def test_the_merged_file_has_full_row_groups_whatever_the_input_files(
        day: tuple[Path, list[Frame]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        group_rows: int) -> None:
    """30 files of 200 frames merge into row groups of ``ROW_GROUP_ROWS`` rows (the last
    may be short), not one small group per input file."""
    root = tmp_path / "data"
    shutil.copytree(day[0], root)
    monkeypatch.setattr(compact, "ROW_GROUP_ROWS", group_rows)
    compact_day(root, DAY)
    [raw] = (root / "raw" / f"date={DAY}").glob("*.parquet")
    meta = pq.read_metadata(raw)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    full, tail = divmod(6_000, group_rows)
    assert sizes == [group_rows] * full + ([tail] if tail else [])
    assert raw_seqs(root) == [f.seq for f in day[1]]


def published(root: Path) -> dict[str, bytes]:
    """Every file of every partition and staging folder, by path: what compaction changes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("*/*/*.parquet")}


def _seq_as_text(path: Path) -> None:
    pq.write_table(pa.table({"recv_ts": pa.array([T0], pa.timestamp("ns", "UTC")),
                             "seq": ["1"]}), path)


def _no_recv_ts(path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), path)


@pytest.mark.parametrize("spoil", [garbage_file, empty_file, times_as_text_file, _seq_as_text,
                                   _no_recv_ts])
def test_a_file_that_cannot_be_merged_stops_compaction_before_any_change(
        tmp_path: Path, spoil: Callable[[Path], None]) -> None:
    """A bad file among ``raw``'s, the last table compacted: an error naming it, and nothing
    changed in any table, no staging folder left. It used to be pyarrow's own exception
    (which names no file), after the other tables were compacted, with ``raw``'s staging
    folder left behind."""
    root = tmp_path / "data"
    record(root, real_frames(600), per_segment=200)
    bad = root / "raw" / f"date={DAY}" / "x.parquet"
    spoil(bad)
    before = published(root)
    with pytest.raises(UnreadableFile, match=f"^cannot (read|merge) {re.escape(str(bad))}: "):
        compact_day(root, DAY)
    assert published(root) == before
    assert not list(root.glob("*/.compact-*"))


def test_rows_that_cannot_be_read_leave_no_staging_folder(tmp_path: Path) -> None:
    """A file whose footer reads but whose pages do not (zeroed): found during the merge, it
    is named, the staging folder is deleted, the partition is as it was."""
    root = tmp_path / "data"
    record(root, real_frames(600), per_segment=200)
    bad = sorted((root / "market_data" / f"date={DAY}").glob("*.parquet"))[1]
    data = bytearray(bad.read_bytes())
    footer = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    data[4:footer] = bytes(footer - 4)  # between the magic bytes and the footer
    bad.write_bytes(bytes(data))
    before = published(root)
    with pytest.raises(UnreadableFile, match=f"^cannot read {re.escape(str(bad))}: "):
        compact_day(root, DAY)
    assert published(root) == before
    assert not list(root.glob("*/.compact-*"))


def test_a_recording_s_open_files_outlive_a_compaction_of_its_day(tmp_path: Path) -> None:
    """``recorder compact`` of today while ``record`` runs. The files being written used to
    sit, as ``*.partial``, in the day's folder, which the compaction swaps out and deletes:
    the next rotation could not publish them, and rebuilt the whole segment from the journal
    on the writer's thread, journaling nothing meanwhile (a kill -9 then lost seconds)."""
    frames = real_frames(600)
    root = tmp_path / "data"
    record(root, frames[:400], per_segment=200)
    pipe = Pipeline(root, timezone=TZ, clock=lambda: T0, min_flush_rows=1,
                    normalize_every_frames=1)
    pipe.write(frames[400:])
    pipe.flush()  # their rows are in open files by now
    assert list(root.glob("**/*.parquet.partial"))
    compact_day(root, DAY)
    pipe.close()  # publishes them, from the files, not the journal
    assert pipe.stats().last_error is None
    assert raw_seqs(root) == [f.seq for f in frames]
    assert not list(root.glob("**/*.partial"))
