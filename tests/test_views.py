"""The views: one per table, empty ones typed, and quotes / trades_dedup / bars_dedup exact."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

import recorder
from recorder.frames import Frame
from recorder.normalizer import normalize
from recorder.schema import TABLES, arrow_schema
from recorder.schema import columns as schema_columns
from recorder.storage import Pipeline
from recorder.summary import summarize
from recorder.views import NoRecording
from tests.storage_frames import T0, real_frames, real_payloads

TZ = "America/New_York"


def record(root: Path, frames: list[Frame], rotate_every: int = 0) -> None:
    pipe = Pipeline(root, timezone=TZ)
    step = rotate_every or len(frames)
    for i in range(0, len(frames), step):
        pipe.write(frames[i : i + step])
        pipe.rotate()
    pipe.close()


def test_empty_folder_has_every_view_with_its_columns(tmp_path: Path) -> None:
    con = recorder.open(tmp_path)
    for table in TABLES:
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        assert cols == [f.name for f in arrow_schema(table)] + ["date"]
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]
    for view in ("quotes", "trades_dedup", "bars_dedup"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]


def test_an_open_connection_sees_a_tables_first_files(tmp_path: Path) -> None:
    """A notebook opened before the day's first execution: once ``trades`` files are
    published, the same connection shows them (its view used to stay empty until reopened),
    and so do the views built on it."""
    frames = real_frames()
    strs = [f for f in frames if b'"str"' in f.payload]
    others = [f for f in frames if b'"str"' not in f.payload]
    record(tmp_path, others)
    con = recorder.open(tmp_path)
    assert con.execute("SELECT count(*) FROM trades").fetchall() == [(0,)]
    record(tmp_path, strs)
    want = normalize(strs)["trades"].num_rows
    assert want > 0
    assert con.execute("SELECT count(*) FROM trades").fetchall() == [(want,)]
    assert con.execute("SELECT count(*) > 0 FROM trades_dedup").fetchall() == [(True,)]
    empty = tmp_path / "empty"
    empty.mkdir()
    con = recorder.open(empty)  # no file of any table yet
    record(empty, others[:20])
    assert con.execute("SELECT count(*) FROM raw").fetchall() == [(20,)]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such recording folder"):
        recorder.open(tmp_path / "nope")
    record(tmp_path / "data", real_frames(5))
    [published] = (tmp_path / "data" / "raw").glob("*/*.parquet")
    with pytest.raises(NotADirectoryError, match=re.escape(
            f"{published}: a file, not a recording folder (open the folder that holds the "
            "table folders)")):
        recorder.open(published)  # a notebook handed one of the folder's files


def test_a_folder_holding_something_else_is_not_opened(tmp_path: Path) -> None:
    """Not a recording and not empty (a parent, a typo naming another folder): refused, as
    ``recorder query`` refuses it, rather than opened as empty tables that look like a day
    without data. An empty folder still opens (above)."""
    (tmp_path / "notes.txt").write_text("not a recording")
    with pytest.raises(NoRecording, match=re.escape(
            f"{tmp_path.resolve()}: no recording here (no table folders, no journal)")):
        recorder.open(tmp_path)


@pytest.mark.parametrize("content", [b"garbage\n", b""], ids=["garbage", "empty"])
def test_a_bad_file_fails_only_the_queries_of_its_table(tmp_path: Path, content: bytes) -> None:
    """A file that is not Parquet among ``market_data``'s: the folder opens and every other
    table reads as before; a query of market_data, or of quotes built on it, fails naming the
    file. Creating the views used to read every file's footer, so one such file made
    ``recorder.open`` fail, and with it every query of every table."""
    record(tmp_path, real_frames(300), rotate_every=100)
    con = recorder.open(tmp_path)
    others = [t for t in TABLES if t != "market_data"]
    want = {t: con.execute(f"SELECT count(*), max(recv_ts) FROM {t}").fetchall() for t in others}
    assert want["raw"][0][0] == 300
    bad = next((tmp_path / "market_data").glob("date=*")).resolve() / "x.parquet"
    bad.write_bytes(content)
    con = recorder.open(tmp_path)
    assert {t: con.execute(f"SELECT count(*), max(recv_ts) FROM {t}").fetchall()
            for t in others} == want
    for view in ("market_data", "quotes"):
        with pytest.raises(duckdb.Error, match=re.escape(f"'{bad}'")):
            con.execute(f"SELECT count(*) FROM {view}")


def test_tables_match_what_was_recorded(tmp_path: Path) -> None:
    frames = real_frames()
    record(tmp_path, frames, rotate_every=50)  # several files per table
    con = recorder.open(tmp_path)
    want = normalize(frames)
    for table, rows in want.items():
        got = con.execute(f"SELECT count(*), min(date)::VARCHAR FROM {table}").fetchall()
        assert got == [(rows.num_rows, "2026-04-30")], table
    got = con.execute("SELECT seq, payload FROM raw ORDER BY seq").fetchall()
    assert got == [(f.seq, f.payload) for f in frames]
    # a published file name is visible in the view's filename list
    assert con.execute("SELECT count(DISTINCT filename) FROM read_parquet("
                       f"'{tmp_path}/raw/date=*/*.parquet', filename=true)").fetchall() == [(4,)]


@pytest.mark.parametrize("name, neighbour", [
    ("x*y", "xZZy"), ("q?", "qA"), ("run[1]", "run1"), ("a[b-c]", "ab"), ("[", "b")])
def test_a_folder_name_is_taken_literally(tmp_path: Path, name: str, neighbour: str) -> None:
    """``*``, ``?`` and ``[`` in the folder's path were glob characters to DuckDB: ``x*y``
    also read its neighbour ``xZZy``'s files, and ``run[1]`` read none of its own."""
    mine, theirs = real_frames(30), real_frames(70, first_seq=1_000)
    record(tmp_path / name, mine)
    record(tmp_path / neighbour, theirs)
    con = recorder.open(tmp_path / name)
    assert con.execute("SELECT min(seq), max(seq), count(*) FROM raw").fetchall() == [(1, 30, 30)]
    assert con.execute("SELECT count(*) FROM market_data").fetchall() == [
        (normalize(mine)["market_data"].num_rows,)]
    summary = summarize(tmp_path / name)
    assert {t.table: t.rows for t in summary.tables}["raw"] == 30


def test_date_comes_from_the_recordings_own_folders(tmp_path: Path) -> None:
    """DuckDB's hive partitioning reads every ``key=value`` in a path and an outer one wins:
    a recording kept in ``lake/date=2020-01-01/DIR`` showed every row on 2020-01-01, and a
    filter on the real day found nothing. A filter on ``date`` still reads only that day's
    files."""
    root = tmp_path / "lake" / "date=2020-01-01" / "day"
    frames = real_frames(40) + real_frames(60, start_ns=T0 + 86_400 * 10**9, first_seq=41)
    record(root, frames, rotate_every=50)  # 40 on the first day, then 10 and 50
    con = recorder.open(root)
    assert con.execute("SELECT date::VARCHAR, count(*) FROM raw GROUP BY 1 ORDER BY 1"
                       ).fetchall() == [("2026-04-30", 40), ("2026-05-01", 60)]
    plan = con.execute("EXPLAIN ANALYZE SELECT count(*) FROM raw "
                       "WHERE date = DATE '2026-05-01'").fetchall()[0][1]
    assert re.search(r"Scanning Files: 2/3\b", plan), plan
    assert con.execute("SELECT count(*) FROM raw WHERE date = DATE '2026-05-01'").fetchall() == [
        (60,)]
    summary = summarize(root, "2026-05-01")
    assert {t.table: (t.rows, t.files) for t in summary.tables}["raw"] == (60, 2)


def test_quotes_carry_every_column_forward_per_conid(tmp_path: Path) -> None:
    smd = [p for p in real_payloads() if b'"smd+' in p]
    frames = [Frame(T0 + i * 1000, 1, i + 1, "in", p) for i, p in enumerate(smd)]
    record(tmp_path, frames, rotate_every=30)
    md = normalize(frames)["market_data"].to_pylist()
    md.sort(key=lambda r: (r["recv_ts"], r["seq"]))
    columns = ["last", "bid", "ask", "bid_size", "volume", "symbol", "last_is_close", "mark"]
    ids = {c.name: c.field_ids for c in schema_columns("market_data")}
    state: dict[int, dict[str, object]] = {}
    expected = []
    for row in md:
        s = state.setdefault(row["conid"], {})
        for c in columns:
            if row[c] is not None or set(ids[c]) & set(row["cleared"] or ()):
                s[c] = row[c]
        expected.append((row["seq"], row["conid"], *[s.get(c) for c in columns]))
    con = recorder.open(tmp_path)
    got = con.execute(f"SELECT seq, conid, {', '.join(columns)} FROM quotes "
                      "ORDER BY recv_ts, seq").fetchall()
    assert got == expected
    assert any(e[2] is not None and e[3] is not None for e in expected)  # a real merge


def _smd(conid: int, fields: str) -> bytes:
    return (f'{{"server_id":"q1","conid":{conid},"_updated":1777552169161{fields},'
            f'"topic":"smd+{conid}"}}').encode()


def test_quotes_clear_a_column_a_frame_sent_blank(tmp_path: Path) -> None:
    """A bid withdrawn (``"84":""``) is no bid from then on, not the last bid carried forward;
    a volume cleared through any of its sources likewise; another conid keeps its own."""
    payloads = [
        _smd(1, ',"84":"10","86":"11","7762":"500"'),
        _smd(2, ',"84":"20"'),
        _smd(1, ',"86":"11.5"'),
        _smd(1, ',"84":"","87":""'),
        _smd(1, ',"86":"12"'),
        _smd(2, ',"86":"21"'),
        _smd(1, ',"84":"10.5","87":"1.2K"'),
        _smd(1, ',"86":"N/A"'),
    ]
    frames = [Frame(T0 + i * 1000, 1, i + 1, "in", p) for i, p in enumerate(payloads)]
    record(tmp_path, frames)
    con = recorder.open(tmp_path)
    got = con.execute("SELECT conid, bid, ask, volume FROM quotes ORDER BY seq").fetchall()
    assert got == [
        (1, 10.0, 11.0, 500.0),
        (2, 20.0, None, None),
        (1, 10.0, 11.5, 500.0),
        (1, None, 11.5, None),
        (1, None, 12.0, None),
        (2, 20.0, 21.0, None),
        (1, 10.5, 12.0, 1200.0),
        (1, 10.5, None, 1200.0),
    ]
    assert [c for (c,) in con.execute("SELECT cleared FROM market_data ORDER BY seq").fetchall()
            ] == [None, None, None, ["84", "87"], None, None, None, ["86"]]


def test_quotes_keep_a_routed_stream_apart_from_the_plain_one(tmp_path: Path) -> None:
    """``265598`` and ``265598@NASDAQ`` are two books of one conid: a SMART row took the
    NASDAQ row's values. A frame without ``conidEx`` (gateways before 2023) is the plain one."""
    def smd(conid_ex: str | None, fields: str) -> bytes:
        ex = f'"conidEx":"{conid_ex}",' if conid_ex else ""
        return (f'{{"server_id":"q1",{ex}"conid":265598,"_updated":1777552169161{fields},'
                f'"topic":"smd+265598"}}').encode()

    payloads = [
        smd("265598", ',"31":"271.25","84":"271.20"'),
        smd("265598@NASDAQ", ',"31":"271.30"'),
        smd("265598", ',"86":"271.27"'),
        smd("265598@NASDAQ", ',"84":"271.10"'),
        smd(None, ',"86":"271.28"'),
    ]
    frames = [Frame(T0 + i * 1000, 1, i + 1, "in", p) for i, p in enumerate(payloads)]
    record(tmp_path, frames)
    con = recorder.open(tmp_path)
    assert con.execute("SELECT conid_ex, last, bid, ask FROM quotes ORDER BY seq").fetchall() == [
        ("265598", 271.25, 271.20, None),
        ("265598@NASDAQ", 271.30, None, None),
        ("265598", 271.25, 271.20, 271.27),
        ("265598@NASDAQ", 271.30, 271.10, None),
        ("265598", 271.25, 271.20, 271.28),
    ]


def test_files_from_before_a_column_was_added_read_it_as_null(tmp_path: Path) -> None:
    """A folder recorded by schema version 1 has no ``cleared``; its views still work, and a
    day mixing old and new files reads the old rows' ``cleared`` as null."""
    record(tmp_path, [Frame(T0, 1, 1, "in", _smd(1, ',"84":"10"'))])
    [path] = (tmp_path / "market_data").glob("*/*.parquet")
    pq.write_table(pq.read_table(path).drop_columns(["cleared"]), path)  # as version 1 wrote it
    con = recorder.open(tmp_path)
    assert con.execute("SELECT seq, bid, cleared FROM market_data").fetchall() == [
        (1, 10.0, None)]
    assert con.execute("SELECT seq, bid FROM quotes").fetchall() == [(1, 10.0)]
    record(tmp_path, [Frame(T0 + 1000, 1, 2, "in", _smd(1, ',"84":""'))])
    con = recorder.open(tmp_path)
    assert con.execute("SELECT seq, bid, cleared FROM market_data ORDER BY seq").fetchall() == [
        (1, 10.0, None), (2, None, ["84"])]
    assert con.execute("SELECT seq, bid FROM quotes ORDER BY seq").fetchall() == [
        (1, 10.0), (2, None)]


def test_trades_dedup_keeps_the_latest_copy(tmp_path: Path) -> None:
    strs = [p for p in real_payloads() if b'"str"' in p]
    frames = [Frame(T0 + i * 1000, 1, i + 1, "in", p) for i, p in enumerate(strs)]
    record(tmp_path, frames)
    trades = normalize(frames)["trades"].to_pylist()
    latest: dict[str, tuple] = {}
    for row in sorted(trades, key=lambda r: (r["recv_ts"], r["seq"])):
        latest[row["execution_id"]] = (row["execution_id"], row["seq"], row["commission"])
    con = recorder.open(tmp_path)
    got = con.execute("SELECT execution_id, seq, commission FROM trades_dedup "
                      "ORDER BY execution_id").fetchall()
    assert got == sorted(latest.values())
    assert len(got) < len(trades)  # the captures hold repeated executions


def test_trades_dedup_keeps_the_commission_a_later_copy_lacks(tmp_path: Path) -> None:
    """IBKR re-sends executions (behaviours §35: 277 str frames in 60 s for a handful of
    them). A copy without a commission after the one with it used to hide the commission."""
    without, with_commission = [p for p in real_payloads() if b"0000d5db.6c89b9be" in p][:2]
    assert b"commission" not in without and b'"commission"' in with_commission
    record(tmp_path, [Frame(T0, 1, 1, "in", without), Frame(T0 + 1000, 1, 2, "in", with_commission),
                      Frame(T0 + 2000, 1, 3, "in", without)])
    con = recorder.open(tmp_path)
    assert con.execute("SELECT execution_id, seq, commission FROM trades_dedup").fetchall() == [
        ("0000d5db.6c89b9be.01.01", 2, 0.0)]


def _with_times(payload: bytes, start_ms: int) -> bytes:
    """The smh frame with a ``t`` on each bar, a minute apart from ``start_ms``."""
    obj = orjson.loads(payload)
    obj["data"] = [{**bar, "t": start_ms + i * 60_000} for i, bar in enumerate(obj["data"])]
    return orjson.dumps(obj)


def _ms(when: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (no float on the way)."""
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def test_bars_dedup_one_row_per_bar(tmp_path: Path) -> None:
    smh = [p for p in real_payloads() if b'"smh+' in p]
    timed = [_with_times(p, 1_734_973_500_000) for p in smh]
    frames = [Frame(T0 + i * 1000, 1, i + 1, "in", p) for i, p in enumerate(timed * 3)]
    record(tmp_path, frames, rotate_every=1)
    bars = normalize(frames)["bars"].to_pylist()
    latest: dict[tuple, int] = {}
    for b in bars:
        key = (b["conid"], b["bar"], b["source"], b["bar_time"])
        latest[key] = max(latest.get(key, 0), b["seq"])
    con = recorder.open(tmp_path)
    assert con.execute("SELECT count(*) FROM bars").fetchall() == [(len(bars),)]
    got = con.execute("SELECT conid, bar, source, epoch_ms(bar_time), seq FROM bars_dedup"
                      ).fetchall()
    assert {g[:4]: g[4] for g in got} == {
        (*k[:3], _ms(k[3])): v for k, v in latest.items()}
    assert len(got) == len(latest) < len(bars)
    assert set(latest.values()) == {len(frames)}  # the last copy of the frame's bars


def test_dedup_views_keep_every_row_without_a_key(tmp_path: Path) -> None:
    """A bar without ``t`` (the capture's format has no %t) or an execution without an id
    cannot be told apart from another: folding them into one row would hide real bars."""
    smh = [p for p in real_payloads() if b'"smh+' in p]
    trade = orjson.loads(next(p for p in real_payloads() if b'"execution_id"' in p))
    for item in trade["args"]:
        del item["execution_id"]
    payloads = [*smh * 2, orjson.dumps(trade), orjson.dumps(trade)]
    frames = [Frame(T0 + i * 1000, 1, i + 1, "in", p) for i, p in enumerate(payloads)]
    record(tmp_path, frames)
    tables = normalize(frames)
    bars, trades = tables["bars"].num_rows, tables["trades"].num_rows
    assert bars > 2 and trades > 1
    con = recorder.open(tmp_path)
    assert con.execute("SELECT count(*), count(bar_time) FROM bars_dedup").fetchall() == [
        (bars, 0)]
    assert con.execute("SELECT count(*), count(execution_id) FROM trades_dedup").fetchall() == [
        (trades, 0)]
