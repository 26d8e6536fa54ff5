"""The simulated gateway over real TLS with a real ``websockets`` client: login, hb, tic, smd,
smh, sbd, sor, str, spl, and the REST session endpoints."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from recorder.sim import SimGateway, SimOptions
from tests.test_sim_support import NO_HB, T, client_ssl, login, open_ws, recv_json, recv_until


def fast(**kw: object) -> SimOptions:
    base: dict[str, object] = {"seed": 1, "hb_interval": 0.3, "update_interval": 0.05}
    base.update(kw)
    return SimOptions(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("cookie", ["plain", "json"])
def test_cookie_login_burst_in_order(cookie: str) -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw, open_ws(gw, cookie) as ws:
            system, act, sts = await login(ws)
            assert system == {
                "topic": "system",
                "success": "user1234",
                "isFT": False,
                "isPaper": True,
            }
            assert act["topic"] == "act" and act["args"]["accounts"] == ["DU1234567"]
            assert sts["topic"] == "sts" and sts["args"]["authenticated"] is True
            assert gw.url.startswith("https://127.0.0.1:") and gw.port > 0
            assert [f.topic for f in gw.sent] == ["system", "act", "sts"]

    asyncio.run(main())


def test_session_message_login_and_session_id_from_seed() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw, open_ws(gw, None) as ws:
            assert len(gw.session_id) == 32 and int(gw.session_id, 16) >= 0
            assert await recv_json(ws) == {"message": "waiting for session"}
            await ws.send(orjson.dumps({"session": gw.session_id}).decode())
            assert [f["topic"] for f in await login(ws)] == ["system", "act", "sts"]
            await ws.send(orjson.dumps({"session": gw.session_id}).decode())
            assert await recv_json(ws) == {"error": "Topic unknown '{\"s'", "code": 1}
            await ws.send("xyz+1")
            assert await recv_json(ws) == {"error": "Topic unknown 'xyz'", "code": 1}
        assert SimGateway(SimOptions(seed=1)).session_id == gw.session_id
        assert SimGateway(SimOptions(seed=2)).session_id != gw.session_id

    asyncio.run(main())


def test_heartbeats_share_a_gateway_wide_phase_and_tic_gets_four_replies() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=0.2)) as gw:
            async with open_ws(gw) as a, open_ws(gw) as b:
                await login(a)
                await login(b)
                hb_a = [(await recv_until(a, lambda f: "hb" in f))["hb"] for _ in range(3)]
                hb_b = (await recv_until(b, lambda f: "hb" in f))["hb"]
                assert {h % 200 for h in [*hb_a, hb_b]} == {1501 % 200}
                assert [y - x for x, y in zip(hb_a, hb_a[1:], strict=False)] == [200, 200]
                await a.send("tic")
                tics = [await recv_until(a, lambda f: f.get("topic") == "tic") for _ in range(4)]
                assert all(t == tics[0] for t in tics)
                assert tics[0]["id"] == gw.session_id and tics[0]["alive"] is True
                assert isinstance(tics[0]["lastAccessed"], int)
                assert gw.stats.tics_received == 1

    asyncio.run(main())


def test_smd_snapshot_twice_then_deltas_and_server_ids_survive_reconnect() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw:
            fields = ["31", "84", "86", "87", "83", "6509"]
            async with open_ws(gw) as ws:
                await login(ws)
                await ws.send("smd+265598+" + orjson.dumps({"fields": fields}).decode())
                await ws.send('smd+8314@NYSE+{"fields":["31"]}')
                first, second = await recv_json(ws), await recv_json(ws)
                assert first == second and list(first) != list(second)
                assert list(second)[-1] == "topic" and list(first)[2] == "topic"
                assert first["server_id"] == first["6119"] == "q1"
                ibm = await recv_json(ws)
                assert (
                    ibm["conidEx"] == "8314@NYSE"
                    and ibm["conid"] == 8314
                    and ibm["server_id"] == "q2"
                )
                await recv_json(ws)
                state = dict(second)
                for _ in range(6):
                    delta = await recv_until(ws, lambda f: f.get("conid") == 265598)
                    assert delta["_updated"] % 50 == 4 and delta["_updated"] > state["_updated"]
                    changed = {
                        k
                        for k in delta
                        if k
                        not in (
                            "server_id",
                            "conidEx",
                            "conid",
                            "_updated",
                            "6119",
                            "topic",
                            "6508",
                            "87_raw",
                        )
                    }
                    assert changed and changed <= set(fields)
                    assert all(delta[k] != state.get(k) for k in changed)
                    state.update(delta)
                assert gw.subscriptions() == {"smd+265598", "smd+8314@NYSE"}
                await ws.send("umd+265598+{}")
                await gw.wait_for(lambda: gw.subscriptions() == {"smd+8314@NYSE"}, T)
            async with open_ws(gw) as ws:
                await login(ws)
                await ws.send('smd+265598+{"fields":["31"]}')
                assert (await recv_json(ws))["server_id"] == "q3"

    asyncio.run(main())


def test_smd_stream_expires_unless_resent_where_a_resend_renews() -> None:
    async def main() -> None:
        async with (
            SimGateway(fast(hb_interval=NO_HB, smd_expiry_seconds=0.4,
                            smd_resend_renews=True)) as gw,
            open_ws(gw) as ws,
        ):
            await login(ws)
            await ws.send('smd+265598+{"fields":["31","84","86"]}')
            await gw.wait_for(lambda: gw.subscriptions() == {"smd+265598"}, T)
            await asyncio.sleep(0.25)
            await ws.send('smd+265598+{"fields":["31","84","86"]}')  # restarts the expiry
            await asyncio.sleep(0.25)
            assert gw.subscriptions() == {"smd+265598"}
            await gw.wait_for(lambda: gw.subscriptions() == set(), T)
            count = len(gw.sent)
            await asyncio.sleep(0.2)
            assert all(not (f.topic or "").startswith("smd") for f in gw.sent[count:])

    asyncio.run(main())


def _smd_sent(gw: SimGateway) -> int:
    return sum((f.topic or "").startswith("smd") for f in gw.sent)


def test_smd_resend_neither_renews_nor_revives_but_umd_then_smd_does() -> None:
    async def main() -> None:
        async with (
            SimGateway(fast(hb_interval=NO_HB, smd_expiry_seconds=0.4)) as gw,
            open_ws(gw) as ws,
        ):
            await login(ws)
            await ws.send('smd+265598+{"fields":["31"]}')
            await gw.wait_for(lambda: gw.subscriptions() == {"smd+265598"}, T)
            await asyncio.sleep(0.2)
            await ws.send('smd+265598+{"fields":["31","84"]}')  # adds a field, same clock
            await gw.wait_for(lambda: gw.subscriptions() == set(), T)
            assert len(gw.subscriptions()) == 0
            count = _smd_sent(gw)
            await ws.send('smd+265598+{"fields":["31"]}')  # on an ended stream: nothing
            await asyncio.sleep(0.3)
            assert _smd_sent(gw) == count and gw.subscriptions() == set()
            await ws.send("umd+265598+{}")
            await ws.send('smd+265598+{"fields":["31"]}')
            await gw.wait_for(lambda: gw.subscriptions() == {"smd+265598"}, T)
            snapshot = [orjson.loads(f.payload) for f in gw.sent[-2:]]
            assert [sorted(k for k in f if k.isdigit() and k != "6119") for f in snapshot] \
                == [["31"], ["31"]], "umd forgot the fields the old subscription had"
            await gw.wait_for(lambda: _smd_sent(gw) > count + 2, T)  # and it streams again

    asyncio.run(main())


async def recv_reply(ws: ClientConnection, wait: float = T) -> dict[str, Any]:
    """The next frame that is not a heartbeat: ``hb`` frames sit on a wall-clock grid, so one
    may fall inside any test's window."""
    async with asyncio.timeout(wait):
        while True:
            frame = await recv_json(ws, wait)
            if not (frame.get("topic") == "system" and "hb" in frame):
                return frame


