"""A recording from the simulator, read back with ``recorder.open``: every table holds exactly
what the simulator sent, the derived views do what they promise, and no stored value holds the
session id."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest

import recorder
from recorder.config import SbdRequest, SmhRequest
from recorder.redact import RedactingFilter, Redactor
from recorder.runner import Recorder
from recorder.sim import SimGateway, SimOptions
from recorder.sim.account import RESTING_ORDER_ID
from tests.recording import make_config, record_while, timeout


def expected_rows(sent: list[bytes]) -> dict[str, int]:
    """Rows per table, counted from the simulator's own frames."""
    counts = dict.fromkeys(("market_data", "bars", "depth", "orders", "trades", "pnl"), 0)
    for payload in sent:
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        topic = str(frame.get("topic", "")) if isinstance(frame, dict) else ""
        family = topic.split("+", 1)[0]
        if family == "smd":
            counts["market_data"] += 1
        elif family == "smh" and "data" in frame:
            counts["bars"] += len(frame["data"])
        elif family == "sbd":
            counts["depth"] += len(frame["data"])
        elif family == "sor":
            counts["orders"] += len(frame["args"])
        elif family == "str":
            counts["trades"] += len(frame["args"])
        elif family == "spl":
            counts["pnl"] += len(frame["args"])
    return counts


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], str, str]:
    out = tmp_path_factory.mktemp("recording")
    log_lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_lines.append(self.format(record))

    # The recorder's own log handler (as `recorder record` sets it up), at DEBUG, where
    # websockets logs the Cookie header and every frame: the harshest case for redaction.
    redactor = Redactor()
    handler = Capture(level=logging.DEBUG)
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)

    async def main() -> tuple[list[bytes], str]:
        options = SimOptions(seed=21, hb_interval=0.5, update_interval=0.05, orders_every_ticks=5)
        async with SimGateway(options) as gw:
            config = make_config(
                gw, out, smd=("265598", "8314@NYSE"), smh=(SmhRequest(conid=265598),),
                sbd=(SbdRequest(account="DU1234567", conid=265598),),
                orders=True, trades=True, pnl=True, tic_seconds=0.3,
            )

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.tics_received >= 3, timeout(10))
                await gw.wait_for(
                    lambda: sum(1 for f in gw.sent if (f.topic or "") == "sor") >= 4, timeout(10))

            await record_while(config, scenario, redactor)
            first_unsub = min(r.ts_ns for r in gw.received if r.payload.startswith(b"umd"))
            # what the recorder received: everything sent before it began to unsubscribe
            sent = [f.payload for f in gw.sent if f.ts_ns < first_unsub]
            return sent, gw.session_id

    try:
        sent, session_id = asyncio.run(main())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    return out, sent, session_id, "\n".join(log_lines)


def test_rows_per_table_equal_what_the_simulator_sent(recording: tuple) -> None:
    out, sent, _, _ = recording
    con = recorder.open(out)
    where = {"orders": " WHERE snapshot IS NOT TRUE"}  # the day's order list came over REST
    got = {t: con.sql(f"SELECT count(*) FROM {t}{where.get(t, '')}").fetchall()[0][0]
           for t in expected_rows(sent)}
    assert got == expected_rows(sent)
    assert all(n > 0 for n in got.values()), got


def test_the_day_order_list_holds_the_order_no_sor_frame_mentions(recording: tuple) -> None:
    """The simulator's account has an order resting since before it started: sor never
    mentions it, and the recorder learns it from ``/iserver/account/orders``."""
    out, sent, _, _ = recording
    con = recorder.open(out)
    ((seq, detail),) = con.sql("SELECT seq, detail FROM events WHERE kind = 'orders_snapshot'"
                               ).fetchall()
    listed = orjson.loads(detail)["orders"]
    rows = con.sql("SELECT seq, order_id, status, side, time_in_force, remaining_quantity "
                   "FROM orders WHERE snapshot ORDER BY order_id").fetchall()
    assert [r[1] for r in rows] == sorted(o["orderId"] for o in listed)
    assert {r[0] for r in rows} == {seq}
    assert (RESTING_ORDER_ID, "Submitted", "BUY", "GTC", 100.0) in [r[1:] for r in rows]
    in_sor = con.sql(f"SELECT count(*) FROM orders WHERE snapshot IS NOT TRUE AND order_id = "
                     f"{RESTING_ORDER_ID}").fetchall()
    assert in_sor == [(0,)] and not any(str(RESTING_ORDER_ID).encode() in p for p in sent)


