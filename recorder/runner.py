"""``recorder record`` as a program: one task group owning every long-lived task, and the stop.

Tasks (all in one :class:`asyncio.TaskGroup`, none created and forgotten):

- the storage writer (``Storage.run``): the only code that touches files;
- the session keeper (REST): authenticated or waiting, ``/tickle``, ``/sso/validate``;
- the multiplexer (websocket): frames in, subscriptions out;
- the event pump: the recorder's own lifecycle events into storage, in order;
- the status reporter.

Stop (SIGINT/SIGTERM, ``--duration``, ``--until``): stop reading (unsubscribe, close 1000),
then drain the queue, flush the journal, publish every file. Nothing is lost on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from recorder.config import Config, ConfigError
from recorder.connection import Multiplexer
from recorder.frames import IN, Frame, event_frame
from recorder.ids import Counters
from recorder.messages import os_reason
from recorder.pacing import Pacer
from recorder.recover import FolderBusy
from recorder.redact import Redactor
from recorder.session import (
    GatewayApi,
    RestError,
    SessionKeeper,
    tls_context,
    untrusted_certificate,
    ws_url,
)
from recorder.smh_slots import SmhScheduler
from recorder.status import StatusReporter, StatusSnapshot
from recorder.storage import Storage, StorageOptions, StorageStats, use_system_allocator
from recorder.subscriptions import SubscriptionBook
from recorder.waiting import wait_set
from recorder.writer import day_of

log = logging.getLogger(__name__)

STORAGE_STUCK_SECONDS = 5.0  # at stop: storage waiting out failures this long, no progress
SOCKET_STOP_SECONDS = 3.0  # at stop: the socket reading nothing, not waiting for storage
# At stop: reading the socket out to the gateway's close at most this long. What the kernel's
# buffers held at the close (a few MB) takes seconds even when storage is slow; a gateway that
# ignores the close and sends on is cut off here.
SOCKET_READ_OUT_SECONDS = 60.0


@dataclass
class RunSummary:
    seconds: float = 0.0
    frames_in: int = 0
    frames_by_topic: dict[str, int] = field(default_factory=dict)
    connects: int = 0
    reconnects: int = 0
    stopped_by: str = ""
    recovered_frames: int = 0
    storage: StorageStats = field(default_factory=StorageStats)
    abandoned: bool = False  # storage kept failing at the stop: the journal holds the rest
    not_journaled: int = 0  # frames received that storage never journaled: lost when abandoned
    config_error: ConfigError | None = None  # what stopped the run, if the config did


def seconds_until(until: dt.time, timezone: str, now_wall: float) -> float:
    """Seconds from ``now_wall`` (epoch) to the next ``until`` in ``timezone``."""
    zone = ZoneInfo(timezone)
    now = dt.datetime.fromtimestamp(now_wall, zone)
    target = now.replace(hour=until.hour, minute=until.minute, second=0, microsecond=0)
    if target <= now:
        target += dt.timedelta(days=1)
    # A time the clock skips (02:30 on the spring-forward night) would read as its hour
    # before the change, an hour late: stop when the clock passes it, at the first minute
    # after it that exists (the change itself). Repeated times (fall back) stop at the first.
    while not _exists(target):
        target += dt.timedelta(minutes=1)
    # Epoch seconds, not target - now: Python subtracts two datetimes that share a tzinfo as
    # wall times, which is an hour off across a DST change.
    return target.timestamp() - now_wall


def _exists(wall: dt.datetime) -> bool:
    """Whether the zone's clock ever reads ``wall`` (not in a gap of a DST change)."""
    back = dt.datetime.fromtimestamp(wall.timestamp(), wall.tzinfo)
    return back.replace(tzinfo=None) == wall.replace(tzinfo=None)


