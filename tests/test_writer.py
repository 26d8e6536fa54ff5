"""Parquet files: atomic publish, one row group per write, metadata, schema check, dates."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import random
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recorder import __version__
from recorder.schema import SCHEMA_VERSION
from recorder.writer import (
    PartialFile,
    SchemaMismatch,
    file_name,
    hhmmss,
    partition_dir,
    segment_span,
    split_by_date,
)
from tests.storage_frames import FullDisk, rows

SCHEMA = pa.schema([("recv_ts", pa.timestamp("ns", tz="UTC")), ("seq", pa.int64()),
                    ("topic", pa.string())])
META = {b"recorder.schema_version": str(SCHEMA_VERSION).encode(),
        b"recorder.version": __version__.encode()}
# 2026-04-30 03:59:59 UTC is still 2026-04-29 in New York; 04:00:00 is the 30th
EVE = 1_777_521_599_000_000_000
MIDNIGHT_NY = 1_777_521_600_000_000_000


def table(ts: list[int], first_seq: int = 1) -> pa.Table:
    n = len(ts)
    return pa.table({"recv_ts": pa.array(ts, pa.timestamp("ns", tz="UTC")),
                     "seq": pa.array(range(first_seq, first_seq + n), pa.int64()),
                     "topic": pa.array([f"smd+{i}" for i in range(n)])}, schema=SCHEMA)


def test_file_is_invisible_until_published(tmp_path: Path) -> None:
    final = partition_dir(tmp_path, "raw", "2026-04-30") / file_name("raw", "100000", 7)
    part = PartialFile(final, SCHEMA, metadata=META)
    assert not (tmp_path / "raw").exists()  # nothing is created before rows arrive
    part.write(table([MIDNIGHT_NY, MIDNIGHT_NY + 1]))
    part.write(table([MIDNIGHT_NY + 2], first_seq=3))
    # written in the table's .writing folder, out of the day's (which compact swaps)
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == [
        "raw", "raw/.writing", "raw/.writing/date=2026-04-30~raw-100000-7.parquet.partial"]
    with pytest.raises(duckdb.IOException, match="No files found"):
        rows(f"SELECT count(*) FROM read_parquet('{tmp_path}/**/*.parquet')")
    assert part.finish()
    part.publish()
    assert sorted(p.name for p in final.parent.iterdir()) == ["raw-100000-7.parquet"]
    got = rows(f"SELECT seq, topic, date FROM read_parquet('{tmp_path}/*/*/*.parquet', "
               "hive_partitioning=true) ORDER BY seq")
    assert [(s, t, str(d)) for s, t, d in got] == [
        (1, "smd+0", "2026-04-30"), (2, "smd+1", "2026-04-30"), (3, "smd+0", "2026-04-30")]
    meta = pq.ParquetFile(final)
    assert meta.metadata.num_row_groups == 2
    kv = meta.schema_arrow.metadata
    assert kv[b"recorder.schema_version"] == str(SCHEMA_VERSION).encode()
    assert kv[b"recorder.version"] == __version__.encode()
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"


def test_no_rows_no_file(tmp_path: Path) -> None:
    part = PartialFile(tmp_path / "t" / "x.parquet", SCHEMA, metadata=META)
    part.write(table([]))
    assert part.finish() is False
    assert not (tmp_path / "t").exists()


def test_schema_mismatch_raises_showing_both(tmp_path: Path) -> None:
    part = PartialFile(tmp_path / "x.parquet", SCHEMA, metadata=META)
    other = table([1]).rename_columns(["recv_ts", "seq", "kind"])
    with pytest.raises(SchemaMismatch) as info:
        part.write(other)
    text = str(info.value)
    assert "topic: string" in text and "kind: string" in text


def test_rows_split_by_trading_day_in_the_timezone() -> None:
    t = table([EVE - 1, EVE, MIDNIGHT_NY, MIDNIGHT_NY + 5])
    by_day = split_by_date(t, "America/New_York")
    assert {d: v.column("seq").to_pylist() for d, v in by_day.items()} == {
        "2026-04-29": [1, 2], "2026-04-30": [3, 4]}
    assert {d: v.num_rows for d, v in split_by_date(t, "UTC").items()} == {"2026-04-30": 4}
    assert split_by_date(table([]), "UTC") == {}
    assert hhmmss(MIDNIGHT_NY, "America/New_York") == "000000"
    assert hhmmss(MIDNIGHT_NY, "UTC") == "040000"


@pytest.fixture
def python_only_zone(tmp_path: Path) -> Iterator[str]:
    """New York's rules under a name only Python's zoneinfo finds (as on a machine whose zones
    come from the tzdata package alone): Arrow looks in the system's database only."""
    source = importlib.resources.files("tzdata.zoneinfo").joinpath("America/New_York")
    (tmp_path / "Test").mkdir()
    (tmp_path / "Test" / "Zone").write_bytes(source.read_bytes())
    zoneinfo.reset_tzpath([str(tmp_path)])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        yield "Test/Zone"
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


