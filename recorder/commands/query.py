"""``recorder query|summary|compact|recover``: work on a recording folder (SPEC §6, §7)."""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
import itertools
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from recorder.messages import first_line, os_reason

if TYPE_CHECKING:
    import duckdb

T = TypeVar("T")
Rows = tuple[list[str], Iterator[list[tuple[Any, ...]]]]  # column names; rows, a batch at a time

_DIR = click.Path(file_okay=False, path_type=Path)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A trading day as the ``date=`` folders name it: ``YYYY-MM-DD``, a real date."""
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"must be a date like 2026-11-21, got {value!r}") from None
    return value


def _text(value: Any) -> Any:
    """A BLOB (``raw.payload``) as text: UTF-8 where it is, ``\\xNN`` for the bytes that are
    not, as DuckDB shows them; the exact bytes are kept by ``--format parquet``."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def _json_default(value: Any) -> Any:
    return _text(value) if isinstance(value, bytes) else str(value)


def _csv_cell(value: Any) -> Any:
    """One CSV cell: a list, struct or map (``extra``, ``cleared``) as its JSON text, as
    ``--format json`` writes it, rather than Python's repr."""
    if isinstance(value, list | dict):
        import orjson

        return orjson.dumps(value, default=_json_default,
                            option=orjson.OPT_NON_STR_KEYS).decode()
    return _text(value)


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so that Python's flush of what is still buffered,
    at exit, does not fail again with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (a test's captured stdout)
        pass


@contextmanager
def to_stdout() -> Iterator[None]:
    """Writing a result to standard output. A reader that stopped reading (``| head``) ends
    the command quietly with exit 1, as click does; any other failure (``> /dev/full``) with
    one line instead of a traceback."""
    try:
        yield
        sys.stdout.flush()
    except OSError as exc:
        _drop_stdout()
        if exc.errno == errno.EPIPE:
            raise click.exceptions.Exit(1) from None
        raise click.ClickException(
            f"cannot write standard output: {exc.strerror or exc}") from None


class QueryInterrupted(Exception):
    pass


@contextmanager
def _stopped_by_ctrl_c(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Ctrl-C stops the DuckDB work of the block, which then raises :class:`QueryInterrupted`.

    DuckDB does not look at Python's signals while it works, so a thread woken by the signal
    (:func:`signal.set_wakeup_fd`) interrupts the connection, and goes on interrupting it
    until the block ends: a Ctrl-C that lands between two queries stops the next one. Python's
    own KeyboardInterrupt is held off meanwhile: raised wherever the main thread happened to
    be, it escaped through this manager's own exit as a bare interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Ctrl-C is not ours to watch
        return
    stopped, ended = threading.Event(), threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        while data := os.read(read_fd, 64):  # empty once write_fd is closed
            if signal.SIGINT in data:
                stopped.set()
                break
        while stopped.is_set() and not ended.is_set():
            con.interrupt()
            ended.wait(0.05)

    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: None)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="query-ctrl-c", daemon=True)
    watcher.start()
    try:
        yield
    except Exception:
        if not stopped.is_set():
            raise
    finally:
        ended.set()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        os.close(write_fd)
        watcher.join()
        os.close(read_fd)
    if stopped.is_set():
        raise QueryInterrupted


