"""What a recording folder holds: ``recorder summary DIR [--date D]``.

Everything is read through the views (:mod:`recorder.views`), so the summary counts exactly
what a query would see. Per table: rows, files, first and last ``recv_ts``. Per conid: smd
frames. Gaps: *silences* (two consecutive ``market_data`` rows of a conid further apart than
``silence_seconds``) and *disconnects* (from the last frame a lost connection received, as
its ``gap`` event says, or else its ``disconnect`` event, to the next ``connect``, or
open-ended; a clean stop's own disconnect is no gap).
Reconnects: ``connect`` events that follow a ``disconnect``.

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
from recorder.views import NoRecording, is_recording, open_views, recorded_dates, table_sql


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
    kind: str  # "silence" or "disconnect"
    conid: int | None
    start: str
    end: str | None  # None: never reconnected
    seconds: float | None


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
    frames_per_conid: dict[int, int]
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
    the folder holds none, :class:`Unreadable` if a file of it cannot be read, and DuckDB's
    ``InterruptException`` if ``con`` is interrupted."""
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
        raise Unreadable(f"cannot summarize {root}: {first_line(exc)}") from None


def _summarize(con: duckdb.DuckDBPyConnection, root: Path, date: str | None,
               silence_seconds: float, tables: list[TableSummary]) -> Summary:
    where, params = _date_filter(date)
    per_conid = dict(con.execute(
        f"SELECT conid, count(*) FROM market_data {where} GROUP BY conid ORDER BY conid",
        params).fetchall())
    gaps = [Gap("silence", conid, _iso(prev) or "", _iso(ts), round(ms / 1000, 3))
            for conid, prev, ts, ms in con.execute(
                f"""SELECT conid, prev, ts, (ts - prev) / 1e6 AS ms FROM (
                      SELECT conid, epoch_ns(recv_ts) AS ts,
                        lag(epoch_ns(recv_ts)) OVER (PARTITION BY conid ORDER BY recv_ts, seq)
                          AS prev
                      FROM market_data {where})
                    WHERE ms > ? ORDER BY prev, conid""",
                [*params, silence_seconds * 1000]).fetchall()]
    and_kind = "AND" if where else "WHERE"
    events = con.execute(
        "SELECT kind, epoch_ns(recv_ts), "
        "coalesce(try(json_extract_string(detail, '$.stopping')) = 'true', false), "
        "try_cast(json_extract_string(detail, '$.conn_id') AS BIGINT) "
        f"FROM events {where} {and_kind} kind IN ('connect', 'disconnect', 'auth_lost') "
        "ORDER BY recv_ts, seq", params).fetchall()
    # A lost connection's own account of its gap: from the last frame it received, which for
    # a silent socket is the heartbeat timeout (25 s) before its disconnect event.
    last_frame = dict(con.execute(
        "SELECT try_cast(json_extract_string(detail, '$.conn_id') AS BIGINT), "
        "try_cast(json_extract_string(detail, '$.start_ns') AS BIGINT) "
        f"FROM events {where} {and_kind} kind = 'gap'", params).fetchall())
    reconnects, auth_lost = 0, 0
    down: int | None = None
    for kind, ts, stopping, conn_id in events:
        if kind == "auth_lost":
            auth_lost += 1
        elif kind == "disconnect" and stopping:
            continue  # the recorder's own clean stop: the run ended, nothing was missed
        elif kind == "disconnect" and down is None:
            down = min(ts, last_frame.get(conn_id) or ts)
        elif kind == "connect" and down is not None:
            reconnects += 1
            gaps.append(Gap("disconnect", None, _iso(down) or "", _iso(ts),
                            round((ts - down) / 1e9, 3)))
            down = None
    if down is not None:
        gaps.append(Gap("disconnect", None, _iso(down) or "", None, None))
    gaps.sort(key=lambda g: (g.start, g.kind))
    return Summary(str(root), date, tables, per_conid, gaps, reconnects, auth_lost,
                   _journal(root), recorded_dates(root))


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


def _journal(root: Path) -> Journal:
    folder = root / JOURNAL_DIR
    segments = [segment_path(folder, n) for n in list_segments(folder)]
    size = sum(p.stat().st_size for p in segments if p.exists())
    return Journal(len(segments), size, FolderLock(root).held_elsewhere())


def to_dict(summary: Summary) -> dict[str, Any]:
    out = asdict(summary)
    out["frames_per_conid"] = {str(k): v for k, v in summary.frames_per_conid.items()}
    return out


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
        who = f"conid {g.conid}" if g.conid is not None else "socket"
        length = f"{g.seconds:,.1f} s" if g.seconds is not None else "not reconnected"
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
