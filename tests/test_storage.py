"""The storage pipeline and writer task: real frames in, exact rows back through DuckDB."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recorder.frames import Frame
from recorder.journal import default_opener, list_segments, read_segment, segment_path
from recorder.normalizer import normalize
from recorder.recover import FolderBusy
from recorder.redact import Redactor
from recorder.storage import (
    Pipeline,
    Storage,
    StorageOptions,
    StorageStats,
    malloc_trim,
    use_system_allocator,
)
from tests.storage_frames import T0, FullDisk, real_frames, rows

TZ = "America/New_York"


def raw_rows(root: Path) -> list[tuple]:
    return rows(f"SELECT seq, payload FROM read_parquet('{root}/raw/*/*.parquet') ORDER BY seq")


def expected_raw(frames: list[Frame]) -> list[tuple]:
    return [(f.seq, f.payload) for f in frames]


def table_rows(root: Path, table: str) -> int:
    return rows(f"SELECT count(*) FROM read_parquet('{root}/{table}/*/*.parquet')")[0][0]


def test_write_rotate_publishes_every_table_once(tmp_path: Path) -> None:
    frames = real_frames()
    pipe = Pipeline(tmp_path, timezone=TZ, clock=lambda: T0)
    pipe.write(frames[:100])
    pipe.write(frames[100:])
    assert list(tmp_path.glob("**/*.parquet")) == []
    pipe.close()
    pipe.close()
    assert raw_rows(tmp_path) == expected_raw(frames)
    want = {t: v.num_rows for t, v in normalize(frames).items()}
    assert {t: table_rows(tmp_path, t) for t in want} == want
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("**/*.parquet"))
    assert names == sorted(f"{t}/date=2026-04-30/{t}-100000-1.parquet" for t in want)
    assert list_segments(tmp_path / "_journal") == []
    assert pipe.stats().files_published == len(want)
    assert pipe.stats().rows == want
    md = rows(f"SELECT seq, conid, last FROM '{tmp_path}/market_data/*/*.parquet' "
              "ORDER BY seq LIMIT 1")
    first = normalize(frames)["market_data"].slice(0, 1).to_pylist()[0]
    assert md == [(first["seq"], first["conid"], first["last"])]


def test_segments_number_on_across_runs(tmp_path: Path) -> None:
    frames = real_frames(400)
    for run in range(2):
        pipe = Pipeline(tmp_path, timezone=TZ, clock=lambda: T0)
        pipe.write(frames[run * 200 : run * 200 + 100])
        pipe.rotate()
        pipe.write(frames[run * 200 + 100 : run * 200 + 200])
        pipe.close()
    names = sorted(p.name for p in (tmp_path / "raw").glob("*/*.parquet"))
    assert names == [f"raw-100000-{n}.parquet" for n in (1, 2, 3, 4)]
    assert raw_rows(tmp_path) == expected_raw(frames)


def test_session_id_never_reaches_disk(tmp_path: Path) -> None:
    secret = "c3f1a9e0d2b7"
    redactor = Redactor()
    redactor.add(secret)
    tic = f'{{"topic":"tic","alive":true,"id":"{secret}","lastAccessed":1}}'.encode()
    frames = [Frame(T0, 1, 1, "in", tic), Frame(T0 + 1, 1, 2, "out",
                                                  f'{{"session":"{secret}"}}'.encode())]
    pipe = Pipeline(tmp_path, timezone=TZ, redactor=redactor)
    pipe.write(frames)
    pipe.flush()
    journal = b"".join(p.read_bytes() for p in (tmp_path / "_journal").glob("*.jnl"))
    assert secret.encode() not in journal and b"<redacted>" in journal
    pipe.close()
    assert raw_rows(tmp_path) == [
        (1, tic.replace(secret.encode(), b"<redacted>")), (2, b'{"session":"<redacted>"}')]
    for path in tmp_path.glob("**/*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_row_groups_follow_flushes_and_size(tmp_path: Path) -> None:
    frames = real_frames(5_000)
    pipe = Pipeline(tmp_path, timezone=TZ, row_group_rows=3_000, min_flush_rows=1_000,
                    normalize_every_frames=1)
    pipe.write(frames[:2_000])
    pipe.flush()  # 2,000 raw rows: one group; the smaller tables wait
    pipe.write(frames[2_000:])  # 3,000 more raw rows: a group at once
    pipe.close()
    raw = next((tmp_path / "raw").glob("*/*.parquet"))
    assert [pq.ParquetFile(raw).metadata.row_group(i).num_rows for i in range(2)] == [
        2_000, 3_000]
    assert raw_rows(tmp_path) == expected_raw(frames)


def counting_normalize(calls: list[int]) -> Callable[[Sequence[Frame]], dict[str, pa.Table]]:
    """The real normalizer, noting how many frames each call was given."""
    def counting(frames: Sequence[Frame]) -> dict[str, pa.Table]:
        calls.append(len(frames))
        return normalize(frames)

    return counting


def test_frames_are_journaled_at_once_and_normalized_in_batches(tmp_path: Path) -> None:
    """Normalizing costs per call: small writes (a flush's worth at a low rate) are journaled
    and fsynced at once but normalized ``normalize_every_frames`` at a time, and at rotation."""
    calls: list[int] = []
    counting = counting_normalize(calls)
    frames = real_frames(2_300)
    pipe = Pipeline(tmp_path, timezone=TZ, normalize=counting, normalize_every_frames=1_000)
    for start in range(0, 2_300, 400):
        pipe.write(frames[start:start + 400])
        pipe.flush()
        journal = tmp_path / "_journal"
        [number] = list_segments(journal)
        assert read_segment(segment_path(journal, number)).frames == frames[:start + 400]
    assert calls == [1_200, 1_100]  # 3 writes, then 3 more (the last only 300 frames)
    assert pipe.stats().rows["raw"] == 2_300
    pipe.close()
    assert calls == [1_200, 1_100]  # nothing left for rotation
    assert raw_rows(tmp_path) == expected_raw(frames)
    assert table_rows(tmp_path, "market_data") == normalize(frames)["market_data"].num_rows


def test_rotation_normalizes_what_is_left(tmp_path: Path) -> None:
    calls: list[int] = []
    counting = counting_normalize(calls)
    frames = real_frames(700)
    pipe = Pipeline(tmp_path, timezone=TZ, normalize=counting, normalize_every_frames=1_000)
    pipe.write(frames[:500])
    pipe.write(frames[500:])
    assert calls == [] and pipe.stats().rows == {}
    pipe.rotate()
    assert calls == [700] and pipe.stats().rows["raw"] == 700
    pipe.close()
    assert calls == [700]
    assert raw_rows(tmp_path) == expected_raw(frames)


def test_a_flush_gives_memory_back_once_enough_frames_went_through(tmp_path: Path) -> None:
    trims: list[int] = []
    frames = real_frames(5_000)
    pipe = Pipeline(tmp_path, timezone=TZ, trim=lambda: trims.append(pipe.frames),
                    trim_every_frames=2_000)
    for start in range(0, 5_000, 1_000):
        pipe.write(frames[start:start + 1_000])
        pipe.flush()
    pipe.close()
    assert trims == [2_000, 4_000]  # at flushes only, never between them
    assert raw_rows(tmp_path) == expected_raw(frames)


def test_malloc_trim_runs_where_there_is_a_c_heap_to_trim() -> None:
    malloc_trim()  # glibc here; a no-op where there is no malloc_trim, never an error


def test_a_recording_process_allocates_arrow_memory_with_malloc() -> None:
    before = pa.default_memory_pool()
    try:
        use_system_allocator()
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)


def test_rows_go_to_the_trading_day_of_their_recv_ts(tmp_path: Path) -> None:
    midnight_ny = 1_777_521_600_000_000_000
    frames = real_frames(10, start_ns=midnight_ny - 5_000_000, step_ns=1_000_000)
    pipe = Pipeline(tmp_path, timezone=TZ, clock=lambda: midnight_ny)
    pipe.write(frames)
    pipe.close()
    got = rows(f"SELECT date::VARCHAR, list(seq ORDER BY seq) FROM read_parquet("
               f"'{tmp_path}/raw/*/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 1")
    assert got == [("2026-04-29", [1, 2, 3, 4, 5]), ("2026-04-30", [6, 7, 8, 9, 10])]


def test_parquet_error_rebuilds_from_journal(tmp_path: Path) -> None:
    frames = real_frames(3_000)
    disk = FullDisk(budget=10**9)
    pipe = Pipeline(tmp_path, timezone=TZ, opener=disk, min_flush_rows=1_000,
                    normalize_every_frames=1)
    pipe.write(frames[:1_500])
    disk.budget = 0  # the disk fills: the row group cannot be written
    pipe.flush()  # not raised: the journal holds the frames; the files will be rebuilt
    assert "No space left" in (pipe.stats().last_error or "")
    assert list(tmp_path.glob("**/*.parquet*")) == []  # the half-written partial is gone
    with pytest.raises(OSError):
        pipe.write(frames[1_500:])  # the journal refuses too: the batch is not kept
    disk.budget = 10**9  # space again: the same batch is retried
    pipe.write(frames[1_500:])
    pipe.close()
    assert raw_rows(tmp_path) == expected_raw(frames)
    assert table_rows(tmp_path, "market_data") == normalize(frames)["market_data"].num_rows
    assert list_segments(tmp_path / "_journal") == []


def test_a_parquet_error_whose_cleanup_fails_too_still_keeps_each_frame_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write() raises only when the journal refused the batch (the caller then writes it
    again): an error while dropping a failed .partial must not raise after the journal took
    the batch, or the retry journals it twice and every row is published twice."""
    frames = real_frames(300)
    parquet_disk = FullDisk(budget=0)  # every .partial write fails; the journal has room

    def opener(path: Path, mode: str) -> IO[bytes]:
        return parquet_disk(path, mode) if path.name.endswith(".partial") else \
            default_opener(path, mode)

    unlink = Path.unlink
    refused: list[Path] = []

    def unlink_once_refused(path: Path, missing_ok: bool = False) -> None:
        if path.name.endswith(".partial") and not refused:
            refused.append(path)
            raise OSError(errno.EIO, "Input/output error")
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink_once_refused)
    pipe = Pipeline(tmp_path, timezone=TZ, opener=opener, row_group_rows=1,
                    normalize_every_frames=1)
    pipe.write(frames)  # the row groups fail, then dropping the partial fails: not raised
    assert refused and "No space left" in (pipe.stats().last_error or "")
    parquet_disk.budget = 10**9
    pipe.close()  # rebuilt from the journal
    assert raw_rows(tmp_path) == expected_raw(frames)


