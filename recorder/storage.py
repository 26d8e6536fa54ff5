"""Storage: frames in, journal and rotating crash-safe Parquet out.

Two layers, as everywhere in the recorder:

- :class:`Pipeline`, the synchronous core (used by the offline benchmark, by the writer task
  and, through :mod:`recorder.recover`, by recovery): ``write(frames)`` redacts, appends one
  journal record, normalizes and buffers rows per (table, date); ``flush()`` writes buffered
  row groups and fsyncs the journal; ``rotate()`` closes the journal segment and publishes its
  files; ``close()`` rotates and releases the folder.
- :class:`Storage`, the asyncio driver: one writer task (:meth:`Storage.run`) drains a
  bounded queue (the backpressure) in batches and does all file work in one thread of its own.

Rules and invariants:
- Every payload passes through :meth:`Redactor.apply` before the journal: nothing on disk holds
  the session id.
- Each Parquet file holds the rows of exactly one journal segment and is named after it; a
  segment is deleted only after all its files are published (renamed, folders fsynced).
- A journal write error raises with the batch not journaled (the segment is cut back), so the
  caller can retry the same batch. Any error on the Parquet side after the journal accepted a
  batch is *not* raised: the segment is marked for replay, and its files are rebuilt from the
  journal at rotation (as recovery would). Nothing that reached the journal is lost.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, TypeVar

import pyarrow as pa

from recorder.frames import Frame
from recorder.ids import LastIds, last_ids
from recorder.journal import (
    JOURNAL_DIR,
    Opener,
    Segment,
    default_opener,
    fsync_dir,
    next_segment_number,
    segment_path,
)
from recorder.recover import (
    FolderLock,
    Normalize,
    RecoveryReport,
    default_normalize,
    publish_segment,
    recover_unlocked,
)
from recorder.redact import Redactor
from recorder.waiting import wait_set
from recorder.writer import (
    PartialFile,
    file_metadata,
    file_name,
    hhmmss,
    partition_dir,
    split_by_date,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

ROW_GROUP_ROWS: Final = 100_000  # a buffer this big is written at once
# Smaller buffers wait (for more rows, or rotation) rather than make small row groups: Parquet
# pays per group, and a .partial file is unread until it is published anyway. Offline, 1,000
# rather than 10,000 cost the whole pipeline ~13% more; the wait costs at most this many rows of
# memory per table.
MIN_FLUSH_ROWS: Final = 10_000
# After this many frames, a flush hands the C heap's free pages back to the system: see
# :func:`malloc_trim`. Recording the simulator at full speed (~53,000 frames/s) for 40 s, every
# 20,000 frames (each 0.4 s) peaked at 192 MB, median 169, where every 100,000 peaked at 199 and
# 214, median 181, at the same rate. At 2,000 frames/s that is one trim of a few ms every 10 s.
TRIM_EVERY_FRAMES: Final = 20_000
# Frames are journaled as they come but normalized this many at a time (and at rotation, which
# publishes them): normalizing costs per call as well as per frame, and more so when its caches
# have gone cold since the last call. At 2,000 frames/s a flush every 0.5 s hands over 1,000
# frames: paced so, offline, storage took 12.8 to 13.8 us of CPU a frame with this against 14.2
# to 15.6 normalizing every write. At full speed every write is 5,000 frames
# (StorageOptions.batch_max) and this changes nothing.
NORMALIZE_EVERY_FRAMES: Final = 5_000


@dataclass(frozen=True)
class StorageStats:
    frames: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    files_published: int = 0
    bytes_written: int = 0
    segments_pending: int = 0
    last_error: str | None = None  # the last error storage met, even one long recovered from
    full_waits: int = 0  # frames that found the queue full and waited for room (backpressure)
    failing: str | None = None  # the error of a file call being retried now; None once it works
    retrying: bool = False  # that call is being tried again right now (not waiting to be)


def _find_malloc_trim() -> Callable[[], object]:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def malloc_trim() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim(0)``; a no-op
    elsewhere). ctypes releases the GIL for the call, which takes 3 to 20 ms.

    Arrow buffers, zstd contexts and big ``bytes`` come and go by the megabyte with every
    write; glibc keeps what they free in its arenas.
    Recording the simulator at full speed, the recorder's RSS crept from 196 to 231 MB over
    2.1M frames while the Arrow pool and the Python objects stayed flat; trimming every 3 s
    held it at 156 to 183 MB (see :data:`TRIM_EVERY_FRAMES` for how often)."""
    _MALLOC_TRIM()


