"""Each fault of the simulated gateway, seen from a real TLS ``websockets`` client."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from recorder.sim import SimGateway, SimOptions
from recorder.sim.websocket import FULL_SPEED, PUMP_CHUNK, frames_due, pump_pause
from tests.test_sim_support import NO_HB, T, client_ssl, login, open_ws, recv_json, recv_until


def fast(**kw: object) -> SimOptions:
    base: dict[str, object] = {"seed": 1, "hb_interval": 0.1, "update_interval": 0.05}
    base.update(kw)
    return SimOptions(**base)  # type: ignore[arg-type]


def test_drop_connections_closes_without_a_close_frame() -> None:
    async def main() -> None:
        async with SimGateway(fast()) as gw, open_ws(gw) as ws:
            await login(ws)
            await gw.drop_connections()
            with pytest.raises(ConnectionClosedError) as info:
                for _ in range(100):
                    await recv_json(ws)
            assert info.value.rcvd is None  # no close frame came
            await gw.wait_for(lambda: gw.connections == 0, T)

    asyncio.run(main())


def test_stall_sends_nothing_on_old_sockets_but_new_ones_work() -> None:
    async def main() -> None:
        async with SimGateway(fast()) as gw, open_ws(gw) as old:
            await login(old)
            await recv_until(old, lambda f: "hb" in f)
            gw.stall(0.5)
            stalled_at = time.monotonic()
            async with open_ws(gw) as new:
                assert len(await login(new)) == 3
                await recv_until(new, lambda f: "hb" in f)
            while True:  # drain frames already in flight before the stall
                frame = await recv_json(old)
                if time.monotonic() - stalled_at > 0.1:
                    break
            assert time.monotonic() - stalled_at >= 0.45
            assert "hb" in frame and old.state.name == "OPEN"

    asyncio.run(main())


def test_a_close_is_answered_unless_the_gateway_ignores_closes() -> None:
    """A client's close gets the gateway's close back; after ``ignore_closes`` it gets none,
    frames keep coming, and the client ends up dropping the socket itself."""
    async def main() -> None:
        async with SimGateway(fast()) as gw:
            async with open_ws(gw) as ws:
                await login(ws)
                await ws.close()
                assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
            async with open_ws(gw) as ws:
                await login(ws)
                gw.ignore_closes()
                ws.close_timeout = 0.5
                started = time.monotonic()
                closing = asyncio.ensure_future(ws.close())
                hb = await recv_until(ws, lambda f: "hb" in f)  # still sending after the close
                await closing
                assert time.monotonic() - started >= 0.45
                assert hb and ws.protocol.close_rcvd is None  # none came: websockets dropped it
                await gw.wait_for(lambda: gw.connections == 0, T)

    asyncio.run(main())


def test_expire_session_sts_then_close_1000_and_rest_401_until_restored() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw, open_ws(gw) as ws:
            await login(ws)
            gw.expire_session()
            frames = [await recv_json(ws) for _ in range(3)]
            assert [f["args"] for f in frames] == [
                {"competing": False},
                {"message": ""},
                {"authenticated": False},
            ]
            with pytest.raises(ConnectionClosed) as info:
                await recv_json(ws)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1000
            for _ in range(2):  # every new connect closes 1000 at once
                async with open_ws(gw) as again:
                    with pytest.raises(ConnectionClosed) as info:
                        await recv_json(again)
                    assert info.value.rcvd is not None and info.value.rcvd.code == 1000
            assert gw.stats.ws_closes_1000 == 3
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_ssl(gw) or True)
            ) as http:
                async with http.post(gw.url + "/v1/api/iserver/auth/status") as r:
                    assert r.status == 401
                gw.restore_session()
                async with http.post(gw.url + "/v1/api/iserver/auth/status") as r:
                    assert r.status == 200 and (await r.json())["authenticated"] is True
            async with open_ws(gw) as back:
                assert len(await login(back)) == 3

    asyncio.run(main())


def test_compete_and_ssodh_init_with_compete_restores() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw, open_ws(gw) as ws:
            await login(ws)
            gw.compete()
            frames = [await recv_json(ws) for _ in range(3)]
            assert {"competing": True} in [f["args"] for f in frames]
            assert frames[-1]["args"] == {"authenticated": False}
            url = gw.url + "/v1/api/"
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_ssl(gw) or True)
            ) as http:
                async with http.get(url + "tickle") as r:
                    auth = (await r.json())["iserver"]["authStatus"]
                assert (auth["authenticated"], auth["competing"]) == (False, True)
                async with http.post(
                    url + "iserver/auth/ssodh/init", json={"publish": True, "compete": False}
                ) as r:
                    assert (await r.json())["authenticated"] is False
                async with http.post(
                    url + "iserver/auth/ssodh/init", json={"publish": True, "compete": True}
                ) as r:
                    assert (await r.json())["authenticated"] is True
            async with open_ws(gw) as back:
                assert len(await login(back)) == 3

    asyncio.run(main())


def test_maintenance_restores_itself() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw:
            gw.maintenance(0.3)
            async with open_ws(gw) as ws:
                with pytest.raises(ConnectionClosed):
                    await recv_json(ws)
            await gw.wait_for(lambda: gw.auth.value == "ok", T)
            async with open_ws(gw) as ws:
                assert len(await login(ws)) == 3

    asyncio.run(main())


def test_bad_utf8_and_malformed_frames_arrive_as_text_bytes() -> None:
    async def main() -> None:
        opts = fast(hb_interval=NO_HB, update_interval=5.0)
        async with SimGateway(opts) as gw, open_ws(gw) as ws:
            await login(ws)
            gw.send_bad_utf8()
            raw = await asyncio.wait_for(ws.recv(decode=False), T)
            assert isinstance(raw, bytes) and b"\x99" in raw
            gw.send_malformed()
            raw = await asyncio.wait_for(ws.recv(decode=False), T)
            assert raw == b'{"topic":"smd+265598","31":"271.5'
            assert [f.payload for f in gw.sent[-2:]][1] == raw

    asyncio.run(main())


def test_rate_and_burst_deliver_the_asked_number_of_frames() -> None:
    async def main() -> None:
        opts = fast(hb_interval=50.0, update_interval=50.0, record_traffic=False)
        async with SimGateway(opts) as gw, open_ws(gw) as ws:
            await login(ws)
            base = gw.stats.frames_sent
            gw.burst(500, 0.2)
            for _ in range(500):
                await recv_json(ws)
            assert gw.stats.frames_sent - base == 500 and gw.sent == []
            gw.set_rate(1000, seconds=0.3)
            got = 0
            with pytest.raises(TimeoutError):
                while True:
                    await recv_json(ws, wait=0.3)
                    got += 1
            assert 250 <= got <= 350

    asyncio.run(main())


def test_a_steady_pump_owes_one_frame_per_period_and_a_gridded_one_a_batch_per_line() -> None:
    # steady at 2,000/s: the first frame at once, then one every 0.5 ms
    assert [frames_due(t, 2000) for t in (0.0, 0.0004, 0.0005, 0.01, 1.0)] == [
        1, 1, 2, 21, 2001]
    assert pump_pause(0.0123, 2000) == 0.0005 and pump_pause(0.0, 10) == 0.005
    # on the 500 ms snapshot grid: 1,000 at once at 0, 0.5, 1.0 ...
    assert [frames_due(t, 2000, 0.5) for t in (0.0, 0.499, 0.5, 1.2)] == [
        1000, 1000, 2000, 3000]
    assert pump_pause(1.2, 2000, 0.5) == pytest.approx(0.3)
    assert frames_due(0.0, 1, 0.5) == 1  # a batch is never empty


def test_a_gridded_pump_sends_its_batch_at_once_then_waits_for_the_next_line() -> None:
    async def main() -> None:
        opts = fast(hb_interval=50.0, update_interval=50.0, record_traffic=False)
        async with SimGateway(opts) as gw, open_ws(gw) as ws:
            await login(ws)
            gw.set_rate(0.01, grid=1000.0)  # 10 frames now, the next 10 in 1,000 s
            topics = []
            with pytest.raises(TimeoutError):
                while True:  # until the socket is quiet for 0.3 s
                    topics.append((await recv_json(ws, wait=0.3)).get("topic"))
            gw.set_rate(0)
            pumped = [t for t in topics if t != "system"]  # not a heartbeat
            assert len(pumped) == 10, topics

    asyncio.run(main())


def test_full_speed_pump_lets_the_rest_of_the_simulator_run() -> None:
    """At a rate no socket reaches, the pump sends at most PUMP_CHUNK frames a socket between
    turns of the event loop, so another task (here one that only counts) keeps running."""

    async def main() -> None:
        opts = fast(hb_interval=50.0, update_interval=50.0, record_traffic=False)
        async with SimGateway(opts) as gw, open_ws(gw) as ws:
            await login(ws)
            steps: list[int] = []

            async def watch() -> None:
                last = gw.stats.frames_sent
                while True:
                    await asyncio.sleep(0)
                    steps.append(gw.stats.frames_sent - last)
                    last = gw.stats.frames_sent

            async def read() -> None:
                while True:
                    await ws.recv(decode=False)

            watcher, reader = asyncio.create_task(watch()), asyncio.create_task(read())
            base = gw.stats.frames_sent
            gw.set_rate(FULL_SPEED)
            await gw.wait_for(lambda: gw.stats.frames_sent - base >= 20_000, T)
            gw.set_rate(0)
            watcher.cancel()
            reader.cancel()
            await asyncio.gather(watcher, reader, return_exceptions=True)
            assert max(steps) <= PUMP_CHUNK, f"the pump sent {max(steps)} frames in one turn"

    asyncio.run(main())


def test_rotate_certificate_and_restart_on_same_port() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw:
            old = gw.cafile
            async with open_ws(gw) as ws:
                await login(ws)
                port = gw.port
                await gw.restart()
                with pytest.raises(ConnectionClosed):
                    for _ in range(100):
                        await recv_json(ws)
            assert gw.port == port
            gw.rotate_certificate()
            assert gw.cafile != old
            async with open_ws(gw) as ws:
                assert len(await login(ws)) == 3
                await ws.send('smd+265598+{"fields":["31"]}')
                assert (await recv_json(ws))["server_id"] == "q1"

    asyncio.run(main())