class StopWatch:
    """Whether storage is stuck at the stop: it has spent ``STORAGE_STUCK_SECONDS`` waiting
    between failed attempts since it last made progress (journaled frames, published a file or
    a segment). Time an attempt runs is not counted: a retry that works, however long it takes
    (a big final publish after one failure), is waited for, and so is storage that never failed.
    Call :meth:`stuck` every half second or so; it adds up the time between calls."""

    def __init__(self, now: float) -> None:
        self._progress: tuple[int, ...] = ()
        self._waited = 0.0
        self._last = now

    def stuck(self, stats: StorageStats, now: float) -> bool:
        progress = (stats.frames, stats.files_published, stats.segments_pending,
                    stats.bytes_written)
        if progress != self._progress:
            self._progress, self._waited = progress, 0.0
        elif stats.failing is not None and not stats.retrying:
            self._waited += now - self._last
        self._last = now
        return self._waited >= STORAGE_STUCK_SECONDS


def stop_time(seconds: float, timezone: str, now_wall: float) -> str:
    """When a run that stops in ``seconds`` stops, for the log: ``2026-11-23 16:05 EST (in
    23 h 58 min)``, so an ``--until`` that has passed today (and so means tomorrow) shows. The
    seconds show when the time is not on a whole minute (``--duration 90s``)."""
    at = dt.datetime.fromtimestamp(round(now_wall + seconds), ZoneInfo(timezone))
    minutes = round(seconds / 60)
    if seconds < 120:
        span = f"{seconds:.0f} s"
    elif minutes < 60:
        span = f"{minutes} min"
    else:
        span = f"{minutes // 60} h {minutes % 60} min"
    clock = "%H:%M" if at.second == 0 else "%H:%M:%S"
    return f"{at:%Y-%m-%d {clock} %Z} (in {span})"


class OutputUnusable(RuntimeError):
    """The output folder cannot be recorded into (not a folder, no permission, …): found
    before anything connects."""


def _topic_counts(mux: Multiplexer) -> dict[str, int]:
    return {k.decode(errors="replace"): v for k, v in mux.frames_by_topic.items()}