@pytest.mark.parametrize("over", ["silent", "error"])
def test_smh_answers_with_server_id_and_holds_five_slots(over: str) -> None:
    async def main() -> None:
        async with (
            SimGateway(fast(hb_interval=NO_HB, update_interval=5.0, smh_over_limit=over)) as gw,
            open_ws(gw) as ws,
        ):
            await login(ws)
            req = (
                '{"period":"1h","bar":"5min","source":"trades",'
                '"format":"%o/%c/%h/%l/%v","outsideRth":false}'
            )
            ids = []
            for _ in range(5):
                await ws.send("smh+265598+" + req)
                answer = await recv_reply(ws)
                assert answer["topic"] == "smh+265598" and answer["payload"] == req
                assert isinstance(answer["serverId"], str)
                assert [list(b) for b in answer["data"]][0] == ["o", "c", "h", "l", "v"]
                ids.append(answer["serverId"])
            assert len(set(ids)) == 5 and gw.stats.smh_open == 5
            await ws.send("smh+265598+" + req)
            if over == "error":
                err = await recv_reply(ws)
                assert "topic" not in err and "error" in err
            else:
                with pytest.raises(TimeoutError):
                    await recv_reply(ws, wait=0.3)
            await ws.send("umh+" + ids[0])
            await ws.send("smh+265598+" + req)
            assert (await recv_reply(ws))["serverId"] not in ids
            assert gw.stats.smh_open_max == 5 and gw.stats.smh_answers == 6
            assert gw.stats.smh_requests == 7 and gw.stats.umh_received == 1

    asyncio.run(main())