def test_failed_publish_stays_in_journal_until_it_succeeds(tmp_path: Path) -> None:
    frames = real_frames(600)
    disk = FullDisk(budget=10**9)
    pipe = Pipeline(tmp_path, timezone=TZ, opener=disk)
    pipe.write(frames[:300])
    disk.budget = 0
    with pytest.raises(OSError):
        pipe.rotate()
    assert pipe.stats().segments_pending == 1
    assert list(tmp_path.glob("**/*.parquet*")) == []
    disk.budget = 10**9
    pipe.write(frames[300:])
    pipe.close()
    assert raw_rows(tmp_path) == expected_raw(frames)
    assert pipe.stats().segments_pending == 0


def run_storage(options: StorageOptions, frames: list[Frame], **kw: object) -> Storage:
    async def main() -> Storage:
        storage = Storage(options, Redactor(), **kw)  # type: ignore[arg-type]
        await storage.recover()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(storage.run())
            for frame in frames:
                await storage.put(frame)
            await storage.close()
        await storage.close()
        return storage

    return asyncio.run(main())


def test_storage_task_drains_flushes_and_publishes(tmp_path: Path) -> None:
    frames = real_frames(2_000)
    storage = run_storage(StorageOptions(tmp_path, TZ, rotate_seconds=0.01, flush_seconds=0.01,
                                         queue_max=50), frames)
    assert raw_rows(tmp_path) == expected_raw(frames)
    stats = storage.stats
    assert stats.frames == 2_000 and stats.rows["raw"] == 2_000
    assert stats.files_published >= 7 and stats.last_error is None
    assert storage.queue_depth == 0
    assert list_segments(tmp_path / "_journal") == []


