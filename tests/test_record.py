"""``recorder record`` end to end: the real recorder against the simulated gateway over TLS.

Each test reads back what the recorder published (Parquet, through DuckDB) and compares it
with what the simulator says it sent or received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

import recorder
from recorder.config import SbdRequest, SmhRequest
from recorder.frames import Frame
from recorder.normalizer import normalize
from recorder.recover import RecoveryReport
from recorder.runner import Recorder
from recorder.sim import SimGateway, SimOptions
from recorder.sim.websocket import FULL_SPEED
from recorder.status import StatusReporter
from recorder.storage import Storage
from tests.faults_support import events
from tests.recording import logging_restored, make_config, record_while, sim_frames_in, timeout
from tests.storage_frames import rows


def raw_rows(out: Path) -> list[tuple[int, int, str, bytes]]:
    return [
        (conn, seq, direction, bytes(payload))
        for conn, seq, direction, payload in rows(
            f"SELECT conn_id, seq, direction, payload FROM read_parquet('{out}/raw/**/*.parquet')"
            " ORDER BY seq"
        )
    ]


def event_kinds(out: Path) -> list[str]:
    return [k for (k,) in rows(
        f"SELECT kind FROM read_parquet('{out}/events/**/*.parquet') ORDER BY seq")]


def test_all_six_topics_flow_byte_exact(tmp_path: Path) -> None:
    async def main() -> None:
        async with SimGateway(SimOptions(seed=7, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(
                gw, tmp_path,
                smh=(SmhRequest(conid=265598),),
                sbd=(SbdRequest(account="DU1234567", conid=265598),),
                orders=True, trades=True, pnl=True,
            )

            async def scenario(rec: Recorder) -> None:
                wanted = {"smd+265598", "smd+8314", "sbd+DU1234567+265598", "sor", "str", "spl"}
                await gw.wait_for(lambda: wanted <= gw.subscriptions(), timeout(10))
                await gw.wait_for(lambda: gw.stats.umh_received >= 1, timeout(10))
                topics = {"smd", "smh", "sbd", "sor", "str", "spl"}
                await gw.wait_for(
                    lambda: topics <= {(f.topic or "").split("+")[0] for f in gw.sent},
                    timeout(10))

            await record_while(config, scenario)
            sent = sim_frames_in(gw)
            first_unsub = min(
                (r.ts_ns for r in gw.received if r.payload.startswith((b"umd", b"uor", b"upl"))),
                default=None)
            assert first_unsub is not None, "the recorder never unsubscribed at stop"
            late = sum(1 for f in gw.sent if f.ts_ns >= first_unsub)

        recorded = raw_rows(tmp_path)
        received = [payload for _, _, direction, payload in recorded if direction == "in"]
        assert received == [payload for _, payload in sent[: len(received)]]
        assert len(sent) - len(received) <= late
        recorded_topics = {t for (t,) in rows(
            "SELECT DISTINCT split_part(topic, '+', 1)"
            f" FROM read_parquet('{tmp_path}/raw/**/*.parquet') WHERE direction = 'in'")}
        assert {"smd", "smh", "sbd", "sor", "str", "spl", "system", "act", "sts"} <= recorded_topics
        sent_out = [p for _, _, d, p in recorded if d == "out"]
        assert b"sor+{}" in sent_out and b"spl+{}" in sent_out
        assert any(p.startswith(b"umh+") for p in sent_out)

    asyncio.run(main())


def _smd_arrivals(gw: SimGateway) -> list[int]:
    return [f.ts_ns for f in gw.sent if (f.topic or "").startswith("smd+")]


def test_smd_refresh_outlives_expiry_and_its_absence_does_not(tmp_path: Path) -> None:
    """The sim's streams end silently at expiry, and a plain re-send neither renews nor
    revives them (as real gateways, by a public client's report): the refresh's umd then smd
    must keep quotes flowing."""
    expiry = 1.0

    async def run(refresh: float, out: Path) -> tuple[list[bytes], int]:
        async with SimGateway(SimOptions(seed=3, hb_interval=0.5, update_interval=0.1,
                                         smd_expiry_seconds=expiry)) as gw:
            config = make_config(gw, out, smd=("265598",), smd_refresh_seconds=refresh)
            tail: list[int] = []

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 1, timeout(10))
                await asyncio.sleep(expiry * 3.5)  # several expiry periods, on the sim's clock
                count0 = len(_smd_arrivals(gw))
                await asyncio.sleep(expiry * 1.5)
                tail.append(len(_smd_arrivals(gw)) - count0)

            await record_while(config, scenario)
            return [f.payload[:4] for f in gw.received if f.payload[1:3] == b"md"], tail[0]

    async def main() -> None:
        sent, flowing = await run(refresh=expiry * 0.6, out=tmp_path / "refresh")
        refreshes = len(sent) // 2 - 1  # less the first smd and the stop's umd
        assert refreshes >= 3 and sent == [b"smd+"] + [b"umd+", b"smd+"] * refreshes \
            + [b"umd+"], "each refresh is umd, then smd"
        assert flowing > 0, "quotes still flow after several expiry periods"
        sent, flowing = await run(refresh=899.0, out=tmp_path / "norefresh")
        assert sent == [b"smd+", b"umd+"]
        assert flowing == 0, "without refresh the stream ends at expiry"

    asyncio.run(main())


def _events(out: Path, kind: str) -> list[Any]:
    return [detail for k, detail in events(out) if k == kind]


def test_each_socket_lists_the_day_orders_and_a_failed_list_costs_nothing_else(
        tmp_path: Path) -> None:
    """sor sends only changes: every logged-in socket also asks REST for the day's orders
    (an order resting since before the run has a whole row only there). A list that fails is
    a rest_error event; the recording goes on, and the next socket asks again."""
    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, update_interval=0.1,
                                         orders_every_ticks=3)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",), orders=True)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.orders_calls == 1, timeout(10))
                gw.rest_fault(500, 1, "/iserver/account/orders")
                await gw.drop_connections()
                await gw.wait_for(lambda: gw.stats.ws_logins == 2 and gw.stats.rest_faults == 1,
                                  timeout(10))
                sor = sum(1 for f in gw.sent if f.topic == "sor")
                await gw.wait_for(lambda: sum(1 for f in gw.sent if f.topic == "sor") > sor,
                                  timeout(10))
                await gw.drop_connections()
                await gw.wait_for(lambda: gw.stats.ws_logins == 3 and gw.stats.orders_calls == 3,
                                  timeout(10))

            await record_while(config, scenario)
            assert gw.stats.orders_calls == 3  # once per logged-in socket

    asyncio.run(main())
    lists = _events(tmp_path, "orders_snapshot")
    assert len(lists) == 2  # the first socket's and the third's
    assert all(isinstance(d, dict) and d["snapshot"] is True for d in lists)
    assert [d["path"] for d in _events(tmp_path, "rest_error")
            ] == ["/iserver/account/orders"]
    con = recorder.open(tmp_path)
    (later,) = con.sql("SELECT count(*) FROM orders WHERE snapshot AND seq = (SELECT max(seq) "
                       "FROM events WHERE kind = 'orders_snapshot')").fetchall()[0]
    assert later == len(lists[1]["orders"]) > len(lists[0]["orders"])


def test_a_socket_that_logs_in_while_a_list_waits_gets_its_own_list(tmp_path: Path) -> None:
    """IBKR paces /iserver/account/orders at one call per 5 s, so the second socket's list
    waits, holding no other REST call back: the session check before the third socket goes
    on, so it logs in meanwhile. Its list comes after the one on its way."""
    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",), orders=True)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.orders_calls == 1, timeout(10))
                for logins in (2, 3):
                    await gw.drop_connections()
                    await gw.wait_for(lambda: gw.stats.ws_logins == logins, timeout(10))  # noqa: B023
                assert gw.stats.orders_calls == 1, "the second list waits for its pacing slot"
                await gw.wait_for(lambda: gw.stats.orders_calls == 3, timeout(15))

            await record_while(config, scenario)

    asyncio.run(main())
    assert len(_events(tmp_path, "orders_snapshot")) == 3


def test_tic_and_tickle_on_schedule(tmp_path: Path) -> None:
    async def main() -> None:
        async with SimGateway(SimOptions(seed=1, hb_interval=0.5, update_interval=0.2)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",), tic_seconds=0.4, tickle_seconds=0.5)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 1, timeout(10))
                tics0, tickles0 = gw.stats.tics_received, gw.stats.tickle_calls
                await asyncio.sleep(2.0)
                tics.append(gw.stats.tics_received - tics0)
                tickles.append(gw.stats.tickle_calls - tickles0)

            tics: list[int] = []
            tickles: list[int] = []
            await record_while(config, scenario)
            tic_times = [r.ts_ns for r in gw.received if r.payload == b"tic"]
        # 2 s at one tic per 0.4 s and one tickle per 0.5 s (paced at 1/s by IBKR's table)
        assert 3 <= tics[0] <= 7
        assert 1 <= tickles[0] <= 3
        gaps = [(b - a) / 1e9 for a, b in zip(tic_times, tic_times[1:], strict=False)]
        assert all(0.3 <= g <= 1.0 for g in gaps), gaps

    asyncio.run(main())


def test_twelve_smh_through_five_slots(tmp_path: Path) -> None:
    conids = [265598 + i for i in range(12)]

    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, update_interval=0.2)) as gw:
            config = make_config(gw, tmp_path, smd=(),
                                 smh=tuple(SmhRequest(conid=c) for c in conids))

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(
                    lambda: gw.stats.smh_answers >= 12 and gw.stats.umh_received >= 12, timeout(15))

            await record_while(config, scenario)
            assert gw.stats.smh_requests == 12
            assert gw.stats.smh_open_max <= 5
            server_ids = {f.payload for f in gw.sent if (f.topic or "").startswith("smh+")}
            assert len(server_ids) >= 12
            umh = sorted(r.payload for r in gw.received if r.payload.startswith(b"umh+"))
            assert len(umh) == 12 and len(set(umh)) == 12

    asyncio.run(main())


def test_unanswered_smh_frees_its_slot_after_timeout(tmp_path: Path) -> None:
    """A gateway that answers only 4 at once stays silent to the recorder's 5th request: that
    slot is freed after smh_timeout_seconds; every other request is answered."""

    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, smh_over_limit="silent",
                                         smh_max_concurrent=4)) as gw:
            config = make_config(gw, tmp_path, smd=(), smh_timeout_seconds=0.5,
                                 smh=tuple(SmhRequest(conid=265598 + i) for i in range(6)))

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.smh_answers >= 5, timeout(10))
                assert rec.multiplexer is not None
                mux = rec.multiplexer
                await gw.wait_for(lambda: mux.smh_open == 0, timeout(5))

            await record_while(config, scenario)
            answered = {f.topic for f in gw.sent if (f.topic or "").startswith("smh+")}
        smh = rows(f"SELECT kind, topic, detail FROM read_parquet("
                   f"'{tmp_path}/events/**/*.parquet') WHERE kind LIKE 'smh_%' ORDER BY seq")
        requested = {topic for kind, topic, _ in smh if kind == "smh_request"}
        [(silent, detail)] = [(t, d) for kind, t, d in smh if kind == "smh_timeout"]
        assert len(requested) == 6 and len(answered) == 5 and silent not in answered
        # the silent request held its slot for the whole timeout, not less: on the clock the
        # slots are timed by (the events' wall-clock stamps are taken after the send, and
        # made this 22 us short once)
        assert orjson.loads(detail)["waited_seconds"] >= 0.5

    asyncio.run(main())


def test_no_seq_is_lost_when_storage_is_always_full(tmp_path: Path) -> None:
    """Frames (in and out) and the recorder's own events draw from one seq counter, so every
    seq from 1 on must be in ``raw`` or ``events``: a missing one is a lost frame or event.
    A one-frame queue is full nearly whenever the recorder emits an event, which then waits
    in the runner's pending line instead of going straight in."""
    out = tmp_path / "out"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=3, hb_interval=0.2, update_interval=0.02)) as gw:
            config = make_config(gw, out, orders=True, trades=True, pnl=True)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: len(gw.sent) >= 400, timeout(10))

            await record_while(config, scenario, queue_max=1)

    asyncio.run(main())
    seqs = {s for (s,) in rows(
        f"SELECT seq FROM read_parquet('{out}/raw/**/*.parquet') UNION "
        f"SELECT seq FROM read_parquet('{out}/events/**/*.parquet')")}
    assert seqs == set(range(1, max(seqs) + 1))
    kinds = event_kinds(out)
    assert kinds[0] == "start" and "auth_ok" in kinds and "stop" in kinds[-3:]


