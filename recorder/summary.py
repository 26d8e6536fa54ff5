"""What a recording folder holds: ``recorder summary DIR [--date D]``.

Everything is read through the views (:mod:`recorder.views`), so the summary counts exactly
what a query would see. Per table: rows, files, first and last ``recv_ts``. Per conid: smd
frames. Gaps: *silences* (two consecutive ``market_data`` rows of a stream further apart
than ``silence_seconds``, or its last row that long before its run's ``stop``),
*disconnects* (from the last frame a lost connection received, as its ``gap`` event says, or
else its ``disconnect`` event, to the next ``connect``, to the run's ``stop``, or open-ended;
a clean stop's own disconnect is no gap), *crashes* (a run that ended without a stop, from
its connection's last frame to the next run's ``connect``, or open-ended if it was the last
run and no recorder holds the folder now) and *waits* (a run that failed to connect, or to find
its session, before its first ``connect``: from its ``start``). A disconnect, crash or wait
that spans two trading days is in the summary of each.
Reconnects: ``connect`` events of the same run that end a disconnect.

Times are UTC ISO-8601 strings. :func:`to_dict` is the ``--json`` form; :func:`to_text` the
terminal form.

A file the views cannot read (not Parquet, cut short, a column of another type) makes the
summary wrong, so none is given: :class:`Unreadable` names the file, found by counting its
table one file at a time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from recorder.journal import JOURNAL_DIR, list_segments, segment_path
from recorder.messages import first_line
from recorder.recover import FolderLock
from recorder.schema import TABLES
from recorder.views import (
    STREAM,
    NoRecording,
    compacted_away,
    is_recording,
    open_views,
    recorded_dates,
    table_sql,
)


class Unreadable(ValueError):
    """A file of the recording cannot be read as part of its table: move it out of the
    folder (or repair it) and summarize again."""


@dataclass(frozen=True)
class TableSummary:
    table: str
    rows: int
    files: int
    first: str | None
    last: str | None


@dataclass(frozen=True)
class Gap:
    kind: str  # "silence", "disconnect", "crash" or "waiting"
    conid: int | None
    start: str
    end: str | None  # None: never reconnected
    seconds: float | None
    stream: str | None = None  # a silence's: conid, or conid@exchange when one was asked


@dataclass(frozen=True)
class Journal:
    """Frames in the journal, not yet in the tables: a live run's current segment, or what a
    killed run left for ``recorder recover``."""

    segments: int
    bytes: int
    live: bool  # a recorder holds the folder now


@dataclass(frozen=True)
class Summary:
    folder: str
    date: str | None
    tables: list[TableSummary]
    frames_per_conid: dict[str, int]  # per stream: conid, or conid@exchange when one was asked
    gaps: list[Gap]
    reconnects: int
    auth_lost: int
    journal: Journal
    days: list[str]  # the trading days the folder holds, whatever ``date`` asked for


def _iso(ns: int | None) -> str | None:
    """UTC ISO-8601 of epoch nanoseconds (whole seconds unless there is a fraction)."""
    if ns is None:
        return None
    seconds, frac = divmod(ns, 1_000_000_000)
    text = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def _date_filter(date: str | None) -> tuple[str, list[str]]:
    """The WHERE clause and its parameters that keep one ``date`` (all days if None)."""
    return ("WHERE date = CAST(? AS DATE)", [date]) if date else ("", [])


def _table_summary(con: duckdb.DuckDBPyConnection, root: Path, table: str,
                   date: str | None) -> TableSummary:
    """Rows, files and time span of one table. This reads every file of it, so a bad file
    shows here (one of another day too: the view reads every file's columns), and
    :class:`Unreadable` names it."""
    where, params = _date_filter(date)
    sql = f"SELECT count(*), epoch_ns(min(recv_ts)), epoch_ns(max(recv_ts)) FROM {{}} {where}"
    try:
        n, first, last = con.execute(sql.format(table), params).fetchone() or (0, None, None)
    except duckdb.InterruptException:
        raise  # stopped (Ctrl-C), not a file it cannot read
    except duckdb.Error as exc:
        if compacted_away(exc, root):
            raise  # read fine, then swapped for the merged file: the caller asks again
        for path in sorted((root / table).glob("date=*/*.parquet")):  # the same, file by file
            try:
                con.execute(sql.format(f"({table_sql(root, table, path)})"), params)
            except duckdb.Error as file_exc:
                raise Unreadable(f"cannot read {path}: {first_line(file_exc)}") from None
        raise Unreadable(f"cannot read {table} in {root}: {first_line(exc)}") from None
    files = len(list((root / table).glob(f"date={date or '*'}/*.parquet")))
    return TableSummary(table, n, files, _iso(first), _iso(last))


def summarize(path: str | Path, date: str | None = None, silence_seconds: float = 60.0,
              con: duckdb.DuckDBPyConnection | None = None) -> Summary:
    """The summary of the recording folder ``path`` (of ``date`` only, if given), read through
    ``con`` (its :func:`open_views`; one of its own if None). Raises :class:`NoRecording` if
    the folder holds none, :class:`Unreadable` if a file of it cannot be read, DuckDB's
    ``InterruptException`` if ``con`` is interrupted, and its ``IOException`` if a day was
    compacted while it read (:func:`~recorder.views.compacted_away`: ask again)."""
    root = Path(path)
    if not is_recording(root):
        raise NoRecording(root)
    con = con or open_views(root)
    tables = [_table_summary(con, root, table, date) for table in TABLES]
    try:
        return _summarize(con, root, date, silence_seconds, tables)
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:  # every file read fine above: a column of an unexpected type
        if compacted_away(exc, root):
            raise
        raise Unreadable(f"cannot summarize {root}: {first_line(exc)}") from None


def _summarize(con: duckdb.DuckDBPyConnection, root: Path, date: str | None,
               silence_seconds: float, tables: list[TableSummary]) -> Summary:
    where, params = _date_filter(date)
    # a stream as the quotes view has it: 265598 and 265598@NASDAQ are two books
    per_stream = dict(con.execute(
        f"SELECT {STREAM}, count(*) FROM market_data {where} GROUP BY conid, {STREAM} "
        f"ORDER BY conid, {STREAM}", params).fetchall())
    gaps = [Gap("silence", conid, _iso(prev) or "", _iso(ts), round(ms / 1000, 3), stream)
            for conid, stream, prev, ts, ms in con.execute(
                f"""SELECT conid, stream, prev, ts, (ts - prev) / 1e6 AS ms FROM (
                      SELECT conid, {STREAM} AS stream, epoch_ns(recv_ts) AS ts,
                        lag(epoch_ns(recv_ts)) OVER (PARTITION BY conid, {STREAM}
                                                     ORDER BY recv_ts, seq) AS prev
                      FROM market_data {where})
                    WHERE ms > ? ORDER BY prev, conid, stream""",
                [*params, silence_seconds * 1000]).fetchall()]
    gaps += _silent_to_the_stop(con, date, silence_seconds)
    and_kind = "AND" if where else "WHERE"
    auth_lost = con.execute(f"SELECT count(*) FROM events {where} {and_kind} kind = 'auth_lost'",
                            params).fetchone()
    journal = journal_state(root)
    outages = _outages(con, live=journal.live)
    # an outage is the day's if any of it is: one across midnight shows on both days, whole
    day = dt.date.fromisoformat(date) if date else None
    gaps += [o.gap for o in outages if day is None or o.spans(day)]
    reconnects = sum(o.reconnected and (day is None or o.end_date == day) for o in outages)
    gaps.sort(key=lambda g: (g.start, g.kind))
    return Summary(str(root), date, tables, per_stream, gaps, reconnects,
                   auth_lost[0] if auth_lost else 0, journal, recorded_dates(root))


def _silent_to_the_stop(con: duckdb.DuckDBPyConnection, date: str | None,
                        silence_seconds: float) -> list[Gap]:
    """Streams silent for longer than ``silence_seconds`` after their last update (of
    ``date``, if given): up to the stop of their run, or to their next update on a later day
    if that comes first. A stream that died for the rest of the day, or that was silent
    across midnight, which two consecutive rows of one day never show."""
    where, params = _date_filter(date)
    later = "AND m.date >= CAST(? AS DATE)" if date else ""  # the next update: this day on
    found = con.execute(
        f"""WITH last AS (
              SELECT conid, {STREAM} AS stream, max(recv_ts) AS last
              FROM market_data {where} GROUP BY conid, {STREAM}),
            ended AS (
              SELECT conid, stream, last, least(
                (SELECT min(recv_ts) FROM events WHERE kind = 'stop' AND recv_ts > last),
                (SELECT min(m.recv_ts)
                 FROM (SELECT conid, {STREAM} AS stream, recv_ts, date FROM market_data) m
                 WHERE m.conid = last.conid AND m.stream = last.stream
                   AND m.recv_ts > last.last {later})) AS next
              FROM last)
            SELECT conid, stream, epoch_ns(last), epoch_ns(next) FROM ended
            WHERE next - last > to_microseconds(CAST(? * 1e6 AS BIGINT))
            ORDER BY last, conid, stream""", [*params, *params, silence_seconds]).fetchall()
    return [Gap("silence", conid, _iso(last) or "", _iso(end), round((end - last) / 1e9, 3),
                stream) for conid, stream, last, end in found]


#: Events of a run that could not connect yet: its wait for the gateway is a gap (its
#: start-up, the second or so before the first connect, is not).
_FAILURES = ("connect_failed", "rest_error", "auth")


@dataclass(frozen=True)
class _Outage:
    gap: Gap
    start_date: dt.date
    end_date: dt.date | None  # None: not over (no connect after it)
    reconnected: bool  # ended by a connect of the same run (not a restart, not a stop)

    def spans(self, day: dt.date) -> bool:
        return self.start_date <= day and (self.end_date is None or day <= self.end_date)


def _outages(con: duckdb.DuckDBPyConnection, live: bool) -> list[_Outage]:
    """The folder's disconnects, from every day's events (a few per connection): an outage
    that starts one trading day and ends the next has its two ends in two days' events.
    ``live``: a recorder holds the folder now, so its last connection is open, not crashed.

    A lost connection is down from its last frame received (its ``gap`` event's
    ``start_ns``, else its ``disconnect`` event) to the next ``connect``, or to the run's
    ``stop``. A run that ended without a stop (killed, crashed, a power cut) leaves a
    connection that never disconnected: the next run's ``start`` finds it open, and the
    outage (kind ``crash``) starts at the last frame that connection received."""
    events = con.execute(
        "SELECT kind, epoch_ns(recv_ts), date, "
        "coalesce(try(json_extract_string(detail, '$.stopping')) = 'true', false), "
        "coalesce(try_cast(json_extract_string(detail, '$.conn_id') AS BIGINT), conn_id) "
        "FROM events WHERE kind IN ('connect', 'disconnect', 'start', 'stop', "
        f"{', '.join(repr(k) for k in _FAILURES)}) ORDER BY recv_ts, seq").fetchall()
    # A lost connection's own account of its gap: from the last frame it received, which for
    # a silent socket is the heartbeat timeout (25 s) before its disconnect event.
    last_frame = dict(con.execute(
        "SELECT try_cast(json_extract_string(detail, '$.conn_id') AS BIGINT), "
        "try_cast(json_extract_string(detail, '$.start_ns') AS BIGINT) "
        "FROM events WHERE kind = 'gap'").fetchall())
    # the first event of each day: a gap that starts before it may start on the day before
    day_begins = dict(con.execute(
        "SELECT date, epoch_ns(min(recv_ts)) FROM events GROUP BY date").fetchall())
    outages: list[_Outage] = []
    down: tuple[str, int, dt.date] | None = None  # kind, since, its date
    restarted = False  # a new run started while down: its connect is no reconnect
    up: tuple[int, int, dt.date] | None = None  # the open connection: id, connected, date
    waiting: tuple[int, dt.date] | None = None  # a run's start, until its first connect
    failed = False  # and since it, a connect or the session failed: a wait, not a start-up

    def end(ts: int | None, date: dt.date | None, reconnected: bool) -> None:
        nonlocal down
        assert down is not None
        kind, since, since_date = down
        seconds = None if ts is None else round((ts - since) / 1e9, 3)
        outages.append(_Outage(Gap(kind, None, _iso(since) or "", _iso(ts), seconds),
                               since_date, date, reconnected))
        down = None

    for kind, ts, date, stopping, conn_id in events:
        if kind in _FAILURES:
            failed = failed or waiting is not None
        elif kind == "connect":
            if down is None and waiting is not None and failed:
                down = ("waiting", *waiting)
            if down is not None:
                end(ts, date, reconnected=not restarted)
            up, waiting = (conn_id, ts, date), None
        elif kind == "disconnect":
            if down is None and not stopping:  # a clean stop's own disconnect is no gap
                since = min(ts, last_frame.get(conn_id) or ts)
                # a last frame before the day's first event may be the day before's
                on = date if since >= day_begins[date] else _received_on(con, conn_id, since,
                                                                         date)
                down, restarted = ("disconnect", since, on), False
            up = None
        elif kind == "start":
            if up is not None:  # the last run ended with this connection open
                down = ("crash", *_last_received(con, *up))
            restarted, up = True, None
            waiting, failed = (ts, date) if down is None else None, False
        elif kind == "stop":
            if down is None and waiting is not None and failed:
                down = ("waiting", *waiting)
            if down is not None:  # down to the stop: after it, nothing was asked
                end(ts, date, reconnected=False)
            up = waiting = None
    if down is None and up is not None and not live:  # the last run ended without a stop
        down = ("crash", *_last_received(con, *up))
    if down is None and waiting is not None and failed:  # never connected, not stopped
        down = ("waiting", *waiting)
    if down is not None:
        end(None, None, reconnected=False)
    return outages


def _received_on(con: duckdb.DuckDBPyConnection, conn_id: int, ts: int,
                 date: dt.date) -> dt.date:
    """The trading day of the frame connection ``conn_id`` received at ``ts`` (``date`` if
    ``raw`` does not hold it)."""
    row = con.execute(
        "SELECT date FROM raw WHERE conn_id = ? AND direction = 'in' AND epoch_ns(recv_ts) = ? "
        "LIMIT 1", [conn_id, ts]).fetchone()
    return row[0] if row else date


def _last_received(con: duckdb.DuckDBPyConnection, conn_id: int, connected: int,
                   date: dt.date) -> tuple[int, dt.date]:
    """When and on which day connection ``conn_id`` received its last frame (its connect,
    if none)."""
    row = con.execute(
        "SELECT epoch_ns(recv_ts), date FROM raw WHERE conn_id = ? AND direction = 'in' "
        "ORDER BY recv_ts DESC, seq DESC LIMIT 1", [conn_id]).fetchone()
    return (row[0], row[1]) if row else (connected, date)


def describe_days(days: list[str]) -> str:
    """``days`` for a line of text: all of them if few, else the first and last three."""
    if not days:
        return "none yet"
    if len(days) <= 7:
        return ", ".join(days)
    return f"{', '.join(days[:3])}, ..., {', '.join(days[-3:])} ({len(days)} days)"


def no_data_hint(date: str, days: list[str]) -> str:
    """Why a ``--date`` found nothing, and which dates would find something."""
    return (f"no data on {date}; days recorded: {describe_days(days)} (a day is the trading "
            "day in the recording's timezone, not UTC's)")


def journal_state(root: Path) -> Journal:
    """What the folder's journal holds that the tables do not, and whether it is live."""
    folder = root / JOURNAL_DIR
    segments = [segment_path(folder, n) for n in list_segments(folder)]
    size = sum(p.stat().st_size for p in segments if p.exists())
    return Journal(len(segments), size, FolderLock(root).held_elsewhere())


def to_dict(summary: Summary) -> dict[str, Any]:
    return asdict(summary)


def to_text(summary: Summary) -> str:
    lines = [f"{summary.folder}" + (f" (date {summary.date})" if summary.date else "")]
    if summary.date is None:
        lines.append(f"  days: {describe_days(summary.days)}")
    elif summary.date not in summary.days:
        lines.append(f"  {no_data_hint(summary.date, summary.days)}")
    lines.append(f"  {'table':<12} {'rows':>12} {'files':>6}  first .. last (UTC)")
    for t in summary.tables:
        span = f"{t.first} .. {t.last}" if t.rows else "-"
        lines.append(f"  {t.table:<12} {t.rows:>12,} {t.files:>6}  {span}")
    if summary.frames_per_conid:
        lines.append("  smd frames per conid: " + ", ".join(
            f"{c} {n:,}" for c, n in summary.frames_per_conid.items()))
    lines.append(f"  reconnects: {summary.reconnects}, auth lost: {summary.auth_lost}, "
                 f"gaps: {len(summary.gaps)}")
    for g in summary.gaps:
        who = f"conid {g.stream or g.conid}" if g.conid is not None else "socket"
        length = (f"{g.seconds:,.1f} s" if g.seconds is not None else
                  {"disconnect": "not reconnected", "waiting": "never connected"}.get(
                      g.kind, "no run since"))
        if g.kind == "crash":
            length += "; the run ended without stopping: killed, crashed or a power cut"
        elif g.kind == "waiting":
            length += "; from the run's start: the gateway was down or not logged in"
        lines.append(f"    {g.kind:<10} {who:<16} {g.start} .. {g.end or '?'}  ({length})")
    j = summary.journal
    if j.segments:
        held = (f"  journal: {j.segments} segment(s), {j.bytes:,} bytes, not in the tables "
                "yet")
        lines.append(held + (": a recording is running; they are published as it rotates"
                             if j.live else
                             f": left by a run that did not stop cleanly; run "
                             f"`recorder recover {summary.folder}` to publish them"))
    return "\n".join(lines)