def _parquet_to_stdout(rel: Any) -> None:
    """DuckDB writes Parquet only to a path: a temporary file, then its bytes to stdout."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="recorder-query-") as tmp:
        path = Path(tmp) / "out.parquet"
        rel.write_parquet(str(path), compression="zstd")
        with open(path, "rb") as source, to_stdout():
            sys.stdout.flush()
            shutil.copyfileobj(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()


def _run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str, output: Path | None,
         max_rows: int | None = None) -> str | Rows | None:
    """Run ``sql`` once: what to print (the table's text, or the rows), or None when there
    is nothing to (no result, or the Parquet written)."""
    rel = con.sql(sql)  # runs every statement but the last; the last runs once, below
    if rel is None:
        return None
    if fmt == "parquet":
        if output is not None:
            rel.write_parquet(str(output), compression="zstd")
        else:
            _parquet_to_stdout(rel)
        return None
    if fmt == "table":
        return str(rel) if max_rows is None else _shown(rel, max_rows)
    return rel.columns, _batches(rel)


def _shown(rel: duckdb.DuckDBPyRelation, max_rows: int) -> str:
    """The table's text with at most ``max_rows`` rows. DuckDB's ``show`` is the only call
    that takes a row limit other than its default 20, and it prints to Python's standard
    output."""
    text = io.StringIO()
    with redirect_stdout(text):
        rel.show(max_rows=max_rows)
    return text.getvalue().rstrip("\n") + "\n"


def _batches(rel: duckdb.DuckDBPyRelation) -> Iterator[list[tuple[Any, ...]]]:
    """The result's rows, one Arrow batch (131,072 rows) at a time: a result of any size
    is written in the memory of one batch. Taken whole, 300 million rows took 20 GB."""
    # through Arrow: DuckDB's own conversion of zoned timestamps needs pytz
    for batch in rel.arrow():
        # a MAP as an object ({"6508": "x"}), not as a list of key-value pairs
        yield list(zip(*(c.to_pylist(maps_as_pydicts="lossy") for c in batch.columns),
                       strict=True))


def _write_error(output: Path | None, exc: Exception) -> str | None:
    """``cannot write OUTPUT: reason`` if DuckDB's error is about writing ``output``, with the
    reason as the other formats give it: DuckDB puts the errno in JSON inside its message."""
    text = str(exc)
    if output is None or str(output) not in text:
        return None
    code = re.search(r'"errno":\s*"(\d+)"', text)
    reason = os.strerror(int(code[1])) if code else first_line(exc)
    return f"cannot write {output}: {reason}"


def _write(result: str | Rows, fmt: str, output: Path | None) -> None:
    """Print ``result`` to ``output`` (or standard output). A file is written beside its
    target under a hidden name and renamed when whole, so a failed or interrupted query leaves
    no part of a result behind; anything else (a device, a pipe) is written as it is. A failed
    write, at open, write or close (where a full disk shows, as the buffer is flushed), is one
    line."""
    if output is None:
        with to_stdout():
            _print(sys.stdout, result, fmt)
        return
    whole = not output.exists() or output.is_file()
    target = output.resolve() if whole else output  # a link's file, not the link
    partial = target.with_name(f".{target.name}.partial") if whole else target
    try:
        try:
            with open(partial, "w", newline="") as out:
                _print(out, result, fmt)
            if whole:
                os.replace(partial, target)
        except OSError as exc:
            raise click.ClickException(
                f"cannot write {output}: {exc.strerror or exc}") from None
    except BaseException:
        if whole:
            partial.unlink(missing_ok=True)
        raise


def _print(out: TextIO, result: str | Rows, fmt: str) -> None:
    import orjson

    if isinstance(result, str):
        out.write(result)
        return
    columns, batches = result
    if fmt == "csv":
        first = next(batches, [])  # runs the query: nothing shows of one stopped early
        writer = csv.writer(out)
        writer.writerow(columns)
        for rows in itertools.chain([first], batches):
            writer.writerows([_csv_cell(v) for v in r] for r in rows)
        return
    # one JSON array, as orjson.dumps of every row would make it, a row at a time
    separator = "["
    for rows in batches:
        for r in rows:
            out.write(separator + orjson.dumps(dict(zip(columns, r, strict=True)),
                                               default=_json_default,
                                               option=orjson.OPT_NON_STR_KEYS).decode())
            separator = ","
    out.write("[]\n" if separator == "[" else "]\n")


class _SqlCommand(click.Command):
    """SQL may start with a ``--`` comment, as the README's cookbook queries do, and click took
    it for an option ("No such option"). No option name holds whitespace, so an argument that
    starts with ``-`` and holds whitespace goes after a ``--``, where click reads arguments."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        sql = [a for a in args[:end] if a.startswith("-") and any(c.isspace() for c in a)]
        if sql:
            rest = [a for a in args[:end] if a not in sql]
            args = [*rest, "--", *sql, *args[end + 1:]]
        return super().parse_args(ctx, args)


@click.command(cls=_SqlCommand)
@click.argument("folder", type=_DIR)
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]),
              default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write instead of standard output.")
@click.option("--max-rows", type=click.IntRange(min=1), metavar="N",
              help="With --format table: show up to N rows (DuckDB shows 20, the first and "
                   "last 10). csv and json give every row.")
def query(folder: Path, sql: str, fmt: str, output: Path | None,
          max_rows: int | None) -> None:
    """Run DuckDB SQL over the views of a recording folder (one per table, plus quotes,
    trades_dedup and bars_dedup)."""
    import duckdb

    from recorder.views import RETRIES_AFTER_COMPACT, NoRecording

    if max_rows is not None and fmt != "table":
        raise click.UsageError(f"--max-rows is for --format table; --format {fmt} gives "
                               "every row")
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise click.UsageError("--format parquet is binary: give --output FILE, or redirect "
                               "standard output to a file")
    if output is not None and not output.parent.is_dir():
        raise click.ClickException(f"cannot write {output}: no folder {output.parent}")

    def run(con: duckdb.DuckDBPyConnection) -> None:
        result = _run(con, sql, fmt, output, max_rows)
        if result is not None:  # csv and json run on as they are written
            _write(result, fmt, output)

    # a result printed as it runs cannot be taken back: such a query is not run again
    again = RETRIES_AFTER_COMPACT if output is not None or fmt in ("table", "parquet") else 1
    try:
        _with_views(folder, run, again)
    except (FileNotFoundError, NoRecording) as exc:
        raise click.ClickException(str(exc)) from None
    except QueryInterrupted:
        click.echo("recorder: query interrupted", err=True)
        raise click.exceptions.Exit(130) from None
    except duckdb.Error as exc:
        raise click.ClickException(_write_error(output, exc) or str(exc).strip()) from None