def test_a_clean_stop_records_every_frame_storage_was_behind_on(tmp_path: Path) -> None:
    """SPEC §7: a clean stop loses nothing. The simulator sends at full speed into a storage
    slowed to 5,000 frames/s, so at the stop thousands of frames wait unread in the socket's
    buffers, ahead of the gateway's answer to the close: the stop reads them all."""

    def slow_normalize(frames: Sequence[Frame]) -> dict[str, pa.Table]:
        time.sleep(len(frames) / 5_000)  # a slow disk, in storage's own thread
        return normalize(frames)

    behind = 0

    async def main() -> None:
        nonlocal behind
        async with SimGateway(SimOptions(seed=7, hb_interval=0.5)) as gw:
            config = make_config(gw, tmp_path)

            async def scenario(rec: Recorder) -> None:
                nonlocal behind
                mux = rec.multiplexer
                assert mux is not None
                await gw.wait_for(lambda: mux.authenticated, timeout(10))
                gw.set_rate(FULL_SPEED)
                await gw.wait_for(lambda: len(gw.sent) - mux.frames_in >= 5_000, timeout(20))
                behind = len(gw.sent) - mux.frames_in

            summary = await record_while(
                config, scenario, storage=lambda o, r: Storage(o, r, normalize=slow_normalize))
            sent = sim_frames_in(gw)
            assert summary.storage.full_waits > 0

        received = [payload for _, _, direction, payload in raw_rows(tmp_path)
                    if direction == "in"]
        # the same frames, each once; not compared in order, since the simulator's list
        # orders two of its tasks' concurrent sends (heartbeat, load) as they were queued
        assert behind >= 5_000 and len(received) == len(sent)
        assert Counter(received) == Counter(payload for _, payload in sent)
        assert "close_timeout" not in event_kinds(tmp_path)

    asyncio.run(main())


