"""The live status line of ``recorder record``, and the summary it ends with.

On a terminal the line is redrawn every second (``\\r``); otherwise a status line is logged
every 60 s. Rendering is pure (:func:`render`), so it is tested without a terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
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


def render(snapshot: StatusSnapshot, rates: dict[str, float], waited: bool = False,
           width: int | None = None) -> str:
    """One line: what flows, what is written, how healthy the connection is. ``waited``: a
    frame waited for room in the queue since the last line (storage is behind, so
    reading slows down and the gateway's frames wait in the socket: none is lost).

    ``width``: the most characters the line may take (one row of a terminal). A line too wide
    gives up its least needed detail first (see :func:`_narrower`) rather than lose its end,
    where the queue's warning is; ``None`` (a log record) keeps every part."""
    parts = _parts(snapshot, rates, waited)
    line = _join(parts)
    if width is None or len(line) <= width:
        return line
    for narrower in _narrower(parts, rates, waited, width):
        line = _join(narrower)
        if len(line) <= width:
            return line
    return _cut(line, width)  # narrower than anything worth showing: its end goes


def _parts(snapshot: StatusSnapshot, rates: dict[str, float], waited: bool) -> dict[str, str]:
    """The whole line's parts by name, in the order shown."""
    queue = f"queue {snapshot.queue_depth:,}"
    if waited:
        queue += f"/{snapshot.queue_max:,} {_WAITED}"
    parts = {
        "uptime": _duration(snapshot.uptime),
        "state": "streaming" if snapshot.authenticated else "waiting for gateway",
    }
    if snapshot.storage_error:
        parts["error"] = f"ERROR {snapshot.storage_error}"
    return parts | {
        "flows": _topic_rates(rates) or "no frames",
        "rows": f"rows {snapshot.rows:,}",
        "files": f"files {snapshot.files}",
        "queue": queue,
        "reconnects": f"reconnects {snapshot.reconnects}",
        "smh": f"smh {snapshot.smh_open}/{snapshot.smh_max}"
        + (f" +{snapshot.smh_queued} queued" if snapshot.smh_queued else ""),
        "heartbeat": "heartbeat "
        + ("-" if snapshot.since_heartbeat is None else f"{snapshot.since_heartbeat:.0f}s ago"),
    }


_WAITED = "was full: reading waited"
_SHORT_STATE = {"waiting for gateway": "waiting"}
# the figures a narrow line drops, least looked at first (the queue's, unless it warns)
_DROPPED_FIRST = ("smh", "heartbeat", "reconnects", "queue", "files", "rows")


def _narrower(parts: dict[str, str], rates: dict[str, float], waited: bool,
              width: int) -> Iterator[dict[str, str]]:
    """``parts`` with ever less detail: the per-topic rates shrink to their total, the
    figures go, the words shorten. What stays is the state, the ERROR alert (its detail cut)
    and the queue's warning (in fewer words, never cut), and the uptime until the last."""
    for flows in _fewer_topics(rates):
        if len(flows) < len(parts["flows"]):
            parts = parts | {"flows": flows}
            yield parts
    if waited:  # "was full" says how deep the queue is
        parts = parts | {"queue": f"queue {_WAITED}"}
        yield parts
    for name in _DROPPED_FIRST:
        if name != "queue" or not waited:
            parts = _without(parts, name)
            yield parts
    if parts["state"] in _SHORT_STATE:
        parts = parts | {"state": _SHORT_STATE[parts["state"]]}
        yield parts
    parts = _without(parts, "flows")
    yield parts
    # from here on, the error's detail takes what room the rest leaves it
    yield _alert_fitted(parts, width)
    if waited:
        parts = parts | {"queue": "queue was full"}
        yield _alert_fitted(parts, width)
    yield _alert_fitted(_without(parts, "uptime"), width)


def _topic_rates(rates: dict[str, float]) -> str:
    """Every topic that flows, with its rate, in a fixed order (a line redrawn each second
    keeps each topic in its place)."""
    return " ".join(
        f"{topic} {rate:.0f}/s" for topic, rate in sorted(rates.items()) if rate >= 0.5)


def _fewer_topics(rates: dict[str, float]) -> Iterator[str]:
    """The rates in ever fewer words: the busiest topics and how many more, then the total."""
    flowing = sorted(((topic, rate) for topic, rate in rates.items() if rate >= 0.5),
                     key=lambda flow: (-flow[1], flow[0]))
    for shown in range(len(flowing) - 1, 0, -1):
        busiest = " ".join(f"{topic} {rate:.0f}/s" for topic, rate in flowing[:shown])
        yield f"{busiest} +{len(flowing) - shown} more"
    if flowing:
        yield f"{sum(rates.values()):,.0f} frames/s"


def _alert_fitted(parts: dict[str, str], width: int) -> dict[str, str]:
    """``parts`` with the ERROR alert's detail cut, between words, to the room the others
    leave it: the word ERROR stays, and the whole error is in the log."""
    alert = parts.get("error")
    if alert is None:
        return parts
    room = width - len(_join(parts)) + len(alert)
    if len(alert) > room:
        words = alert[:room].rsplit(" ", 1)[0]  # the words that fit whole, and room for "…"
        alert = words + "…" if room > len("ERROR ") and words != "ERROR" else "ERROR"
    return parts | {"error": alert}


def _without(parts: dict[str, str], name: str) -> dict[str, str]:
    return {key: part for key, part in parts.items() if key != name}


def _join(parts: dict[str, str]) -> str:
    return " | ".join(parts.values())


def _cut(text: str, width: int) -> str:
    """``text`` in ``width`` characters at most, "…" marking a cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 0 else ""


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
        rates = self.rates(snapshot)
        self._previous = snapshot
        if self._tty:
            # one row of the terminal at most (its last column left free): a wrapped line
            # cannot be redrawn with \r
            self._last = render(snapshot, rates, waited, width=max(1, self._columns() - 1))
            self.redraw()
        else:
            log.info("status: %s", render(snapshot, rates, waited))

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
