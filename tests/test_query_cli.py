"""recorder query / summary / compact / recover through the real click commands."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pty
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.storage import Pipeline
from tests.faults_support import RECORDER
from tests.storage_frames import T0, real_frames, rows


def recording(root: Path, frames_per_segment: int = 100) -> list:
    frames = real_frames(300)
    pipe = Pipeline(root, timezone="America/New_York", clock=lambda: T0)
    for i in range(0, len(frames), frames_per_segment):
        pipe.write(frames[i : i + frames_per_segment])
        pipe.rotate()
    pipe.close()
    return frames


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def run_apart(*args: str) -> tuple[int, str, str]:
    """exit code, stdout, stderr"""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_query_formats(tmp_path: Path) -> None:
    frames = recording(tmp_path)
    sql = "SELECT seq, recv_ts, direction FROM raw ORDER BY seq LIMIT 2"
    code, out = run("query", str(tmp_path), sql, "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["seq", "recv_ts", "direction"], ["1", "2026-04-30 14:00:00+00:00", "in"],
        ["2", "2026-04-30 14:00:00.001000+00:00", "in"]]
    code, out = run("query", str(tmp_path), "SELECT seq, payload FROM raw WHERE seq = 1",
                    "--format", "json")
    assert code == 0 and json.loads(out) == [{"seq": 1, "payload": frames[0].payload.decode()}]
    code, out = run("query", str(tmp_path), "SELECT count(*) AS n FROM raw")
    assert code == 0 and "300" in out
    target = tmp_path / "out.parquet"
    code, _ = run("query", str(tmp_path), "SELECT seq FROM raw", "--format", "parquet",
                  "--output", str(target))
    assert code == 0 and rows(f"SELECT count(*), max(seq) FROM '{target}'") == [(300, 300)]
    result = CliRunner().invoke(cli, ["query", str(tmp_path), "SELECT seq FROM raw WHERE seq < 4",
                                      "--format", "parquet"])  # to stdout, not a terminal
    assert result.exit_code == 0, result.output
    assert pq.read_table(io.BytesIO(result.stdout_bytes)).to_pydict() == {"seq": [1, 2, 3]}
    code, out = run("query", str(tmp_path), "SELECT nope FROM raw")
    assert code == 1 and "nope" in out and "Traceback" not in out


def test_sql_that_starts_with_a_comment_is_sql_not_an_option(tmp_path: Path) -> None:
    """Every cookbook query in the README starts with ``-- what it does``: pasted as it is,
    click refused it as an unknown option."""
    recording(tmp_path)
    sql = "-- rows of raw\nSELECT count(*) AS n FROM raw"
    for args in ([str(tmp_path), sql, "--format", "csv"], ["--format", "csv", str(tmp_path), sql],
                 ["--format", "csv", "--", str(tmp_path), sql]):
        assert run("query", *args) == (0, "n\n300\n"), args
    code, out = run("query", str(tmp_path), "SELECT 1", "--formt", "csv")
    assert code == 2 and "No such option '--formt'" in out


def test_summary_text_json_and_empty(tmp_path: Path) -> None:
    recording(tmp_path / "data")
    code, out = run("summary", str(tmp_path / "data"), "--json")
    assert code == 0
    data = json.loads(out)
    raw = next(t for t in data["tables"] if t["table"] == "raw")
    assert (raw["rows"], raw["files"]) == (300, 3)
    code, out = run("summary", str(tmp_path / "data"))
    assert code == 0 and "market_data" in out
    (tmp_path / "empty").mkdir()
    code, out = run("summary", str(tmp_path / "empty"))
    assert code == 1 and "no recording here" in out and len(out.strip().splitlines()) == 1


def test_compact_and_recover_commands(tmp_path: Path) -> None:
    recording(tmp_path)
    sizes = sum(p.stat().st_size for p in (tmp_path / "raw").glob("*/*.parquet"))
    code, out, err = run_apart("compact", str(tmp_path), "--date", "2026-04-30")
    assert code == 0 and "raw: 3 files -> 1 (300 rows)" in out
    assert "... raw: merging 3 files" not in out  # progress goes to stderr, results to stdout
    assert f"... raw: merging 3 files ({sizes:,} bytes)" in err.splitlines()
    assert len(list((tmp_path / "raw").glob("*/*.parquet"))) == 1
    code, out = run("recover", str(tmp_path))
    assert code == 0 and out.strip() == "nothing to recover"
    live = tmp_path / "live"
    pipe = Pipeline(live, timezone="UTC")
    pipe.write(real_frames(10))
    pipe.flush()
    shutil.copytree(live, tmp_path / "killed")
    pipe.close()
    code, out, err = run_apart("recover", str(tmp_path / "killed"))
    assert code == 0 and "recovered 10 frames from 1 journal segment(s)" in out
    assert err.startswith("... journal segment 1 (1 of 1, ") and err.endswith(" bytes)\n")
    assert rows(f"SELECT count(*) FROM '{tmp_path}/killed/raw/*/*.parquet'") == [(10,)]


def test_a_date_with_no_data_names_the_days_that_have_some(tmp_path: Path) -> None:
    """A UTC date for a New York trading day, a typo: summary's zeros and compact's "nothing
    to compact" gave no hint that the date, not the recording, was wrong."""
    recording(tmp_path)
    hint = ("no data on 2026-05-01; days recorded: 2026-04-30 (a day is the trading day in "
            "the recording's timezone, not UTC's)")
    code, out = run("summary", str(tmp_path), "--date", "2026-05-01")
    assert code == 0 and out.splitlines()[1] == f"  {hint}"
    code, out = run("summary", str(tmp_path), "--date", "2026-04-30")
    assert code == 0 and "no data" not in out
    code, out = run("summary", str(tmp_path))
    assert code == 0 and out.splitlines()[1] == "  days: 2026-04-30"
    code, out = run("summary", str(tmp_path), "--json")
    assert json.loads(out)["days"] == ["2026-04-30"]
    code, out = run("compact", str(tmp_path), "--date", "2026-05-01")
    assert (code, out) == (0, f"2026-05-01: nothing to compact: {hint}\n")
    assert run("compact", str(tmp_path), "--date", "2026-04-30")[0] == 0
    assert run("compact", str(tmp_path), "--date", "2026-04-30") == (
        0, "2026-04-30: nothing to compact\n")  # one file a table already