def test_sbd_sor_str_spl_and_bulletins() -> None:
    async def main() -> None:
        opts = fast(hb_interval=NO_HB, orders_every_ticks=2, bulletin_every_ticks=3)
        async with SimGateway(opts) as gw, open_ws(gw) as ws:
            await login(ws)
            await ws.send("sbd+DU1234567+265598+NASDAQ")
            book = await recv_json(ws)
            assert book["topic"] == "sbd+DU1234567+265598" and len(book["data"]) == 11
            await ws.send("str+{}")
            # the book keeps updating on every tick: its frames may come between str's

            def is_str(f: dict) -> bool:
                return f.get("topic") == "str"

            assert await recv_until(ws, is_str) == {"topic": "str", "args": []}
            a, b = await recv_until(ws, is_str), await recv_until(ws, is_str)
            assert a["args"][0]["execution_id"] == b["args"][0]["execution_id"]
            assert "commission" not in a["args"][0] and "commission" in b["args"][0]
            await ws.send("sor+{}")
            await ws.send("spl+{}")
            await recv_until(ws, lambda f: f.get("topic") == "spl")
            statuses = set()
            while "Filled" not in statuses or "Cancelled" not in statuses:
                f = await recv_until(ws, lambda f: f.get("topic") == "sor")
                statuses.add(f["args"][0].get("status"))
            await recv_until(ws, lambda f: f.get("topic") == "blt")
            assert gw.subscriptions() == {"sbd+DU1234567+265598+NASDAQ", "sor", "str", "spl"}
            await ws.send("ubd+DU1234567")
            await ws.send("utr")
            await gw.wait_for(lambda: gw.subscriptions() == {"sor", "spl"}, T)

    asyncio.run(main())


def test_rest_session_endpoints_and_401_when_expired() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw:
            conn = aiohttp.TCPConnector(ssl=client_ssl(gw) or True)
            async with aiohttp.ClientSession(gw.url + "/v1/api/", connector=conn) as http:
                async with http.get("tickle") as r:
                    body = await r.json()
                assert body["session"] == gw.session_id
                assert list(body) == [
                    "session",
                    "ssoExpires",
                    "collission",
                    "userId",
                    "hmds",
                    "iserver",
                ]
                assert body["iserver"]["authStatus"]["authenticated"] is True
                for method, path in [("POST", "iserver/auth/status"), ("GET", "sso/validate")]:
                    async with http.request(method, path) as r:
                        assert r.status == 200
                gw.expire_session()
                async with http.post("iserver/auth/status") as r:
                    assert r.status == 401
                async with http.get("tickle") as r:
                    assert (await r.json())["iserver"]["authStatus"]["authenticated"] is False
                async with http.post("iserver/reauthenticate") as r:
                    assert r.status == 200
                async with http.post("iserver/auth/status") as r:
                    assert (await r.json())["authenticated"] is True
                gw.rest_fault(429, 2)
                for _ in range(2):
                    async with http.get("tickle") as r:
                        assert r.status == 429
                async with http.post("logout") as r:
                    assert await r.json() == {"status": True}
                async with http.get("sso/validate") as r:
                    assert r.status == 401
                async with http.post(
                    "iserver/auth/ssodh/init", json={"publish": True, "compete": True}
                ) as r:
                    assert (await r.json())["authenticated"] is True
            s = gw.stats
            assert (s.tickle_calls, s.auth_status_calls, s.validate_calls) == (4, 3, 2)
            assert (s.reauthenticate_calls, s.logout_calls, s.ssodh_init_calls) == (1, 1, 1)
            assert s.rest_calls == 12

    asyncio.run(main())


def test_plain_http_without_tls() -> None:
    async def main() -> None:
        async with SimGateway(fast(tls=False, hb_interval=NO_HB)) as gw, open_ws(gw) as ws:
            assert gw.cafile is None and gw.ws_url.startswith("ws://127.0.0.1:")
            assert len(await login(ws)) == 3

    asyncio.run(main())


def test_tls_verifies_with_cafile_and_refuses_without() -> None:
    async def main() -> None:
        async with SimGateway(fast(hb_interval=NO_HB)) as gw:
            from websockets.asyncio.client import connect

            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(gw.ws_url, ssl=ssl.create_default_context(), open_timeout=T):
                    pass
            async with open_ws(gw) as ws:
                assert len(await login(ws)) == 3

    asyncio.run(main())