_MALLOC_TRIM: Final = _find_malloc_trim()


def use_system_allocator() -> None:
    """Make Arrow allocate with the C library's ``malloc`` in this process (a recording one).

    pyarrow's default pool (mimalloc) keeps pages it has freed: 2M frames through one
    :class:`Pipeline` took its RSS from +77 to +106 MB and still rising, where the system
    allocator stayed at +75 to +88 MB, at the same speed."""
    pa.set_memory_pool(pa.system_memory_pool())


class Pipeline:
    """The synchronous storage core for one folder. Not thread-safe: one caller at a time."""

    def __init__(self, root: Path, *, timezone: str, redactor: Redactor | None = None,
                 clock: Callable[[], int] = time.time_ns, normalize: Normalize | None = None,
                 opener: Opener = default_opener, row_group_rows: int = ROW_GROUP_ROWS,
                 min_flush_rows: int = MIN_FLUSH_ROWS,
                 trim: Callable[[], None] = malloc_trim,
                 trim_every_frames: int = TRIM_EVERY_FRAMES,
                 normalize_every_frames: int = NORMALIZE_EVERY_FRAMES) -> None:
        self.root = Path(root)
        self.timezone = timezone
        self._redactor = redactor or Redactor()
        self._clock = clock
        self._normalize = normalize
        self._opener = opener
        self._row_group_rows = row_group_rows
        self._min_flush_rows = min_flush_rows
        self._trim = trim
        self._trim_every = trim_every_frames
        self._trimmed_at = 0  # self.frames at the last trim
        self._normalize_every = normalize_every_frames
        self._unnormalized: list[Frame] = []  # journaled, not yet rows
        self._lock = FolderLock(self.root)
        self._segment: Segment | None = None
        self._next_number = 0
        self._number = 0  # the open segment's, naming its files
        self._name_time = ""
        self._files: dict[tuple[str, str], PartialFile] = {}
        self._buffers: dict[tuple[str, str], list[pa.Table]] = {}
        self._buffered: dict[tuple[str, str], int] = {}
        self._replay = False
        self._pending: list[int] = []
        self._metadata: dict[bytes, bytes] | None = None
        self._closed = False
        self.frames = 0
        self.rows: dict[str, int] = {}
        self.files_published = 0
        self.bytes_written = 0
        self.last_error: str | None = None

    # -- public ------------------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Take the folder and publish what a killed run left (call before the first write)."""
        self._lock.acquire()
        return recover_unlocked(self.root, self._normalize, self._opener,
                                lambda line: log.info("recovering %s", line))

    def stats(self) -> StorageStats:
        return StorageStats(self.frames, dict(self.rows), self.files_published,
                            self.bytes_written, len(self._pending), self.last_error)

    def write(self, frames: Sequence[Frame]) -> None:
        """Journal ``frames`` (one record); once ``normalize_every_frames`` are journaled, turn
        them into buffered rows.

        Raises ``OSError`` only when the journal refused the batch; then nothing of it was
        kept and the same batch may be written again."""
        if self._closed:
            raise ValueError("the pipeline is closed")
        if not frames:
            return
        frames = self._redactor.apply_frames(frames)
        segment = self._segment or self._open_segment()
        self.bytes_written += segment.append(frames)
        self.frames += len(frames)
        if self._replay:
            return
        self._unnormalized.extend(frames)
        if len(self._unnormalized) >= self._normalize_every:
            self._normalize_journaled()

    def flush(self) -> None:
        """Write buffers of at least ``min_flush_rows`` rows, then fsync the journal; every
        ``trim_every_frames`` frames, give free memory back (:func:`malloc_trim`)."""
        if not self._replay:
            try:
                for key, rows in list(self._buffered.items()):
                    if rows >= self._min_flush_rows:
                        self._write_group(key)
            except Exception as exc:
                self._start_replay(exc)
        if self._segment is not None:
            self._segment.sync()
        if self.frames - self._trimmed_at >= self._trim_every:
            self._trimmed_at = self.frames
            self._trim()

    def rotate(self) -> None:
        """Close the journal segment, publish its files, delete it. Raises if a segment could
        not be published (it stays in the journal and is retried on the next rotate)."""
        segment, self._segment = self._segment, None
        if segment is not None:
            try:
                segment.close()
                self._normalize_journaled()
                if self._replay:
                    raise _ReplayNeeded
                self._publish_files()
            except Exception as exc:
                if not isinstance(exc, _ReplayNeeded):
                    self._note_error("publishing", exc)
                for part in self._files.values():
                    part.abort()
                self._pending.append(segment.number)
            else:
                segment.path.unlink()
                fsync_dir(segment.path.parent)
            self._forget_rows()
            self._replay = False
        while self._pending:
            number = self._pending[0]
            report = publish_segment(self.root, number, self._norm(), self._opener)
            self.files_published += report.files
            self._pending.pop(0)

    def close(self) -> None:
        """Rotate (publish every file) and release the folder; safe to call twice. If publishing
        fails it raises and stays open, holding the folder, so that close can be retried."""
        if self._closed:
            return
        self.rotate()
        self._closed = True
        self._lock.release()

    def abandon(self) -> None:
        """Let the folder go without publishing, when storage has given up (a disk that keeps
        failing): close the journal segment as it is, drop the unpublished files and release
        the folder. ``recorder recover`` publishes the journal once the disk is fixed."""
        if self._closed:
            return
        self._closed = True
        segment, self._segment = self._segment, None
        if segment is not None:
            try:
                segment.close()
            except OSError as exc:  # its fsync: what did land is still read by recovery
                log.warning("closing the journal segment failed: %s", exc)
        for part in self._files.values():
            part.abort()
        self._forget_rows()
        self._lock.release()

    # -- internals ---------------------------------------------------------------------------

    def _norm(self) -> Normalize:
        if self._normalize is None:
            self._normalize = default_normalize()
        return self._normalize

    def _open_segment(self) -> Segment:
        self._lock.acquire()
        journal_dir = self.root / JOURNAL_DIR
        number = max(self._next_number, next_segment_number(journal_dir))
        while segment_path(journal_dir, number).exists():
            number += 1
        created = self._clock()
        self._segment = Segment.create(journal_dir, number, created, self.timezone,
                                       self._opener)
        self._next_number = number + 1
        self._number = number
        self._name_time = hhmmss(created, self.timezone)
        return self._segment

    def _forget_rows(self) -> None:
        """Drop every row not yet published (the journal holds their frames): the buffers, the
        files being written (abort them first where they may hold rows), and the frames not yet
        normalized."""
        self._files, self._buffers, self._buffered = {}, {}, {}
        self._unnormalized = []

    def _normalize_journaled(self) -> None:
        frames, self._unnormalized = self._unnormalized, []
        if not frames or self._replay:
            return
        try:
            self._add_rows(frames)
        except Exception as exc:  # the journal has the frames: rebuild the files from it
            self._start_replay(exc)

    def _add_rows(self, frames: Sequence[Frame]) -> None:
        for table, rows in self._norm()(frames).items():
            self.rows[table] = self.rows.get(table, 0) + rows.num_rows
            for date, part in split_by_date(rows, self.timezone).items():
                key = (table, date)
                self._buffers.setdefault(key, []).append(part)
                total = self._buffered.get(key, 0) + part.num_rows
                self._buffered[key] = total
                if total >= self._row_group_rows:
                    self._write_group(key)

    def _write_group(self, key: tuple[str, str]) -> None:
        tables = self._buffers.pop(key, [])
        self._buffered.pop(key, None)
        if not tables:
            return
        rows = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        part = self._files.get(key)
        if part is None:
            table, date = key
            if self._metadata is None:
                self._metadata = file_metadata()
            final = partition_dir(self.root, table, date) / file_name(
                table, self._name_time, self._number)
            part = self._files[key] = PartialFile(final, rows.schema, self._opener,
                                                  self._metadata)
        part.write(rows)

    def _publish_files(self) -> None:
        for key in list(self._buffers):
            self._write_group(key)
        finished = [p for p in self._files.values() if p.finish()]
        for part in finished:
            part.publish()
            self.files_published += 1
            self.bytes_written += part.final_path.stat().st_size
        for folder in {p.final_path.parent for p in finished}:
            fsync_dir(folder)
            fsync_dir(folder.parent)
        if finished:
            fsync_dir(self.root)

    def _start_replay(self, exc: Exception) -> None:
        self._note_error("writing parquet (will rebuild from the journal)", exc)
        self._replay = True
        for part in self._files.values():
            part.abort()
        self._forget_rows()

    def _note_error(self, doing: str, exc: BaseException) -> None:
        self.last_error = f"{doing}: {type(exc).__name__}: {exc}"
        log.error("storage error %s", self.last_error)