def test_recover_leaves_a_folder_that_holds_no_recording_as_it_was(tmp_path: Path) -> None:
    """It used to make ``_journal/`` in any folder it was given: an empty one then passed for
    a recording, and a wrong one (a parent, a typo) got a recorder's folders."""
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    (other / "notes.txt").write_text("not a recording")
    assert run("recover", str(empty)) == (0, "nothing to recover\n")
    assert run("recover", str(other)) == (1, f"Error: {other}: no recording here\n")
    assert list(empty.iterdir()) == [] and [p.name for p in other.iterdir()] == ["notes.txt"]


def test_a_bad_date_is_refused_with_one_line(tmp_path: Path) -> None:
    recording(tmp_path)
    for command in ("summary", "compact"):
        for date in ("2026-13-45", "yesterday", "2026/04/30", "20260430"):
            code, out = run(command, str(tmp_path), "--date", date)
            assert code == 2, (command, date, out)
            assert f"must be a date like 2026-11-21, got '{date}'" in out
            assert "Traceback" not in out
    code, out = run("summary", str(tmp_path), "--silence-seconds", "-1")
    assert code == 2 and "--silence-seconds" in out


def test_query_output_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    recording(tmp_path)
    for fmt in ("table", "csv", "json", "parquet"):
        target = tmp_path / "nope" / f"x.{fmt}"
        code, out = run("query", str(tmp_path), "SELECT 1", "--format", fmt,
                        "--output", str(target))
        assert code == 1, (fmt, out)
        assert out.strip() == f"Error: cannot write {target}: no folder {target.parent}"