def test_a_second_run_in_the_folder_continues_its_seq_and_conn_id(tmp_path: Path) -> None:
    """Two runs into one folder: every frame of the day has its own seq, the second run's
    following the first's, so a row joins its raw frame on seq alone."""

    async def main() -> None:
        async with SimGateway(SimOptions(seed=3, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",))

            async def scenario(rec: Recorder) -> None:
                frames = len(gw.sent)
                await gw.wait_for(lambda: len(gw.sent) >= frames + 5, timeout(10))

            for _ in range(2):
                await record_while(config, scenario)

    asyncio.run(main())
    frames = rows(  # a frame the gateway sent unasked (sts, system…) is in both tables
        "SELECT DISTINCT seq, conn_id, recv_ts FROM ("
        f"SELECT seq, conn_id, recv_ts FROM read_parquet('{tmp_path}/raw/**/*.parquet') UNION "
        f"ALL SELECT seq, conn_id, recv_ts FROM read_parquet('{tmp_path}/events/**/*.parquet')"
        ") ORDER BY seq")
    seqs = [seq for seq, _, _ in frames]
    assert seqs == list(range(1, len(seqs) + 1))
    conns = [conn for _, conn, _ in frames]
    assert conns == sorted(conns) and conns[-1] == 2 and conns.count(2) > 5
    joined = rows(f"SELECT count(*) FROM read_parquet('{tmp_path}/market_data/**/*.parquet') m "
                  f"JOIN read_parquet('{tmp_path}/raw/**/*.parquet') r USING (seq)")
    quotes = rows(f"SELECT count(*) FROM read_parquet('{tmp_path}/market_data/**/*.parquet')")
    assert joined == quotes


def test_the_status_line_shows_the_age_of_the_gateway_heartbeat(tmp_path: Path) -> None:
    """Quotes arrive every 0.1 s, the gateway's heartbeat every 3 s: the status line shows
    how long ago the heartbeat came (SPEC §3), not the last frame."""
    screen = io.StringIO()
    status = StatusReporter(screen, tty=True, columns=lambda: 1000)
    status.interval = 0.05

    def lines() -> list[str]:
        return [line.strip() for line in screen.getvalue().split("\r") if line.strip()]

    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=3.0, update_interval=0.1)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",), heartbeat_timeout_seconds=10.0)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: any(line.endswith("| heartbeat 2s ago")
                                              for line in lines()), timeout(10))
                await gw.wait_for(lambda: lines()[-1].endswith("| heartbeat 0s ago"),
                                  timeout(10))

            await record_while(config, scenario, status=status)

    asyncio.run(main())
    assert any("smd " in line and "/s" in line for line in lines())