def test_put_nowait_raises_when_full(tmp_path: Path) -> None:
    async def main() -> None:
        storage = Storage(StorageOptions(tmp_path, TZ, queue_max=2), Redactor())
        frames = real_frames(3)
        storage.put_nowait(frames[0])
        storage.put_nowait(frames[1])
        with pytest.raises(asyncio.QueueFull):
            storage.put_nowait(frames[2])
        assert storage.queue_depth == 2
        await storage.close()  # no writer task: close drains itself

    asyncio.run(main())
    assert raw_rows(tmp_path) == expected_raw(real_frames(2))


def test_a_put_into_a_full_queue_waits_and_is_counted(tmp_path: Path) -> None:
    """The backpressure the status line reports: a put that finds no room waits (the socket
    reader stops reading) until the writer makes room, and ``full_waits`` counts it."""
    async def main() -> None:
        storage = Storage(StorageOptions(tmp_path, TZ, queue_max=2), Redactor())
        frames = real_frames(3)
        await storage.put(frames[0])
        await storage.put(frames[1])
        assert storage.stats.full_waits == 0
        waiting = asyncio.create_task(storage.put(frames[2]))
        await asyncio.sleep(0)
        assert not waiting.done() and storage.stats.full_waits == 1
        writer = asyncio.create_task(storage.run())  # makes room
        await waiting
        await storage.close()
        await writer

    asyncio.run(main())
    assert raw_rows(tmp_path) == expected_raw(real_frames(3))


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