def test_the_table_format_runs_the_query_once(tmp_path: Path) -> None:
    """A statement that cannot run twice (a sequence's nextval) gives the same answer in
    every format; the table format used to run it a second time to print it."""
    recording(tmp_path)
    sql = "CREATE SEQUENCE s; SELECT nextval('s') AS n"
    for fmt in ("table", "csv", "json"):
        code, out = run("query", str(tmp_path), sql, "--format", fmt)
        assert code == 0 and "Traceback" not in out, (fmt, out)
    code, out = run("query", str(tmp_path), sql)
    assert code == 0 and out.splitlines()[-2].split() == ["│", "1", "│"], out


def _seqs_shown(table: str) -> list[int]:
    """The ``seq`` values of a one-column table's rows, in the order shown."""
    cells = [line.strip("│ ") for line in table.splitlines() if line.startswith("│")]
    return [int(c) for c in cells if c.isdigit()]


def test_max_rows_shows_that_many_rows_of_a_table(tmp_path: Path) -> None:
    recording(tmp_path)
    sql = "SELECT seq FROM raw ORDER BY seq LIMIT 100"
    code, out = run("query", str(tmp_path), sql)
    assert code == 0 and _seqs_shown(out) == [*range(1, 11), *range(91, 101)], out
    assert "(20 shown)" in out
    code, out = run("query", str(tmp_path), sql, "--max-rows", "60")
    assert code == 0 and _seqs_shown(out) == [*range(1, 31), *range(71, 101)], out
    assert "100 rows" in out and "(60 shown)" in out
    code, out = run("query", str(tmp_path), sql, "--max-rows", "100")
    assert code == 0 and _seqs_shown(out) == list(range(1, 101)), out
    assert "shown" not in out and out.endswith("┘\n"), out
    code, out = run("query", str(tmp_path), sql, "--max-rows", "5", "--format", "csv")
    assert code == 2 and "--max-rows is for --format table; --format csv gives every row" \
        in out, out
    code, out = run("query", str(tmp_path), sql, "--max-rows", "0")
    assert code == 2 and "0 is not in the range x>=1" in out, out


def test_bytes_that_are_not_utf8_come_out_escaped_not_replaced(tmp_path: Path) -> None:
    recording(tmp_path)
    sql = "SELECT from_hex('7b2278223aff997d') AS payload"  # {"x":<ff 99>}
    code, out = run("query", str(tmp_path), sql, "--format", "csv")
    assert code == 0 and out.splitlines() == ["payload", '"{""x"":\\xff\\x99}"']
    code, out = run("query", str(tmp_path), sql, "--format", "json")
    assert code == 0 and json.loads(out) == [{"payload": '{"x":\\xff\\x99}'}]


def test_summary_says_what_the_journal_holds_and_whether_to_recover(tmp_path: Path) -> None:
    """After a kill -9 the tables can look empty while the journal holds the frames: the
    summary says so and names the command that publishes them; while a recorder holds the
    folder, its current segment is simply not published yet."""
    live = tmp_path / "live"
    pipe = Pipeline(live, timezone="UTC")
    pipe.recover()  # takes the folder, as a recording does
    pipe.write(real_frames(10))
    pipe.flush()
    shutil.copytree(live, tmp_path / "killed", ignore=shutil.ignore_patterns("lock"))
    size = sum(p.stat().st_size for p in (live / "_journal").glob("*.jnl"))
    code, out = run("summary", str(live))
    assert code == 0 and out.splitlines()[-1] == (
        f"  journal: 1 segment(s), {size:,} bytes, not in the tables yet: a recording is "
        "running; they are published as it rotates")
    pipe.close()
    killed = tmp_path / "killed"
    code, out = run("summary", str(killed))
    assert code == 0 and out.splitlines()[-1] == (
        f"  journal: 1 segment(s), {size:,} bytes, not in the tables yet: left by a run that "
        f"did not stop cleanly; run `recorder recover {killed}` to publish them")
    assert json.loads(run("summary", str(killed), "--json")[1])["journal"] == {
        "segments": 1, "bytes": size, "live": False}
    day = rows(f"SELECT any_value(date) FROM read_parquet('{live}/raw/*/*.parquet', "
               "hive_partitioning = true)")[0][0]
    code, out, err = run_apart("compact", str(killed), "--date", str(day))
    assert code == 0 and err.splitlines()[-1] == (
        "note: the journal holds 1 segment(s) left by a run that did not stop cleanly, in no "
        f"day's files yet: run `recorder recover {killed}`, then compact again")
    run("recover", str(killed))
    code, out = run("summary", str(killed))
    assert code == 0 and "journal" not in out
    code, out, err = run_apart("compact", str(killed), "--date", str(day))
    assert code == 0 and "note:" not in err