def _with_views(folder: Path, work: Callable[[duckdb.DuckDBPyConnection], T],
                attempts: int) -> T:
    """``work`` on a fresh connection to the views of ``folder``, stopped by Ctrl-C
    (:class:`QueryInterrupted`), and done again, up to ``attempts`` times in all, while it
    meets ``recorder compact``'s swap of a day (:func:`~recorder.views.compacted_away`).
    Other failures, of ``work`` or of opening the folder, are raised as they are."""
    import duckdb

    from recorder.views import compacted_away, open_views

    attempt = 1
    while True:
        con = open_views(folder)
        try:
            with _stopped_by_ctrl_c(con):
                return work(con)
        except duckdb.Error as exc:
            if not compacted_away(exc, folder):
                raise
            if attempt == attempts:
                raise click.ClickException(_compacted(exc, attempts)) from None
            _running_again()
        attempt += 1


def _running_again() -> None:
    click.echo("recorder: `recorder compact` merged a day's files while the query read them: "
               "running it again", err=True)


def _compacted(exc: Exception, tries: int) -> str:
    """The message for a query that met a compaction each of the ``tries`` times it ran."""
    said = f"{first_line(exc)}: `recorder compact` merged the day's files while the query read"
    return (f"{said} them; nothing is lost, run the query again" if tries == 1 else
            f"{said} them, {tries} times running; nothing is lost, run the query again once "
            "the compaction is over")


@click.command()
@click.argument("folder", type=_DIR)
@click.option("--date", callback=_date, help="Only this trading day (YYYY-MM-DD).")
@click.option("--silence-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True,
              help="A conid silent longer than this counts as a gap.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(folder: Path, date: str | None, silence_seconds: float, as_json: bool) -> None:
    """Rows, files and time range per table, frames per conid, gaps and reconnects."""
    import duckdb
    import orjson

    from recorder.summary import NoRecording, Unreadable, summarize, to_dict, to_text
    from recorder.views import RETRIES_AFTER_COMPACT

    try:
        result = _with_views(folder, lambda con: summarize(folder, date, silence_seconds, con),
                             RETRIES_AFTER_COMPACT)
    except (FileNotFoundError, NoRecording, Unreadable) as exc:
        raise click.ClickException(str(exc)) from None
    except QueryInterrupted:
        click.echo("recorder: summary interrupted", err=True)
        raise click.exceptions.Exit(130) from None
    except duckdb.Error as exc:  # summarize makes a file it cannot read Unreadable: rare
        raise click.ClickException(first_line(exc)) from None
    with to_stdout():
        if as_json:
            click.echo(orjson.dumps(to_dict(result), option=orjson.OPT_INDENT_2).decode())
        else:
            click.echo(to_text(result))


def _progress(line: str) -> None:
    """A long step starting, on stderr: stdout keeps only the result."""
    click.echo(f"... {line}", err=True)


@click.command()
@click.argument("folder", type=_DIR)
@click.option("--date", required=True, callback=_date,
              help="The trading day to compact (YYYY-MM-DD).")
def compact(folder: Path, date: str) -> None:
    """Merge a day's rotated files into one sorted file per table, crash-safely."""
    from recorder.compact import compact_day
    from recorder.summary import journal_state, no_data_hint
    from recorder.views import is_recording, recorded_dates

    if not is_recording(folder):
        raise click.ClickException(f"{folder}: no recording here")
    try:
        report = compact_day(folder, date, progress=_progress)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a folder it may not write: the day is as it was
        raise click.ClickException(f"cannot compact {folder}: {os_reason(exc)}") from None
    with to_stdout():
        if not report.tables and date not in (days := recorded_dates(folder)):
            click.echo(f"{date}: nothing to compact: {no_data_hint(date, days)}")
        elif not report.tables:
            click.echo(f"{date}: nothing to compact")
        for table, (files, rows) in sorted(report.tables.items()):
            click.echo(f"{table}: {files} files -> 1 ({rows:,} rows)")
    held = journal_state(folder)
    if held.segments and not held.live:  # frames of this day, maybe, in no file yet
        click.echo(f"note: the journal holds {held.segments} segment(s) left by a run that did "
                   f"not stop cleanly, in no day's files yet: run `recorder recover {folder}`, "
                   "then compact again", err=True)


@click.command()
@click.argument("folder", type=_DIR)
def recover(folder: Path) -> None:
    """Publish what a killed run left in its journal (also done at the start of record)."""
    from recorder.recover import FolderBusy, describe, recover_dir
    from recorder.views import is_recording

    if not folder.is_dir():
        raise click.ClickException(f"{folder}: no such folder")
    if not is_recording(folder):  # and nothing made in it: recovery would take it (_journal)
        if any(folder.iterdir()):
            raise click.ClickException(f"{folder}: no recording here")
        with to_stdout():
            click.echo("nothing to recover")
        return
    try:
        report = recover_dir(folder, progress=_progress)
    except FolderBusy as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, `_journal` not a folder: the journal is kept
        raise click.ClickException(f"cannot recover {folder}: {os_reason(exc)}") from None
    with to_stdout():
        click.echo(describe(report))

