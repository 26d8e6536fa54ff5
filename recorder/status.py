"""The live status line of ``recorder record``, and the summary it ends with.

On a terminal the line is redrawn every second (``\\r``); otherwise a status line is logged
every 60 s. Rendering is pure (:func:`render`), so it is tested without a terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

log = logging.getLogger("recorder.status")


@dataclass(frozen=True)
class StatusSnapshot:
    now: float
    uptime: float
    frames_by_topic: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    files: int = 0
    queue_depth: int = 0
    queue_max: int = 0
    full_waits: int = 0  # so far: StorageStats.full_waits, puts that waited for a full queue
    reconnects: int = 0
    authenticated: bool = False
    smh_open: int = 0
    smh_queued: int = 0
    smh_max: int = 5
    since_heartbeat: float | None = None  # seconds since the gateway's last heartbeat
    storage_error: str | None = None  # storage is failing: what it is retrying, and why


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(snapshot: StatusSnapshot, rates: dict[str, float], waited: bool = False) -> str:
    """One line: what flows, what is written, how healthy the connection is. ``waited``: a
    frame waited for room in the queue since the last line (storage is behind, so
    reading slows down and the gateway's frames wait in the socket: none is lost)."""
    flows = " ".join(
        f"{topic} {rate:.0f}/s" for topic, rate in sorted(rates.items()) if rate >= 0.5)
    # an alert comes early: a narrow terminal cuts the line's end
    alert = [f"ERROR {snapshot.storage_error}"] if snapshot.storage_error else []
    parts = [
        _duration(snapshot.uptime),
        "streaming" if snapshot.authenticated else "waiting for gateway",
        *alert,
        flows or "no frames",
        f"rows {snapshot.rows:,}",
        f"files {snapshot.files}",
        f"queue {snapshot.queue_depth:,}"
        + (f"/{snapshot.queue_max:,} was full: reading waited" if waited else ""),
        f"reconnects {snapshot.reconnects}",
        f"smh {snapshot.smh_open}/{snapshot.smh_max}"
        + (f" +{snapshot.smh_queued} queued" if snapshot.smh_queued else ""),
        "heartbeat "
        + ("-" if snapshot.since_heartbeat is None else f"{snapshot.since_heartbeat:.0f}s ago"),
    ]
    return " | ".join(parts)


def _columns(out: TextIO) -> int:
    """The width of the terminal ``out`` writes to (``COLUMNS``, else 80, when unknown: a
    terminal that says 0, as one with no size set does under ``script``, is unknown too)."""
    try:
        columns = os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return columns if columns > 0 else shutil.get_terminal_size().columns


class StatusReporter:
    """Turns snapshots into per-topic rates and shows them; call :meth:`update` periodically."""

    def __init__(self, out: TextIO | None = None, tty: bool | None = None,
                 columns: Callable[[], int] | None = None) -> None:
        self._out = out or sys.stderr
        self._tty = self._out.isatty() if tty is None else tty
        self._columns = columns or (lambda: _columns(self._out))
        self.interval = 1.0 if self._tty else 60.0
        self._previous: StatusSnapshot | None = None
        self._line = ""  # what the terminal shows now, "" when cleared
        self._last = ""  # the latest line, drawn again after a log record

    def rates(self, snapshot: StatusSnapshot) -> dict[str, float]:
        prev = self._previous
        if prev is None or snapshot.now <= prev.now:
            return {}
        span = snapshot.now - prev.now
        return {
            topic: (count - prev.frames_by_topic.get(topic, 0)) / span
            for topic, count in snapshot.frames_by_topic.items()
        }

    def update(self, snapshot: StatusSnapshot) -> None:
        prev = self._previous
        waited = snapshot.full_waits > (prev.full_waits if prev else 0)
        line = render(snapshot, self.rates(snapshot), waited)
        self._previous = snapshot
        if self._tty:
            # one row of the terminal at most: a wrapped line cannot be redrawn with \r
            width = max(1, self._columns() - 1)
            self._last = line if len(line) <= width else line[: width - 1] + "…"
            self.redraw()
        else:
            log.info("status: %s", line)

    def clear(self) -> None:
        """Take the line off the terminal (a log record is about to be written)."""
        if self._tty and self._line:
            self._write("\r" + " " * len(self._line) + "\r")
            self._line = ""

    def redraw(self) -> None:
        """Show the latest line again, in place of what the terminal shows now."""
        if self._tty and self._last:
            pad = max(0, len(self._line) - len(self._last))
            self._write("\r" + self._last + " " * pad)
            self._line = self._last

    def finish(self) -> None:
        if self._tty and self._line:
            self._write("\n")
        self._line = self._last = ""

    def _write(self, text: str) -> None:
        """Write to the terminal; one that is gone (closed, ssh dropped: EIO) ends the line
        for good rather than the recording."""
        try:
            self._out.write(text)
            self._out.flush()
        except OSError:  # from now on, as when stderr is not a terminal: logged, each minute
            self._tty = False
            self.interval = 60.0
            self._line = self._last = ""