def test_lists_and_maps_come_out_as_json_in_csv_and_as_objects_in_json(tmp_path: Path) -> None:
    """``market_data.extra`` (a map) and ``cleared`` (a list) used to come out of
    ``--format csv`` as Python's repr (``[('6508', 'x')]``) and out of ``--format json`` as
    a list of pairs."""
    recording(tmp_path)
    sql = ("SELECT MAP {'6508': 'x', '7': 'a\"b'} AS extra, ['84', '86'] AS cleared, "
           "{'v': 1.5::DOUBLE} AS s, NULL::MAP(VARCHAR, VARCHAR) AS none")
    code, out = run("query", str(tmp_path), sql, "--format", "csv")
    assert code == 0, out
    assert list(csv.reader(io.StringIO(out))) == [
        ["extra", "cleared", "s", "none"],
        ['{"6508":"x","7":"a\\"b"}', '["84","86"]', '{"v":1.5}', ""]]
    code, out = run("query", str(tmp_path), sql, "--format", "json")
    assert code == 0 and json.loads(out) == [
        {"extra": {"6508": "x", "7": 'a"b'}, "cleared": ["84", "86"], "s": {"v": 1.5},
         "none": None}]


def test_parquet_to_a_terminal_is_refused(tmp_path: Path) -> None:
    """Parquet bytes would garble a terminal: say how to get a file instead."""
    recording(tmp_path)
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([*RECORDER, "query", str(tmp_path),
                               "SELECT 1", "--format", "parquet"], stdout=follower,
                              stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines()[-1] == (
        "Error: --format parquet is binary: give --output FILE, or redirect standard output "
        "to a file")


def test_one_bad_file_breaks_only_its_table_and_is_named(tmp_path: Path) -> None:
    """Text where a Parquet file of market_data should be: every other table still answers,
    and a query of market_data, summary and compact each end with one line naming the file
    (summary and compact used to end with a traceback; compact left a staging folder)."""
    recording(tmp_path)
    bad = tmp_path / "market_data" / "date=2026-04-30" / "x.parquet"
    bad.write_text("garbage")
    code, out = run("query", str(tmp_path), "SELECT count(*) AS n FROM raw", "--format", "csv")
    assert (code, out) == (0, "n\n300\n")
    code, out = run("query", str(tmp_path), "SELECT count(*) FROM market_data")
    assert code == 1 and f"'{bad.resolve()}'" in out and "Traceback" not in out
    code, out = run("summary", str(tmp_path))
    assert code == 1 and out.startswith(f"Error: cannot read {bad}: ")
    assert len(out.splitlines()) == 1
    files = {p: p.read_bytes() for p in tmp_path.glob("*/*/*.parquet")}
    code, out = run("compact", str(tmp_path), "--date", "2026-04-30")
    assert code == 1 and out.startswith(f"Error: cannot read {bad}: ")
    assert len(out.splitlines()) == 1
    assert {p: p.read_bytes() for p in tmp_path.glob("*/*/*.parquet")} == files
    assert not list(tmp_path.glob("*/.compact-*"))


def _racing_compact(tmp_path: Path) -> tuple[Path, Path, int]:
    """A day of raw in 200 files, and beside it (where ``recorder compact`` stages it) the
    same rows merged into one: the day's folder, the staging folder, the rows."""
    import pyarrow as pa

    recording(tmp_path)
    day = tmp_path / "raw" / "date=2026-04-30"
    published = sorted(day.glob("*.parquet"))
    for i in range(200 - len(published)):
        shutil.copy(published[i % len(published)], day / f"copy-{i:03}.parquet")
    merged = pa.concat_tables(pq.read_table(f) for f in sorted(day.glob("*.parquet")))
    stage = day.parent / ".compact-2026-04-30"
    stage.mkdir()
    pq.write_table(merged, stage / "merged.parquet")
    return day, stage, merged.num_rows


def _swap_once_read(day: Path, stage: Path, done: threading.Event) -> None:
    """Exchange ``day`` and ``stage`` (compact's own swap) as soon as this process has a file
    of ``day`` open: DuckDB has listed the day's files and started reading them. Gives up
    once ``done`` is set."""
    from recorder.compact import exchange

    prefix = f"{day}/"
    while not done.is_set():
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                if os.readlink(f"/proc/self/fd/{fd}").startswith(prefix):
                    exchange(day, stage)
                    return


@pytest.mark.parametrize("command", ["query", "summary"])
def test_a_query_that_meets_a_compaction_is_run_again_and_counts_the_day_once(
        tmp_path: Path, command: str) -> None:
    """A notebook query failed with DuckDB's ``Cannot open file`` in 5 of 9 compactions:
    DuckDB lists a day's files, then opens them, and compact's swap moved them out in between.
    ``recorder query`` and ``summary`` now ask again on a fresh connection, which reads the
    merged file. Each round swaps once, as soon as DuckDB has the first file open."""
    from recorder.compact import exchange

    day, stage, rows_of_day = _racing_compact(tmp_path)
    out, met = tmp_path / "n.csv", 0
    args = (["query", str(tmp_path), "SELECT count(*) AS n FROM raw", "--format", "csv",
             "--output", str(out)] if command == "query" else
            ["summary", str(tmp_path), "--json", "--silence-seconds", "1e9"])
    for _ in range(5):
        if len(list(day.iterdir())) == 1:
            exchange(day, stage)  # the 200 files back: the race is for them
        done = threading.Event()
        swap = threading.Thread(target=_swap_once_read, args=(day, stage, done))
        swap.start()
        try:
            code, said, err = run_apart(*args)
        finally:
            done.set()
            swap.join()
        assert code == 0, err
        if command == "query":
            assert out.read_text() == f"n\n{rows_of_day}\n"
        else:
            [raw] = [t for t in json.loads(said)["tables"] if t["table"] == "raw"]
            assert raw["rows"] == rows_of_day
        met += err == ("recorder: `recorder compact` merged a day's files while the query "
                       "read them: running it again\n")
    assert met, "no query met the swap: the test shows nothing"


def test_what_a_query_that_keeps_meeting_compactions_says() -> None:
    from recorder.commands.query import _compacted

    failed = RuntimeError('IO Error: Cannot open file "/d/raw/date=2026-04-30/x.parquet": No '
                          'such file or directory')
    assert _compacted(failed, 1) == (
        f"{failed}: `recorder compact` merged the day's files while the query read them; "
        "nothing is lost, run the query again")
    assert _compacted(failed, 3) == (
        f"{failed}: `recorder compact` merged the day's files while the query read them, 3 "
        "times running; nothing is lost, run the query again once the compaction is over")


def test_only_a_file_of_the_folder_that_is_gone_counts_as_compacted_away(tmp_path: Path) -> None:
    import duckdb

    from recorder.views import compacted_away

    recording(tmp_path)
    gone = tmp_path / "raw" / "date=2026-04-30" / "x.parquet"
    failed = duckdb.IOException(  # as DuckDB 2.0 words it (the race test above meets it)
        f'IO Error: Cannot open file "{gone}": No such file or directory')
    assert compacted_away(failed, tmp_path)
    assert not compacted_away(failed, tmp_path / "market_data")  # not this folder's
    gone.write_bytes(b"")  # there after all: some other failure
    assert not compacted_away(failed, tmp_path)
    assert not compacted_away(duckdb.IOException("IO Error: No space left on device"), tmp_path)


def test_query_refuses_a_folder_that_is_not_a_recording(tmp_path: Path) -> None:
    """It used to show every table empty (exit 0), as if the day had no data; an empty
    folder, a recording yet to start, still has its empty views."""
    (tmp_path / "notes.txt").write_text("not a recording")
    code, out = run("query", str(tmp_path), "SELECT count(*) FROM market_data")
    assert (code, out) == (
        1, f"Error: {tmp_path.resolve()}: no recording here (no table folders, no journal)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = run("query", str(empty), "SELECT count(*) AS n FROM market_data",
                    "--format", "csv")
    assert (code, out) == (0, "n\n0\n")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_failed_write_is_one_line(tmp_path: Path) -> None:
    """A full disk, for real (``/dev/full``): the text formats' error came at close, as a
    traceback; Parquet's was DuckDB's message with JSON inside."""
    recording(tmp_path)
    for fmt in ("table", "csv", "json", "parquet"):
        code, out = run("query", str(tmp_path), "SELECT 1", "--format", fmt,
                        "--output", "/dev/full")
        assert (code, out) == (1, "Error: cannot write /dev/full: No space left on device\n"), fmt
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "a device is written, not replaced"


def test_a_query_that_fails_midway_leaves_the_earlier_file_as_it_was(tmp_path: Path) -> None:
    """csv and json are written as the rows come: a query that fails after its first batches
    leaves no part of its result, and the file it would have replaced stays whole."""
    recording(tmp_path)
    target = tmp_path / "out" / "result.csv"
    target.parent.mkdir()
    target.write_text("an earlier result\n")
    failing = ("SELECT CASE WHEN range < 300000 THEN range ELSE error('bad row ' || range) END "
               "AS n FROM range(400000)")
    for fmt in ("csv", "json"):
        code, out = run("query", str(tmp_path), failing, "--format", fmt, "--output", str(target))
        assert code == 1 and "bad row 300000" in out, out
        assert [p.name for p in target.parent.iterdir()] == ["result.csv"]
        assert target.read_text() == "an earlier result\n"
    code, _ = run("query", str(tmp_path), "SELECT range AS n FROM range(300000)", "--format",
                  "csv", "--output", str(target))
    assert code == 0 and target.read_text() == "n\n" + "".join(f"{i}\n" for i in range(300000))


def test_a_large_result_is_written_in_the_memory_of_one_batch(tmp_path: Path) -> None:
    """Rows went to csv or json all at once: 300 million took 20 GB. They now go a batch at a
    time: 1.5 million rows of json took 700 MB of memory before, and stay near what the
    command takes to start (about 150 MB here). The peak is the child's own (VmHWM, read as
    it ends): its rusage counts the parent's memory too, the forking test process's."""
    recording(tmp_path)
    target = tmp_path / "out.json"
    child = ("import sys\n"
             "from recorder.cli import cli\n"
             "try:\n"
             "    cli.main(sys.argv[1:], standalone_mode=False)\n"
             "finally:\n"
             "    print(next(line for line in open('/proc/self/status')\n"
             "               if line.startswith('VmHWM:')), file=sys.stderr)\n")
    done = subprocess.run(
        [sys.executable, "-c", child, "query", str(tmp_path),
         "SELECT range AS a, range * 2 AS b FROM range(1500000)", "--format", "json",
         "--output", str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak_kb = int(done.stderr.split("VmHWM:")[1].split()[0])
    assert peak_kb < 300 * 1024, f"{peak_kb // 1024} MB"
    data = json.loads(target.read_bytes())
    assert len(data) == 1_500_000 and data[-1] == {"a": 1_499_999, "b": 2_999_998}




def test_recover_and_compact_say_what_the_system_refused(tmp_path: Path) -> None:
    """A file where their working folder must be (``_journal``, ``_compact``): both used to
    end in a traceback (FileExistsError)."""
    recording(tmp_path)
    shutil.rmtree(tmp_path / "_journal")
    (tmp_path / "_journal").write_text("")
    code, out = run("recover", str(tmp_path))
    assert code == 1, out
    assert out.strip() == f"Error: cannot recover {tmp_path}: File exists: {tmp_path / '_journal'}"
    shutil.rmtree(tmp_path / "_compact", ignore_errors=True)
    (tmp_path / "_compact").write_text("")
    code, out = run("compact", str(tmp_path), "--date", "2026-04-30")
    assert code == 1 and "Traceback" not in out, out
    assert out.strip().splitlines()[-1].startswith(f"Error: cannot compact {tmp_path}: ")


def recorder_process(*args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen([*RECORDER, *args], **kw)  # type: ignore


def test_a_standard_output_that_fails_is_one_line(tmp_path: Path) -> None:
    """``> /dev/full``, for real: every command that prints a result used to end in a
    traceback (OSError from the write, or from Python's flush at exit)."""
    recording(tmp_path)
    commands: list[tuple[str, ...]] = [
        ("query", str(tmp_path), "SELECT seq FROM raw", "--format", fmt)
        for fmt in ("table", "csv", "json", "parquet")]
    commands += [("summary", str(tmp_path)), ("summary", str(tmp_path), "--json"),
                 ("compact", str(tmp_path), "--date", "2026-04-30"), ("recover", str(tmp_path))]
    for args in commands:
        with open("/dev/full", "wb") as full:
            done = subprocess.run([*RECORDER, *args], stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        assert done.returncode == 1 and "Traceback" not in done.stderr, (args, done.stderr)
        assert done.stderr.splitlines()[-1] == (  # before it: compact's progress
            "Error: cannot write standard output: No space left on device"), args


def test_a_reader_that_stopped_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    """``recorder query ... | head``: the rest is not wanted; exit 1 with no traceback and no
    message. The pipe's reading end is closed before the command writes, so that every write
    fails, however large the pipe's buffer."""
    recording(tmp_path)
    commands: list[tuple[str, ...]] = [
        ("query", str(tmp_path), "SELECT seq FROM raw", "--format", fmt)
        for fmt in ("table", "csv", "json", "parquet")]
    commands += [("summary", str(tmp_path))]
    for args in commands:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run([*RECORDER, *args], stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write_end)
        assert (done.returncode, done.stderr) == (1, ""), args


LONG_QUERY = ("SELECT count(*) FROM range(400000) a, range(400000) b "
              "WHERE (a.range * 7 + b.range) % 1000003 = 5")  # minutes of work


def test_ctrl_c_stops_a_running_query(tmp_path: Path) -> None:
    """DuckDB does not look at Python's signals while it runs a query: Ctrl-C did nothing
    until the query ended by itself. It now stops it, says so, and leaves no file behind."""
    recording(tmp_path)
    target = tmp_path / "out" / "result.parquet"
    target.parent.mkdir()
    for extra in ((), ("--format", "csv"), ("--format", "parquet", "--output", str(target))):
        proc = recorder_process("query", str(tmp_path), LONG_QUERY, *extra,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cpu = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        # started, imported and running the query: well past what starting up takes
        while sum(cpu.cpu_times()[:2]) < 2.5:
            assert proc.poll() is None and time.monotonic() < deadline, extra
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (130, b"", b"recorder: query interrupted\n"), extra
        assert list(target.parent.iterdir()) == []


def test_ctrl_c_stops_a_long_summary(tmp_path: Path) -> None:
    """A year of quotes takes summary minutes; Ctrl-C waited for the DuckDB query it was in,
    then ended in a traceback. Thirty million rows of market_data (three columns: the views
    read the others as null) keep it busy for seconds of CPU here."""
    import duckdb

    recording(tmp_path)
    [folder] = (tmp_path / "market_data").glob("date=*")
    duckdb.execute(
        "COPY (SELECT TIMESTAMPTZ '2026-04-30 14:00:00+00' + to_microseconds(range) AS recv_ts, "
        "range + 1000 AS seq, 265598 + range % 3 AS conid FROM range(30000000)) "
        f"TO '{folder}/market_data-100001-9.parquet' (FORMAT parquet)")
    proc = recorder_process("summary", str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cpu = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while sum(cpu.cpu_times()[:2]) < 2.5:  # past starting up, into the summary's queries
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (130, b"", b"recorder: summary interrupted\n")