class _ReplayNeeded(Exception):
    pass


@dataclass(frozen=True)
class StorageOptions:
    dir: Path
    timezone: str = "America/New_York"
    rotate_seconds: float = 300.0
    flush_seconds: float = 1.0
    queue_max: int = 10_000
    # Frames taken off the queue per write. A write's transient memory grows with it: in the
    # bench's full-speed run 20,000 peaked at ~290 MB RSS, 5,000 at ~250, at the same rate.
    batch_max: int = 5_000
    retry_min_seconds: float = 0.1
    retry_max_seconds: float = 5.0
    # Until the folder holds a published file, rotate this often, so that
    # read_parquet('DIR/**/*.parquet') works seconds after the first frame, not minutes.
    first_rotate_seconds: float = 5.0


_STOP: Final = object()
_TIMER_SLACK: Final = 0.002  # seconds


def _has_published_file(root: Path) -> bool:
    return next(root.glob("*/date=*/*.parquet"), None) is not None


class Storage:
    """The writer task. ``recover()``, then ``run()`` in the task group; ``put`` frames;
    ``close()`` to drain, flush and publish. Only the writer task touches files."""

    def __init__(self, options: StorageOptions, redactor: Redactor | None = None, *,
                 normalize: Normalize | None = None, opener: Opener = default_opener,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._pipeline = Pipeline(Path(options.dir), timezone=options.timezone,
                                  redactor=redactor, normalize=normalize, opener=opener)
        self._clock = clock
        self._queue: asyncio.Queue[Frame | object] = asyncio.Queue(maxsize=options.queue_max)
        # The writer gathers frames until its next flush, or until this many are waiting (then
        # it is the bottleneck and writes at once, long before the queue fills and the socket
        # reader has to wait): see _take.
        self._backlog = max(1, min(options.batch_max, options.queue_max // 2))
        self._enough = asyncio.Event()
        self._closing = False
        self._running = False
        self._done = asyncio.Event()
        self._full_waits = 0
        self._in_hand: list[Frame] = []  # the batch being written (see take_unjournaled)
        self._in_hand_after = 0  # the pipeline's frames once that batch is journaled
        self._failing: str | None = None  # see StorageStats.failing
        self._retrying = False  # see StorageStats.retrying
        # All file work on one thread of storage's own, not asyncio's shared pool: a write's
        # megabytes of transient memory then come and go in one glibc arena. With the pool,
        # writes landed on up to six threads, each with an arena of its own; recording the
        # simulator at full speed, RSS had a median of 180-182 MB and peaks of 201-205 (two
        # 40 s runs), with one thread 161-164 and 181-188 (four), at the same rate.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")

    async def _in_thread(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def take_unjournaled(self) -> list[Frame]:
        """The frames storage holds that are not in the journal, in order, taken out of it:
        the batch in hand (being written, or waiting to be retried) and the queue. For
        counting what a stop without storage (:meth:`abandon`) loses: call once the writer
        task has ended and :meth:`abandon` has waited out a file call still running, since a
        write cancelled while in storage's thread may have journaled its batch after all."""
        frames = [] if self._pipeline.frames >= self._in_hand_after else self._in_hand
        self._in_hand = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, Frame):
                frames.append(item)
        return frames

    @property
    def stats(self) -> StorageStats:
        return replace(self._pipeline.stats(), full_waits=self._full_waits,
                       failing=self._failing, retrying=self._retrying)

    async def recover(self) -> RecoveryReport:
        """Publish what a killed run left in the folder (journal segments, compactions)."""
        report = await self._in_thread(self._pipeline.recover)
        if report.segments or report.compactions:
            log.info("recovered %d frames from %d journal segment(s), %d file(s)%s",
                     report.frames, report.segments, report.files,
                     f", dropped a torn tail of {report.torn_bytes:,} bytes"
                     if report.torn_bytes else "")  # a damaged segment warns for itself
        return report

    async def last_ids(self) -> LastIds:
        """The highest seq and conn_id the folder holds; call after :meth:`recover`."""
        return await self._in_thread(last_ids, self.options.dir)

    async def put(self, frame: Frame) -> None:
        """Queue a frame; waits while the queue is full (the backpressure)."""
        if not self._queue.full():
            self.put_nowait(frame)
            return
        if self._closing:
            raise RuntimeError("storage is closed")
        self._full_waits += 1
        await self._queue.put(frame)
        self._wake_on_backlog()

    def put_nowait(self, frame: Frame) -> None:
        """Queue a frame or raise ``asyncio.QueueFull``."""
        if self._closing:
            raise RuntimeError("storage is closed")
        self._queue.put_nowait(frame)
        self._wake_on_backlog()

    def _wake_on_backlog(self) -> None:
        if self._queue.qsize() >= self._backlog:
            self._enough.set()

    async def close(self) -> None:
        """Stop accepting frames, drain, flush and publish every file; safe to call twice.

        A failing disk is retried until it works (see :meth:`_retry`): whoever calls this
        bounds the wait, as the runner does."""
        if not self._closing:
            self._closing = True
            if self._running:
                await self._queue.put(_STOP)
                self._enough.set()  # the writer stops gathering: take everything now
            else:
                await self._drain_without_task()
        if self._running:
            await self._done.wait()
        self._thread.shutdown(wait=False)  # idle by now; a later close finds it shut: fine

    async def abandon(self, seconds: float = 2.0) -> None:
        """After the writer task was cancelled mid-failure: let the folder go without publishing
        (:meth:`Pipeline.abandon`), once a file call still running in storage's thread ends,
        waiting at most ``seconds`` for it (a hung disk)."""
        self._closing = True
        try:
            done = self._thread.submit(self._pipeline.abandon)
        except RuntimeError:  # the thread is shut down: close() got that far
            return
        self._thread.shutdown(wait=False)
        try:
            async with asyncio.timeout(seconds):  # see recorder/waiting.py
                await asyncio.wrap_future(done)
        except TimeoutError:
            log.warning("storage's thread is still busy on the disk; not waiting for it")

    async def run(self) -> None:
        """The writer task: returns after :meth:`close` once everything is published."""
        self._running = True
        try:
            await self._loop()
        finally:
            self._done.set()

    async def _loop(self) -> None:
        opts = self.options
        flush_every = opts.flush_seconds / 2  # a frame waits at most this plus a batch
        published = await self._in_thread(_has_published_file, opts.dir)

        def rotate_every() -> float:
            if published:
                return opts.rotate_seconds
            return min(opts.rotate_seconds, opts.first_rotate_seconds)

        now = self._clock()
        next_flush, next_rotate = now + flush_every, now + rotate_every()
        stopping = False
        while not stopping:
            batch, stopping = await self._take(min(next_flush, next_rotate))
            if batch:
                await self._write(batch)
            # A timer may fire a hair before its deadline: treat that as the deadline.
            now = self._clock() + _TIMER_SLACK
            if now >= next_flush or stopping:
                await self._retry("journal fsync", self._pipeline.flush)
                next_flush = self._clock() + flush_every
            if now >= next_rotate and not stopping:
                await self._retry("rotation", self._pipeline.rotate)
                published = published or self._pipeline.stats().files_published > 0
                next_rotate = self._clock() + rotate_every()
        await self._retry("closing", self._pipeline.close)

    async def _write(self, batch: list[Frame]) -> None:
        # kept if the write never ends: see take_unjournaled
        self._in_hand, self._in_hand_after = batch, self._pipeline.frames + len(batch)
        await self._retry("journal write", self._pipeline.write, batch)
        self._in_hand = []

    async def _take(self, deadline: float) -> tuple[list[Frame], bool]:
        """Frames to write next (at most ``batch_max``), and whether the stop was reached.

        Waits until ``deadline`` (the next flush or rotation), unless :attr:`_backlog` frames
        are waiting or storage is closing: one write per flush instead of one per trickle.
        Every write costs a thread hop, a journal record and a set of Arrow tables, a few
        milliseconds whatever its size; at 2,000 frames/s a write per frame took about a core,
        and a write as soon as anything waited (100-200 frames, then the handful that came in
        meanwhile) still about 5%. A frame still reaches the journal, and its fsync, within
        ``flush_seconds / 2``."""
        queue = self._queue
        if queue.qsize() < self._backlog and not self._closing:
            wait = deadline - self._clock()
            if wait > 0:
                self._enough.clear()
                await wait_set(self._enough, wait)
        batch: list[Frame] = []
        batch_max = self.options.batch_max
        while len(batch) < batch_max and not queue.empty():
            item = queue.get_nowait()
            if item is _STOP:
                return batch, True
            batch.append(item)  # type: ignore[arg-type]
        return batch, False

    async def _retry(self, doing: str, call: Callable[..., None], *args: object) -> None:
        """Run ``call`` in a thread until it succeeds; on error log it, show it in stats, back
        off and try again (the queue fills meanwhile: that is the backpressure).

        Stopping changes nothing here: a batch not yet journaled is kept in hand and retried,
        since giving up would lose it where not even ``recorder recover`` can find it. How long
        a stop may wait on a failing disk is the caller's to decide (the runner gives up after
        ``STORAGE_STUCK_SECONDS`` without progress and cancels this task)."""
        delay = self.options.retry_min_seconds
        attempts = 0
        while True:
            self._retrying = attempts > 0
            try:
                await self._in_thread(call, *args)
            except Exception as exc:
                attempts += 1
                error = self._pipeline.last_error = f"{doing}: {type(exc).__name__}: {exc}"
                self._failing = error
                log.error("storage error (%s), retrying in %.1f s", error, delay)
                self._retrying = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.retry_max_seconds)
            else:
                self._retrying = False
                if attempts:
                    self._failing = None
                    log.warning("storage recovered after %d failed attempt(s)", attempts)
                return

    async def _drain_without_task(self) -> None:
        batch: list[Frame] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                batch.append(item)  # type: ignore[arg-type]
        if batch:
            await self._write(batch)
        await self._retry("closing", self._pipeline.close)