class Recorder:
    """Records one run. ``await Recorder(config).run(stop)`` returns when ``stop`` is set or
    the configured duration/until is reached, after everything is published."""

    def __init__(
        self,
        config: Config,
        *,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        status: StatusReporter | None = None,
        queue_max: int = 10_000,
        storage: Callable[[StorageOptions, Redactor], Storage] = Storage,
    ) -> None:
        self.config = config
        self.redactor = redactor or Redactor()
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._status = status
        self._queue_max = queue_max
        self._make_storage = storage  # the benchmark's reader-only run passes its own
        self._counters = Counters()
        self._pending: deque[Frame] = deque()
        self._pending_ready = asyncio.Event()
        self._storage: Storage | None = None
        self.multiplexer: Multiplexer | None = None
        self.session: SessionKeeper | None = None

    @property
    def storage_stats(self) -> StorageStats | None:
        """Storage's counters and last error so far; None until storage has started."""
        storage = self._storage
        return storage.stats if storage else None

    @property
    def queue_depth(self) -> int:
        """Frames and events waiting for storage: its queue and the pending line (the status
        line shows the queue alone, against its bound)."""
        storage = self._storage
        return (storage.queue_depth if storage else 0) + len(self._pending)

    # -- events ------------------------------------------------------------------------------

    def emit(self, kind: str, topic: str | None = None, detail: Any = None) -> None:
        self.keep(event_frame(time.time_ns(), self._counters.conn_id, self._counters.next_seq(),
                              kind, topic, detail))

    def keep(self, frame: Frame) -> None:
        """Hand ``frame`` to storage without waiting: straight in if there is room and nothing
        is waiting before it, else onto the pending line that the events pump drains in
        order."""
        storage = self._storage
        if storage is not None and not self._pending:
            try:
                storage.put_nowait(frame)
                return
            except asyncio.QueueFull:
                pass
        self._pending.append(frame)
        self._pending_ready.set()

    async def _pump_events(self, storage: Storage) -> None:
        while True:
            await self._pending_ready.wait()
            self._pending_ready.clear()
            await self._put_pending(storage)

    async def _put_pending(self, storage: Storage) -> None:
        """Put the pending line into storage, in order. A frame leaves the line only once
        storage has it: the pump is cancelled at stop, maybe mid-put, and the stop then puts
        whatever is still waiting."""
        while self._pending:
            await storage.put(self._pending[0])
            self._pending.popleft()

    # -- the run -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> RunSummary:
        config = self.config
        stop = stop or asyncio.Event()
        tls = tls_context(config.gateway)
        started = self._clock()
        use_system_allocator()  # a long run: memory that stays flat (see the function)
        storage = self._make_storage(
            StorageOptions(
                dir=config.output.dir,
                timezone=config.output.timezone,
                rotate_seconds=config.output.rotate_seconds,
                flush_seconds=config.output.flush_seconds,
                queue_max=self._queue_max,
            ),
            self.redactor,
        )
        try:
            recovered = await storage.recover()
            # ids continue the folder's, so a seq names one frame across runs (see ids.py)
            self._counters = Counters(*await storage.last_ids())
        except FolderBusy:
            raise
        except OSError as exc:
            raise OutputUnusable(
                f"cannot record into {config.output.dir}: {os_reason(exc)}") from exc
        self._storage = storage
        summary = RunSummary(recovered_frames=recovered.frames)
        async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as tg:
            api = GatewayApi(http, config.gateway.url, tls, Pacer(), self._clock)

            def untrusted(error: RestError) -> None:
                summary.config_error = untrusted_certificate(config.gateway, error)
                stop.set()

            session = SessionKeeper(
                api, config.session, self.redactor, self.emit, self._clock, self._rng,
                poll_seconds=config.session.reconnect_min_seconds, on_untrusted=untrusted,
            )
            mux = Multiplexer(
                ws_url(config.gateway.url), tls, session, config.session,
                SubscriptionBook(config),
                SmhScheduler(config.smh, config.session.smh_max_concurrent,
                             config.session.smh_timeout_seconds),
                storage.put, self.emit, self._counters, self.keep, self._clock, self._rng,
            )
            self.session, self.multiplexer = session, mux
            self.emit("start", None, {"gateway": config.gateway.url, "out": str(config.output.dir)})
            writer = tg.create_task(storage.run(), name="storage")
            keeper = tg.create_task(session.run(), name="session")
            reader = tg.create_task(mux.run(), name="websocket")
            pump = tg.create_task(self._pump_events(storage), name="events")
            status = tg.create_task(self._report(storage, mux, session, started), name="status")

            summary.stopped_by = await self._wait_for_stop(stop, started)
            if summary.config_error is not None:
                summary.stopped_by = "untrusted certificate"
            log.info("stopping (%s): unsubscribing, closing, publishing", summary.stopped_by)
            # Stop reading first, so nothing arrives after the queue is drained.
            await self._stop_reading(mux, reader, storage)
            keeper.cancel()
            status.cancel()
            self.emit("stop", None, {"reason": summary.stopped_by})
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            lost = await self._finish_storage(storage, writer)
            summary.abandoned, summary.not_journaled = lost is not None, lost or 0
        summary.seconds = self._clock() - started
        summary.frames_in = mux.frames_in
        summary.frames_by_topic = _topic_counts(mux)
        summary.connects = mux.connects
        summary.reconnects = mux.reconnects
        summary.storage = storage.stats
        return summary

    async def _stop_reading(self, mux: Multiplexer, reader: asyncio.Task[None],
                            storage: Storage) -> None:
        """Unsubscribe, close, and read the socket out to the gateway's close. The frames it
        sent before its close wait unread behind storage's backpressure, and are recorded
        however long that takes (SPEC §7: a clean stop loses nothing). Cut short, what is sent
        but not queued going on the pending line, by storage stuck on a failing disk
        (:class:`StopWatch`), by a socket that has read nothing and waited for no storage for
        ``SOCKET_STOP_SECONDS``, or by a gateway still sending ``SOCKET_READ_OUT_SECONDS`` after
        the stop."""
        stopping = asyncio.ensure_future(mux.stop())
        started = progressed = self._clock()
        watch, read = StopWatch(started), mux.frames_in
        pending: set[asyncio.Future[None]] = {stopping, reader}
        while pending:
            _, pending = await asyncio.wait(pending, timeout=0.5)
            if not pending:
                break
            now = self._clock()
            if mux.frames_in != read or mux.waiting_for_storage:
                read, progressed = mux.frames_in, now
            if watch.stuck(storage.stats, now):
                log.warning("storage is failing at the stop: closing the socket without reading "
                            "it out")
            elif now - progressed >= SOCKET_STOP_SECONDS:
                log.warning("the socket did not close within %.0f s: closing it without "
                            "waiting", SOCKET_STOP_SECONDS)
            elif now - started >= SOCKET_READ_OUT_SECONDS:
                log.warning("the gateway is still sending %.0f s after the stop: closing the "
                            "socket without reading it out", SOCKET_READ_OUT_SECONDS)
            else:
                continue
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)  # their ends; a cancel of this task still propagates
            break
        if not stopping.cancelled():
            stopping.result()  # a failure in stop() shows, not as a never-retrieved error

    async def _finish_storage(self, storage: Storage, writer: asyncio.Task[None]) -> int | None:
        """Drain, flush and publish; but if storage keeps failing (a full disk) without
        progress (see :class:`StopWatch`), stop without it instead of hanging: the journal
        keeps what it has for ``recorder recover``. None once all is published; if it stopped
        without storage, the number of frames received that were never journaled."""

        async def finish() -> None:
            await self._put_pending(storage)
            await storage.close()
            await writer

        task = asyncio.ensure_future(finish())
        watch = StopWatch(self._clock())
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                task.result()
                return None
            stats = storage.stats
            if watch.stuck(stats, self._clock()):
                task.cancel()
                writer.cancel()
                await asyncio.gather(task, writer, return_exceptions=True)
                await storage.abandon()
                unjournaled = [*storage.take_unjournaled(), *self._pending]
                self._pending.clear()
                lost = sum(frame.direction == IN for frame in unjournaled)
                log.error(
                    "storage is failing (%s) and made no progress in %.0f s of retrying: "
                    "stopping without it; %d frames received were not journaled (and %d of "
                    "the recorder's own messages and events). Once the disk is fixed, run "
                    "`recorder recover %s` to publish what the journal holds",
                    stats.failing, STORAGE_STUCK_SECONDS, lost, len(unjournaled) - lost,
                    self.config.output.dir)
                return lost

    async def _wait_for_stop(self, stop: asyncio.Event, started: float) -> str:
        """Wait for a signal, ``--duration`` (counted from ``started``, the command's start)
        or ``--until`` (a time of day, counted from now: a long recovery before this point
        must not stop the recording early); the reason it stopped."""
        now = self._clock()
        deadlines: list[tuple[float, str]] = []
        if self.config.duration_seconds is not None:
            deadlines.append((started + self.config.duration_seconds, "duration"))
        if self.config.until is not None:
            deadlines.append((now + seconds_until(self.config.until, self.config.output.timezone,
                                                  self._wall()), "until"))
        if not deadlines:
            await stop.wait()
            return "signal"
        deadline, reason = min(deadlines)
        left = max(0.0, deadline - now)
        zone, wall = self.config.output.timezone, self._wall()
        when = stop_time(left, zone, wall)
        today, stop_day = (day_of(int(t * 1e9), ZoneInfo(zone)) for t in (wall, wall + left))
        if reason == "until" and stop_day != today:
            # a warning, so that --quiet shows it too: 09:30 typed at 10:00 records a day
            log.warning("--until %s has passed today: recording until %s",
                        f"{self.config.until:%H:%M}", when)
        else:
            log.info("recording until %s, by --%s", when, reason)
        return "signal" if await wait_set(stop, left) else reason

    async def _report(self, storage: Storage, mux: Multiplexer, session: SessionKeeper,
                      started: float) -> None:
        if self._status is None:
            return
        while True:
            now = self._clock()
            stats = storage.stats
            self._status.update(StatusSnapshot(
                now=now,
                uptime=now - started,
                frames_by_topic=_topic_counts(mux),
                rows=sum(stats.rows.values()),
                files=stats.files_published,
                queue_depth=storage.queue_depth,
                queue_max=storage.options.queue_max,
                full_waits=stats.full_waits,
                reconnects=mux.reconnects,
                authenticated=mux.authenticated,
                smh_open=mux.smh_open,
                smh_queued=mux.smh_queued,
                smh_max=self.config.session.smh_max_concurrent,
                since_heartbeat=(None if mux.last_heartbeat_at is None
                                 else now - mux.last_heartbeat_at),
                storage_error=stats.failing,
            ))
            await asyncio.sleep(self._status.interval)