def test_until_stops_at_its_time_of_day_however_long_recovery_took(tmp_path: Path) -> None:
    """--until 10:00 is a time of day. A recovery that took an hour (both clocks jump while it
    runs) leaves 2 s to record; the wait used to subtract the hour again and stop at once."""
    zone = ZoneInfo("America/New_York")
    base = dt.datetime(2026, 11, 20, 8, 59, 58, tzinfo=zone).timestamp()  # 10:00 is 1 h 2 s off
    start = time.monotonic()
    jumped = 0.0

    def clock() -> float:
        return time.monotonic() + jumped

    def wall() -> float:
        return base + (time.monotonic() - start) + jumped

    class HourLongRecovery(Storage):
        async def recover(self) -> RecoveryReport:
            nonlocal jumped
            report = await super().recover()
            jumped += 3600.0
            return report

    async def main() -> None:
        async with SimGateway(SimOptions(seed=3)) as gw:
            config = dataclasses.replace(make_config(gw, tmp_path), until=dt.time(10, 0))
            with logging_restored():
                summary = await Recorder(config, clock=clock, wall=wall,
                                         storage=HourLongRecovery).run()
            assert summary.stopped_by == "until"
            stopped = dt.datetime.fromtimestamp(wall(), zone)
            assert stopped >= dt.datetime(2026, 11, 20, 9, 59, 59, 900_000, tzinfo=zone), stopped

    asyncio.run(main())