def test_a_batch_across_midnight_splits_with_a_zone_only_python_knows(
        python_only_zone: str) -> None:
    """Arrow's ``local_timestamp`` failed (ArrowInvalid) on such a zone, so storage failed at
    the first batch after midnight, and recovery with a traceback."""
    with pytest.raises(pa.ArrowInvalid):  # what the split must not depend on
        pc.local_timestamp(pa.array([EVE], pa.timestamp("ns", tz=python_only_zone)))
    t = table([EVE - 1, EVE, MIDNIGHT_NY, MIDNIGHT_NY + 5])
    assert {d: v.column("seq").to_pylist() for d, v in split_by_date(t, python_only_zone).items()
            } == {"2026-04-29": [1, 2], "2026-04-30": [3, 4]}


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Asia/Kolkata",
                                  "America/Havana", "Pacific/Chatham"])
def test_the_split_gives_each_row_the_day_python_gives_it(zone: str) -> None:
    """Around the days clocks change (Havana's change at midnight), rows in random order,
    several midnights in one batch."""
    rng = random.Random(zone)
    # from the day before each change of 2026 (US Mar 8, Nov 1; EU Mar 29, Oct 25), 3 days
    starts = [1_772_841_600, 1_774_656_000, 1_792_800_000, 1_793_404_800]
    stamps = [(s + rng.randrange(3 * 86_400)) * 10**9 + rng.randrange(10**9)
              for s in starts for _ in range(300)]
    rng.shuffle(stamps)
    got = {d: v.column("seq").to_pylist() for d, v in split_by_date(table(stamps), zone).items()}
    want: dict[str, list[int]] = {}
    for seq, ns in enumerate(stamps, 1):
        day = dt.datetime.fromtimestamp(ns // 10**9, ZoneInfo(zone)).date().isoformat()
        want.setdefault(day, []).append(seq)
    assert got == want


def test_full_disk_leaves_nothing_visible(tmp_path: Path) -> None:
    final = tmp_path / "raw" / "date=2026-04-30" / "raw-000000-1.parquet"
    disk = FullDisk(budget=2_000)
    big = table(list(range(MIDNIGHT_NY, MIDNIGHT_NY + 20_000)))
    part = PartialFile(final, SCHEMA, opener=disk, metadata=META)
    with pytest.raises(OSError, match="No space left"):
        part.write(big)
        part.finish()
    part.abort()
    assert disk.failures >= 1
    assert list(tmp_path.glob("**/*.parquet*")) == []
    part = PartialFile(final, SCHEMA, metadata=META)
    part.write(big)
    assert part.finish()
    part.publish()
    assert rows(f"SELECT count(*), max(seq) FROM '{final}'") == [(20_000, 20_000)]


@pytest.mark.parametrize(("name", "span"), [
    ("raw-100000-7.parquet", (7, 7)),
    ("market_data-093000-1-12.parquet", (1, 12)),
    ("raw-100000-1-2-3.parquet", None),
    ("raw-100000-x.parquet", None),
    ("raw-100000.parquet", None),
    ("notes.parquet", None),
])
def test_a_files_segments_come_from_its_name(name: str, span: tuple[int, int] | None) -> None:
    assert segment_span(name) == span