def test_quotes_carry_every_column_forward(recording: tuple) -> None:
    out, *_ = recording
    con = recorder.open(out)
    # smd deltas leave most columns null; quotes never goes back to null once a value came
    [(deltas_with_null_bid, quotes_with_null_bid)] = con.sql("""
        SELECT (SELECT count(*) FROM market_data WHERE bid IS NULL),
               (SELECT count(*) FROM quotes q WHERE bid IS NULL AND EXISTS (
                    SELECT 1 FROM market_data m WHERE m.conid = q.conid AND m.bid IS NOT NULL
                    AND (m.recv_ts, m.seq) <= (q.recv_ts, q.seq)))""").fetchall()
    assert deltas_with_null_bid > 0 and quotes_with_null_bid == 0
    # the last quote of each conid is the last value seen for every column
    mismatches = con.sql("""
        SELECT q.conid FROM (SELECT * FROM quotes QUALIFY row_number() OVER
                             (PARTITION BY conid ORDER BY recv_ts DESC, seq DESC) = 1) q
        JOIN (SELECT conid, arg_max(bid, seq) FILTER (WHERE bid IS NOT NULL) AS bid,
                     arg_max(ask, seq) FILTER (WHERE ask IS NOT NULL) AS ask,
                     arg_max(symbol, seq) FILTER (WHERE symbol IS NOT NULL) AS symbol
              FROM market_data GROUP BY conid) m USING (conid)
        WHERE q.bid IS DISTINCT FROM m.bid OR q.ask IS DISTINCT FROM m.ask
           OR q.symbol IS DISTINCT FROM m.symbol""").fetchall()
    assert mismatches == []


def test_trades_dedup_one_row_per_execution_with_commission(recording: tuple) -> None:
    out, *_ = recording
    con = recorder.open(out)
    [(executions, rows, copies)] = con.sql(
        "SELECT count(DISTINCT execution_id), count(*), "
        "(SELECT count(*) FROM trades) FROM trades_dedup").fetchall()
    assert rows == executions > 0
    assert copies == 2 * executions, "IBKR (and the sim) send every execution twice"
    without = con.sql("SELECT count(*) FROM trades_dedup WHERE commission IS NULL").fetchall()
    assert without == [(0,)]


def test_no_stored_value_and_no_log_line_holds_the_session_id(recording: tuple) -> None:
    out, sent, session_id, log = recording
    assert any(session_id.encode() in p for p in sent), "the sim put the id in tic replies"
    con = recorder.open(out)
    for table in ("market_data", "bars", "depth", "orders", "trades", "pnl", "events", "raw"):
        columns = [c for (c,) in con.sql(
            f"SELECT column_name FROM (DESCRIBE {table})").fetchall()]
        text = " || '|' || ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '')" for c in columns)
        [(hits,)] = con.sql(
            f"SELECT count(*) FROM {table} WHERE contains({text}, $id)",
            params={"id": session_id}).fetchall()
        assert hits == 0, table
    payloads = [bytes(p) for (p,) in con.sql("SELECT payload FROM raw").fetchall()]
    assert not [p for p in payloads if session_id.encode() in p]
    assert sum(b"<redacted>" in p for p in payloads) >= 3, "tic replies kept, id replaced"
    assert "gateway session authenticated" in log and "Cookie: api=<redacted>" in log
    assert session_id not in log
    assert not [p for p in out.rglob("*") if p.is_file() and session_id.encode() in p.read_bytes()]
