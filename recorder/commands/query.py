"""``recorder query|summary|compact|recover``: work on a recording folder (SPEC §6, §7)."""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from recorder.messages import first_line, os_reason

if TYPE_CHECKING:
    import duckdb

Rows = tuple[list[str], list[tuple[Any, ...]]]  # column names, rows

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


def _parquet_to_stdout(rel: Any) -> None:
    """DuckDB writes Parquet only to a path: a temporary file, then its bytes to stdout."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="recorder-query-") as tmp:
        path = Path(tmp) / "out.parquet"
        rel.write_parquet(str(path), compression="zstd")
        with open(path, "rb") as source:
            sys.stdout.flush()
            shutil.copyfileobj(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()


def _run(con: duckdb.DuckDBPyConnection, sql: str, fmt: str,
         output: Path | None) -> str | Rows | None:
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
        return str(rel)
    # through Arrow: DuckDB's own conversion of zoned timestamps needs pytz
    arrow = rel.arrow().read_all()
    # a MAP as an object ({"6508": "x"}), not as a list of key-value pairs
    return rel.columns, list(zip(*(c.to_pylist(maps_as_pydicts="lossy")
                                   for c in arrow.columns), strict=True))


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
    """Print ``result`` to ``output`` (or standard output). A failed write of the file, at
    open, write or close (where a full disk shows, as the buffer is flushed), is one line."""
    try:
        with open(output, "w", newline="") if output else nullcontext(sys.stdout) as out:
            _print(out, result, fmt)
    except OSError as exc:
        if output is None:
            raise
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None


def _print(out: TextIO, result: str | Rows, fmt: str) -> None:
    import orjson

    if isinstance(result, str):
        out.write(result)
        return
    columns, records = result
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([_csv_cell(v) for v in r] for r in records)
    else:
        data = [dict(zip(columns, r, strict=True)) for r in records]
        out.write(orjson.dumps(data, default=_json_default,
                               option=orjson.OPT_NON_STR_KEYS).decode() + "\n")


@click.command()
@click.argument("folder", type=_DIR)
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]),
              default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write instead of standard output.")
def query(folder: Path, sql: str, fmt: str, output: Path | None) -> None:
    """Run DuckDB SQL over the views of a recording folder (one per table, plus quotes,
    trades_dedup and bars_dedup)."""
    import duckdb

    from recorder.views import NoRecording, open_views

    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise click.UsageError("--format parquet is binary: give --output FILE, or redirect "
                               "standard output to a file")
    if output is not None and not output.parent.is_dir():
        raise click.ClickException(f"cannot write {output}: no folder {output.parent}")
    try:
        con = open_views(folder)
        result = _run(con, sql, fmt, output)
    except duckdb.Error as exc:
        raise click.ClickException(_write_error(output, exc) or str(exc).strip()) from None
    except (FileNotFoundError, NoRecording) as exc:
        raise click.ClickException(str(exc)) from None
    if result is not None:
        _write(result, fmt, output)


@click.command()
@click.argument("folder", type=_DIR)
@click.option("--date", callback=_date, help="Only this trading day (YYYY-MM-DD).")
@click.option("--silence-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True,
              help="A conid silent longer than this counts as a gap.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(folder: Path, date: str | None, silence_seconds: float, as_json: bool) -> None:
    """Rows, files and time range per table, frames per conid, gaps and reconnects."""
    import orjson

    from recorder.summary import NoRecording, Unreadable, summarize, to_dict, to_text

    try:
        result = summarize(folder, date, silence_seconds)
    except (NoRecording, Unreadable) as exc:
        raise click.ClickException(str(exc)) from None
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
    from recorder.views import is_recording

    if not is_recording(folder):
        raise click.ClickException(f"{folder}: no recording here")
    try:
        report = compact_day(folder, date, progress=_progress)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a folder it may not write: the day is as it was
        raise click.ClickException(f"cannot compact {folder}: {os_reason(exc)}") from None
    if not report.tables:
        click.echo(f"{date}: nothing to compact")
    for table, (files, rows) in sorted(report.tables.items()):
        click.echo(f"{table}: {files} files -> 1 ({rows:,} rows)")


@click.command()
@click.argument("folder", type=_DIR)
def recover(folder: Path) -> None:
    """Publish what a killed run left in its journal (also done at the start of record)."""
    from recorder.recover import FolderBusy, describe, recover_dir

    if not folder.is_dir():
        raise click.ClickException(f"{folder}: no such folder")
    try:
        report = recover_dir(folder, progress=_progress)
    except FolderBusy as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, `_journal` not a folder: the journal is kept
        raise click.ClickException(f"cannot recover {folder}: {os_reason(exc)}") from None
    click.echo(describe(report))