def test_full_disk_is_reported_retried_and_loses_nothing(tmp_path: Path) -> None:
    """While the disk is full, storage says it is failing (the status line shows that, and a
    stop gives up on it after a while); once space is back it no longer is, though its last
    error stays on record: an outage recovered from must not make a later stop give up on a
    publish that is merely slow."""
    frames = real_frames(1_000)
    disk = FullDisk(budget=10**9)
    seen: dict[str, StorageStats] = {}

    async def main() -> tuple[str | None, int]:
        storage = Storage(StorageOptions(tmp_path, TZ, rotate_seconds=60, flush_seconds=0.02,
                                         queue_max=100, retry_min_seconds=0.01,
                                         retry_max_seconds=0.05), Redactor(), opener=disk)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(storage.run())
            for frame in frames[:500]:
                await storage.put(frame)
            await until(lambda: storage.stats.frames >= 500)
            disk.budget = 0

            async def feed() -> None:
                for frame in frames[500:]:
                    await storage.put(frame)  # blocks while the disk is full: backpressure

            feeder = tg.create_task(feed())
            await until(lambda: disk.failures >= 3 and storage.queue_depth == 100)
            assert not feeder.done()
            error = storage.stats.failing
            failures = disk.failures
            disk.budget = 10**9
            await feeder
            await until(lambda: storage.stats.frames == len(frames))
            seen["recovered"] = storage.stats
            await storage.close()
        return error, failures

    error, failures = asyncio.run(main())
    assert error is not None and "No space left on device" in error
    assert seen["recovered"].failing is None
    assert seen["recovered"].last_error == error
    assert failures < 40  # it backs off instead of spinning
    assert raw_rows(tmp_path) == expected_raw(frames)


def _stop_while_the_disk_is_full(tmp_path: Path, frames: list[Frame], disk: FullDisk,
                                 journaled_first: int) -> Storage:
    """Put ``frames`` (the first ``journaled_first`` journaled and fsynced before), fill the
    disk, then stop cleanly: the close meets the full disk."""
    async def main() -> Storage:
        storage = Storage(StorageOptions(tmp_path, TZ, rotate_seconds=60, flush_seconds=0.05,
                                         retry_min_seconds=0.01, retry_max_seconds=0.02),
                          Redactor(), opener=disk)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(storage.run())
            for frame in frames[:journaled_first]:
                await storage.put(frame)
            await until(lambda: storage.stats.frames == journaled_first)
            await asyncio.sleep(0.1)  # two flush periods: the journal is fsynced
            for frame in frames[journaled_first:]:
                await storage.put(frame)  # queued: the next write is at the next flush
            disk.budget = 0
            await storage.close()
        return storage

    return asyncio.run(main())


def test_a_full_disk_at_a_clean_stop_is_waited_out_not_given_up(tmp_path: Path) -> None:
    """The batch in hand at the stop is retried for as long as it takes (the runner bounds a
    stop on a failing disk): given up, it would be in neither the files nor the journal."""
    frames = real_frames(1_000)
    disk = FullDisk(budget=10**9, space_after=8)
    storage = _stop_while_the_disk_is_full(tmp_path, frames, disk, journaled_first=0)
    assert disk.failures == 8
    assert "No space left on device" in (storage.stats.last_error or "")
    assert raw_rows(tmp_path) == expected_raw(frames)
    assert list_segments(tmp_path / "_journal") == []
    assert storage.take_unjournaled() == []


def test_a_close_that_failed_to_publish_is_retried_for_real(tmp_path: Path) -> None:
    """Everything is in the journal, and publishing fails at the stop: the retried close
    publishes, instead of finding the pipeline marked closed and doing nothing."""
    frames = real_frames(600)
    disk = FullDisk(budget=10**9, space_after=2)
    _stop_while_the_disk_is_full(tmp_path, frames, disk, journaled_first=len(frames))
    assert disk.failures == 2
    assert raw_rows(tmp_path) == expected_raw(frames)
    assert list_segments(tmp_path / "_journal") == []


def test_a_pipeline_whose_close_failed_stays_open_and_keeps_its_folder(tmp_path: Path) -> None:
    disk = FullDisk(budget=10**9)
    pipe = Pipeline(tmp_path, timezone=TZ, clock=lambda: T0, opener=disk)
    frames = real_frames(300)
    pipe.write(frames)
    disk.budget = 0
    with pytest.raises(OSError):
        pipe.close()
    with pytest.raises(FolderBusy):  # a second recorder on the folder is still refused
        Pipeline(tmp_path, timezone=TZ).recover()
    disk.budget = 10**9
    pipe.close()
    pipe.close()
    assert raw_rows(tmp_path) == expected_raw(frames)
    assert list_segments(tmp_path / "_journal") == []


def test_first_file_is_published_early_then_rotation_slows(tmp_path: Path) -> None:
    """SPEC §7: read_parquet('DIR/**/*.parquet') must work while recording, so the first
    segment is published after first_rotate_seconds, not after rotate_seconds."""
    frames = real_frames(200)
    tables = sum(1 for rows in normalize(frames[:100]).values() if rows.num_rows)

    def published() -> int:
        return len(list(tmp_path.glob("*/date=*/*.parquet")))

    async def main() -> None:
        storage = Storage(StorageOptions(tmp_path, TZ, rotate_seconds=300.0, flush_seconds=0.05,
                                         first_rotate_seconds=0.2), Redactor())
        task = asyncio.create_task(storage.run())
        for frame in frames[:100]:
            await storage.put(frame)
        # the whole first rotation: its files are renamed into place one by one
        await until(lambda: published() == tables, 5.0)
        first = published()
        for frame in frames[100:]:
            await storage.put(frame)
        await asyncio.sleep(0.8)  # four first_rotate periods: no more early rotations
        assert published() == first
        await storage.close()
        await task

    asyncio.run(main())
    assert raw_rows(tmp_path) == expected_raw(frames)


def test_recovery_at_start_says_what_it_is_publishing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A big journal left by a killed run takes a while to publish when ``record`` starts:
    the log says which segment is under way, so a long start is not taken for a hang."""
    live = tmp_path / "live"
    pipe = Pipeline(live, timezone=TZ, clock=lambda: T0)
    pipe.write(real_frames(50))
    pipe.flush()
    shutil.copytree(live, tmp_path / "killed")
    pipe.close()
    (segment,) = (tmp_path / "killed" / "_journal").glob("*.jnl")
    size = segment.stat().st_size
    caplog.set_level(logging.INFO, logger="recorder.storage")
    report = Pipeline(tmp_path / "killed", timezone=TZ).recover()
    assert report.frames == 50
    assert f"recovering journal segment 1 (1 of 1, {size:,} bytes)" in caplog.messages


def test_storage_says_when_a_failed_call_is_being_tried_again(tmp_path: Path) -> None:
    """``failing`` holds from the first failure until a try works; ``retrying`` says a try is
    running (a stop counts only the waits between tries against storage, see the runner)."""
    gate = threading.Event()
    tries: list[int] = []

    class SlowThenFine:
        def __init__(self, inner: IO[bytes]) -> None:
            self._inner = inner

        def write(self, data: bytes) -> int:
            tries.append(len(data))
            if len(tries) == 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            if len(tries) == 2:
                gate.wait(10)  # the retry runs until the test has seen it running
            return self._inner.write(data)

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    def opener(path: Path, mode: str) -> IO[bytes]:
        inner = default_opener(path, mode)
        return cast(IO[bytes], SlowThenFine(inner)) if path.suffix == ".jnl" else inner

    seen: list[tuple[bool, bool]] = []

    async def main() -> None:
        storage = Storage(StorageOptions(tmp_path, TZ, flush_seconds=0.02,
                                         retry_min_seconds=0.05), Redactor(), opener=opener)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(storage.run())
            for frame in real_frames(10):
                await storage.put(frame)
            await until(lambda: storage.stats.failing is not None)
            seen.append((storage.stats.failing is not None, storage.stats.retrying))
            await until(lambda: storage.stats.retrying)
            seen.append((storage.stats.failing is not None, storage.stats.retrying))
            gate.set()
            await until(lambda: storage.stats.frames == 10)
            seen.append((storage.stats.failing is not None, storage.stats.retrying))
            await storage.close()

    asyncio.run(main())
    assert seen == [(True, False), (True, True), (False, False)]
