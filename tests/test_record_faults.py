"""Every gateway fault of SPEC §5, survived: the recorder reconnects or carries on, and all
subscriptions are active again afterwards. The process never exits for any of them."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from recorder.connection import CLOSE_WAIT_SECONDS
from recorder.runner import Recorder
from recorder.sim import SimGateway, SimOptions, encode
from recorder.sim.options import LoginBurst
from tests.faults_support import events
from tests.recording import make_config, record_while, timeout
from tests.storage_frames import rows

WANTED = {"smd+265598", "sor", "spl"}


def kinds(out: Path) -> list[str]:
    return [k for (k,) in rows(
        f"SELECT kind FROM read_parquet('{out}/events/**/*.parquet') ORDER BY seq")]


async def survive(
    tmp_path: Path,
    fault: Callable[[SimGateway], Awaitable[None]],
    *,
    compete: bool = False,
    expect_reconnect: bool = True,
    login_burst: LoginBurst = "always",
    **session: Any,
) -> tuple[SimGateway, list[str]]:
    async with SimGateway(SimOptions(seed=11, hb_interval=0.5, update_interval=0.1,
                                     login_burst=login_burst)) as gw:
        config = make_config(gw, tmp_path, smd=("265598",), orders=True, pnl=True, compete=compete,
                             **session)

        async def scenario(rec: Recorder) -> None:
            await gw.wait_for(lambda: WANTED <= gw.subscriptions(), timeout(10))
            # the socket's list of the day's orders is answered (the sim counts a call as it
            # decides its status), so the fault does not meet it
            await gw.wait_for(lambda: gw.stats.orders_calls >= 1, timeout(10))
            connects = gw.stats.ws_connects
            await fault(gw)
            if expect_reconnect:
                await gw.wait_for(lambda: gw.stats.ws_connects > connects, timeout(15))
            await gw.wait_for(lambda: WANTED <= gw.subscriptions(), timeout(15))
            # and quotes flow again on the live connection
            before = sum(1 for f in gw.sent if (f.topic or "").startswith("smd+"))
            await gw.wait_for(
                lambda: sum(1 for f in gw.sent if (f.topic or "").startswith("smd+")) > before + 2,
                timeout(10))

        await record_while(config, scenario)
    return gw, kinds(tmp_path)


async def drop(gw: SimGateway) -> None:
    await gw.drop_connections()


async def stall(gw: SimGateway) -> None:
    gw.stall(30.0)


async def expire_then_restore(gw: SimGateway) -> None:
    connects, tickles = gw.stats.ws_connects, gw.stats.tickle_calls
    gw.expire_session()
    await gw.wait_for(lambda: gw.stats.ws_closes_1000 >= 1, timeout(10))
    # the recorder notices, and polls REST instead of hammering the socket's close-1000 loop
    await gw.wait_for(lambda: gw.stats.tickle_calls >= tickles + 2, timeout(10))
    assert gw.stats.ws_connects <= connects + 1
    gw.restore_session()


async def maintenance(gw: SimGateway) -> None:
    gw.maintenance(1.5)


async def restart(gw: SimGateway) -> None:
    await gw.restart()


@pytest.mark.parametrize(
    ("fault", "event"),
    [(drop, "disconnect"), (stall, "heartbeat_timeout"), (expire_then_restore, "auth_lost"),
     (maintenance, "auth_lost"), (restart, "disconnect")],
    ids=["drop", "stall", "expiry-close-1000-loop", "maintenance", "gateway-restart"],
)
def test_fault_is_survived(tmp_path: Path, fault: Callable[[SimGateway], Awaitable[None]],
                           event: str) -> None:
    gw, recorded = asyncio.run(survive(tmp_path, fault))
    assert event in recorded
    assert recorded.count("connect") >= 2


@pytest.mark.parametrize("inject", ["send_bad_utf8", "send_malformed"])
def test_bad_bytes_do_not_drop_the_connection(tmp_path: Path, inject: str) -> None:
    async def fault(gw: SimGateway) -> None:
        getattr(gw, inject)()
        await asyncio.sleep(0.3)

    gw, recorded = asyncio.run(survive(tmp_path, fault, expect_reconnect=False))
    assert gw.stats.ws_connects == 1, "the bad frame must not cost a reconnect"
    assert recorded.count("connect") == 1
    raw = [bytes(p) for (p,) in rows(
        f"SELECT payload FROM read_parquet('{tmp_path}/raw/**/*.parquet') WHERE direction='in'"
    )]
    if inject == "send_bad_utf8":
        assert any(b"\x99" in p for p in raw), "the non-UTF-8 frame is kept byte for byte"
    assert "malformed" in recorded or inject == "send_bad_utf8"


def _waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("gateway session not authenticated")]


def test_competing_session_waits_without_compete(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The wait says what to do about it, once (the message gave no hint)."""
    caplog.set_level(logging.INFO, logger="recorder")

    async def fault(gw: SimGateway) -> None:
        gw.compete()
        await asyncio.sleep(1.0)
        tickles = gw.stats.tickle_calls  # and two polls more, after the reconnect backoff
        await gw.wait_for(lambda: gw.stats.tickle_calls >= tickles + 2, timeout(15))
        assert gw.stats.ssodh_init_calls == 0, "compete = false never takes the session"
        gw.restore_session()

    gw, recorded = asyncio.run(survive(tmp_path, fault, tickle_seconds=1.0))
    assert gw.stats.ssodh_init_calls == 0
    assert "auth_lost" in recorded
    [waiting] = _waiting_lines(caplog)
    assert waiting.endswith(
        "; waiting: another login holds the brokerage session (TWS, the mobile app, another "
        "gateway): log it out, or set compete = true under [session] to take the session over")


def test_competing_session_taken_back_with_compete(tmp_path: Path) -> None:
    async def fault(gw: SimGateway) -> None:
        gw.compete()

    gw, recorded = asyncio.run(survive(tmp_path, fault, compete=True))
    assert gw.stats.ssodh_init_calls >= 1


@pytest.mark.parametrize("lose", ["expire_session", "time_out_session"],
                         ids=["expired", "gateway-timed-out"])
def test_a_lost_session_is_taken_back_with_compete(tmp_path: Path, lose: str) -> None:
    """The session expires: ``/tickle`` says unauthenticated and ``/iserver/auth/status``
    answers 401, as a gateway does then. Or the gateway's own session times out and every
    endpoint answers 401, ``/tickle`` too (seed 003). Either 401 is a "not authenticated", not
    a REST failure to back off on: with ``compete = true`` the recorder goes on to ssodh/init,
    which takes the session back, and streams again without anyone restoring it by hand."""

    async def fault(gw: SimGateway) -> None:
        getattr(gw, lose)()

    gw, recorded = asyncio.run(survive(tmp_path, fault, compete=True))
    assert gw.stats.ssodh_init_calls >= 1
    assert "auth_lost" in recorded


def test_a_timed_out_session_is_waited_for_at_the_tickle_period(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without ``compete`` the recorder waits for a person to log in again, asking REST at
    least every ``tickle_seconds`` however long the reconnect backoff has grown, since those
    calls are what keeps the gateway's session alive meanwhile. It says where to log in, once
    for all those polls."""
    caplog.set_level(logging.INFO, logger="recorder")
    url = ""

    async def fault(gw: SimGateway) -> None:
        nonlocal url
        url = gw.url
        gw.time_out_session()
        await gw.wait_for(lambda: gw.stats.ws_closes_1000 >= 1, timeout(10))
        tickles = gw.stats.tickle_calls
        await asyncio.sleep(4.5)
        assert gw.stats.tickle_calls - tickles >= 4, (
            f"{gw.stats.tickle_calls - tickles} tickles in 4.5 s with tickle_seconds = 1")
        assert gw.stats.ssodh_init_calls == 0
        gw.restore_session()

    gw, recorded = asyncio.run(survive(tmp_path, fault, tickle_seconds=1.0,
                                       reconnect_min_seconds=3.0, reconnect_max_seconds=6.0))
    assert "auth_lost" in recorded
    waiting = _waiting_lines(caplog)
    assert len(waiting) == 1, waiting
    assert waiting[0].endswith(f"; waiting: log in at {url} in a browser; recording starts "
                               "once the session is authenticated")


def test_a_certificate_that_stops_verifying_mid_run_is_retried_not_fatal(tmp_path: Path) -> None:
    """Only a certificate that fails before the gateway ever answered ends the run (a wrong
    cafile, see test_record_cli): once recording, the recorder never exits for the gateway,
    so a new certificate the pinned cafile refuses is retried, and the run stops on its own
    terms."""

    async def main() -> tuple[Any, list[tuple[str, Any]]]:
        async with SimGateway(SimOptions(seed=11, hb_interval=0.5)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",))

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: "smd+265598" in gw.subscriptions(), timeout(10))
                gw.rotate_certificate()
                await gw.restart()  # REST's kept-alive connection too: every call sees it
                keeper = rec.session
                assert keeper is not None
                errors = keeper.rest_errors
                await gw.wait_for(lambda: keeper.rest_errors >= errors + 3, timeout(15))

            summary = await record_while(config, scenario)
        return summary, events(tmp_path)

    summary, recorded = asyncio.run(main())
    assert (summary.stopped_by, summary.config_error) == ("signal", None)
    untrusted = [d for k, d in recorded
                 if k == "rest_error" and "TLS certificate not trusted" in d["error"]]
    assert len(untrusted) >= 3, recorded
    assert recorded[-1] == ("stop", {"reason": "signal"})


def test_a_restarted_gateway_with_a_new_session_is_rejoined_with_the_new_id(
        tmp_path: Path) -> None:
    """SPEC §5: after a close, back off, re-check the session, reconnect. A gateway restarted
    and logged in again has a new session id; the recorder asks REST before its next socket, so
    that socket carries the new id at once, instead of offering the stale one until the
    heartbeat times out and the next periodic tickle (a minute away here) finds the new one."""

    async def fault(gw: SimGateway) -> None:
        old = gw.session_id
        connects, tickles = gw.stats.ws_connects, gw.stats.tickle_calls
        await gw.restart(new_session=True)
        assert gw.session_id != old
        await gw.wait_for(lambda: WANTED <= gw.subscriptions(), timeout(10))
        assert gw.stats.tickle_calls > tickles, "no REST check before reconnecting"
        assert gw.stats.ws_connects == connects + 1, "sockets opened with the stale session id"

    gw, recorded = asyncio.run(survive(tmp_path, fault, tickle_seconds=60.0))
    assert "heartbeat_timeout" not in recorded
    assert not [r for r in gw.received if r.payload.startswith(b'{"session"')]


async def _drop_then_restart_with_a_new_session(gw: SimGateway) -> int:
    """The socket drops while the gateway stays up, so the recorder's REST check right after
    the drop finds the old session; then the gateway restarts with a new session id, during
    the recorder's wait before its next socket. The socket count before the fault."""
    connects, tickles = gw.stats.ws_connects, gw.stats.tickle_calls
    await gw.drop_connections()
    await gw.wait_for(lambda: gw.stats.tickle_calls > tickles, timeout(5))
    await gw.restart(new_session=True)
    return connects


def test_a_gateway_restarted_during_the_reconnect_wait_is_joined_with_its_new_session(
        tmp_path: Path) -> None:
    """The session was checked only once, right after the drop: the next socket, 2 s later,
    carried the old id, was refused, and sat until the heartbeat timeout (about 50 s of
    quotes lost in a user's run). A wait longer than a second is now followed by a fresh
    check, right before the socket."""

    async def fault(gw: SimGateway) -> None:
        connects = await _drop_then_restart_with_a_new_session(gw)
        await gw.wait_for(lambda: WANTED <= gw.subscriptions(), timeout(10))
        assert gw.stats.ws_connects == connects + 1, "a socket opened with the stale session id"

    gw, recorded = asyncio.run(survive(
        tmp_path, fault, tickle_seconds=60.0, heartbeat_timeout_seconds=20.0,
        reconnect_min_seconds=2.0, reconnect_max_seconds=2.0))
    assert "heartbeat_timeout" not in recorded
    assert not [r for r in gw.received if r.payload.startswith(b'{"session"')]


def test_a_session_id_the_gateway_refuses_on_the_socket_is_checked_again_at_once(
        tmp_path: Path) -> None:
    """A wait shorter than a second keeps the check made at the drop, so a gateway restarted
    within it still meets the old id: it asks for the session, and answers the recorder's
    ``{"session":…}`` with ``Topic unknown '{"s'``. That socket will never stream; the
    recorder used to sit on it until the heartbeat timeout (20 s here). It now checks the
    session over REST and opens a new socket with the new id."""

    async def fault(gw: SimGateway) -> None:
        # IBKR's pacing allows one /tickle a second: a drop within a second of the last one
        # would have its check paced until after the 0.5 s wait, and the socket would follow
        # it before the restart below. (The recorder's pacer reads its own clock, in its own
        # task: there is no clock of the gateway's to pass in.)
        await asyncio.sleep(1.1)
        await _drop_then_restart_with_a_new_session(gw)
        await gw.wait_for(lambda: any(r.payload.startswith(b'{"session"') for r in gw.received),
                          timeout(5))
        await gw.wait_for(lambda: WANTED <= gw.subscriptions(), timeout(5))

    gw, recorded = asyncio.run(survive(
        tmp_path, fault, tickle_seconds=60.0, heartbeat_timeout_seconds=20.0,
        reconnect_min_seconds=0.5, reconnect_max_seconds=0.5))
    assert "heartbeat_timeout" not in recorded
    assert "auth_lost" in recorded


def test_a_tickle_without_an_auth_status_is_not_a_logout(tmp_path: Path) -> None:
    """Seed 000 documents ``/tickle`` answering ``{"session": …}`` alone. Such an answer keeps
    the session alive and says nothing about it: streaming goes on, with no auth event."""

    async def fault(gw: SimGateway) -> None:
        gw.tickle_auth_status = False
        tickles = gw.stats.tickle_calls
        await gw.wait_for(lambda: gw.stats.tickle_calls >= tickles + 3, timeout(10))

    gw, recorded = asyncio.run(survive(tmp_path, fault, expect_reconnect=False))
    assert gw.stats.ws_connects == 1
    # one from REST, one from the socket's sts; no auth_lost, no auth
    assert [k for k in recorded if k.startswith("auth")] == ["auth_ok", "auth_ok"]


def test_a_session_that_expired_while_the_socket_was_down_is_found_over_rest(
        tmp_path: Path) -> None:
    """The session expires while the socket is down, so no ``sts`` says so. The recorder checks
    REST before it reconnects (SPEC §5), finds the expiry there, and opens no socket into the
    gateway's close-1000 loop until the session is back."""

    async def fault(gw: SimGateway) -> None:
        await gw.drop_connections()
        gw.expire_session()  # no socket is open to get its sts
        connects, tickles = gw.stats.ws_connects, gw.stats.tickle_calls
        await gw.wait_for(lambda: gw.stats.tickle_calls >= tickles + 2, timeout(10))
        assert gw.stats.ws_connects == connects, (
            f"{gw.stats.ws_connects - connects} sockets opened into the close-1000 loop")
        gw.restore_session()

    gw, recorded = asyncio.run(survive(tmp_path, fault, tickle_seconds=1.0))
    assert [d for k, d in events(tmp_path) if k == "auth_lost"] == [
        {"message": "auth/status: HTTP 401 (no brokerage session)", "competing": False}]


def test_a_close_1000_before_login_is_an_auth_loss(tmp_path: Path) -> None:
    """A socket closed 1000 before it logs in, with no ``sts`` (the session went between the
    REST check and the connect), is taken as an auth loss: REST is asked again at once, not
    at the next tickle (a minute away here, as in the defaults)."""

    async def fault(gw: SimGateway) -> None:
        gw.close_new_sockets(1)
        await gw.drop_connections()

    gw, recorded = asyncio.run(survive(tmp_path, fault, tickle_seconds=60.0))
    lost = [d for k, d in events(tmp_path) if k == "auth_lost"]
    assert lost == [{"reason": "websocket closed 1000 before authentication"}]
    assert gw.stats.ws_connects == 3 and gw.stats.ws_closes_1000 == 1


def test_rest_401_is_an_auth_loss_and_the_session_is_checked_again(tmp_path: Path) -> None:
    """A 401 from REST while streaming (what a gateway answers once its session is gone)
    makes the keeper stop calling the session ready and check it again at once."""

    async def fault(gw: SimGateway) -> None:
        faults, tickles = gw.stats.rest_faults, gw.stats.tickle_calls
        gw.rest_fault(401, 1)
        await gw.wait_for(lambda: gw.stats.rest_faults > faults, timeout(10))
        await gw.wait_for(lambda: gw.stats.tickle_calls >= tickles + 2, timeout(10))

    gw, recorded = asyncio.run(survive(tmp_path, fault, expect_reconnect=False))
    assert gw.stats.ws_connects == 1, "a REST 401 alone does not cost the socket"
    found = [(k, d) for k, d in events(tmp_path) if k in ("auth_lost", "auth_ok", "rest_error")]
    assert ("auth_lost", {"reason": "REST 401"}) in found, f"the 401 was not an auth loss: {found}"
    lost = found.index(("auth_lost", {"reason": "REST 401"}))
    assert found[lost - 1][0] == "rest_error" and found[lost - 1][1]["status"] == 401
    assert found[lost + 1] == ("auth_ok", {"competing": False}), "the session was not checked again"


def test_sts_authenticated_false_alone_is_an_auth_loss(tmp_path: Path) -> None:
    """The gateway's sts ``authenticated: false`` on a socket that stays open, while REST
    still answers authenticated, is enough: the session is called lost and checked again, and
    the recorder closes that socket itself, since its subscriptions are gone with the session
    and nothing would send them again on it; the next socket subscribes afresh."""

    async def fault(gw: SimGateway) -> None:
        for conn in [c for c in gw.conns.values() if c.authed and not c.closed]:
            await gw.send(conn, encode.sts_one("authenticated", False), "sts")

    gw, _ = asyncio.run(survive(tmp_path, fault))
    found = [(k, d) for k, d in events(tmp_path) if k in ("auth_lost", "auth_ok")]
    lost = ("auth_lost", {"reason": "sts authenticated: false"})
    assert lost in found, f"sts authenticated: false was not an auth loss: {found}"
    assert found[found.index(lost) + 1] == ("auth_ok", {"competing": False}), (
        "the session was not checked again")
    closes = [d for k, d in events(tmp_path) if k == "disconnect" and not d["stopping"]]
    assert [d["code"] for d in closes] == [1000]
    assert gw.stats.ws_connects == 2


def test_a_close_the_gateway_never_answers_is_given_up_after_the_heartbeat_timeout(
        tmp_path: Path) -> None:
    """After sts ``authenticated: false`` the recorder closes the socket itself; a gateway that
    never answers that close (while its frames keep coming) must not hold the recording on a
    dead session: after ``heartbeat_timeout_seconds`` of reading the close is given up, the
    socket dropped, and the next one subscribes afresh."""

    async def fault(gw: SimGateway) -> None:
        gw.ignore_closes()
        for conn in [c for c in gw.conns.values() if c.authed and not c.closed]:
            await gw.send(conn, encode.sts_one("authenticated", False), "sts")

    gw, _ = asyncio.run(survive(tmp_path, fault))
    found = events(tmp_path)
    gave_up = [d for k, d in found if k == "close_timeout"]
    assert len(gave_up) == 1 and gave_up[0]["seconds"] >= 2.0  # heartbeat_timeout_seconds
    assert not [d for k, d in found if k == "heartbeat_timeout"]  # frames kept coming
    assert gw.stats.ws_connects == 2


def test_a_socket_that_never_authenticates_is_closed_and_the_session_checked(
        tmp_path: Path) -> None:
    """The gateway logs the socket in with ``sts authenticated: false`` (behaviours §38) while
    REST says authenticated, and keeps it open, beating. Frames keep coming, so it is not dead;
    after ``heartbeat_timeout_seconds`` unauthenticated it is closed, the session checked, and
    the next socket subscribes. It used to sit on that socket for good, recording nothing."""

    async def main() -> SimGateway:
        async with SimGateway(SimOptions(seed=3, hb_interval=0.2, update_interval=0.05)) as gw:
            gw.unauthenticated_logins(1)
            config = make_config(gw, tmp_path)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 2, timeout(20))

            await record_while(config, scenario)
            return gw

    gw = asyncio.run(main())
    found = events(tmp_path)
    kinds = [k for k, _ in found]
    assert kinds.count("auth_timeout") == 1 and "heartbeat_timeout" not in kinds
    assert kinds.index("auth_timeout") < kinds.index("auth_ok", kinds.index("auth_timeout"))
    assert gw.stats.ws_connects == 2
    assert {r.conn_id for r in gw.received if r.payload.startswith(b"smd+")} == {2}
    # the gateway answered the probe tic on that socket: after its sts said unauthenticated,
    # that answer logged nothing in
    assert b"tic" in [r.payload for r in gw.received if r.conn_id == 1]
    assert [d for k, d in found if k == "auth_ok" and "source" in d] == [
        {"source": "sts", "conn_id": 2}]
    # one loss: the recorder's own close of that socket (answered 1000) is not another
    assert [d for k, d in found if k == "auth_lost"] == [{"reason": "socket not authenticated"}]


def test_a_stop_whose_close_the_gateway_never_answers_ends_after_the_close_wait(
        tmp_path: Path) -> None:
    """At a stop the recorder reads the socket out to the gateway's close. A gateway that
    never answers it (its frames keep coming) is given up after ``CLOSE_WAIT_SECONDS`` of
    reading, not after the 30 s dead-socket timeout, and the run ends with its files."""

    async def main() -> None:
        async with SimGateway(SimOptions(seed=3, hb_interval=0.2, update_interval=0.05)) as gw:
            config = make_config(gw, tmp_path, heartbeat_timeout_seconds=30.0)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 2, timeout(10))
                gw.ignore_closes()

            await record_while(config, scenario)

    asyncio.run(main())
    found = events(tmp_path)
    gave_up = [d for k, d in found if k == "close_timeout"]
    assert len(gave_up) == 1 and CLOSE_WAIT_SECONDS <= gave_up[0]["seconds"] < 30.0
    assert [k for k, _ in found][-2:] == ["disconnect", "stop"]


def subscribed(gw: SimGateway, times: int) -> bool:
    return gw.stats.smd_subscribes >= times


def test_a_socket_dropped_soon_after_authenticating_backs_off_longer_each_time(
        tmp_path: Path) -> None:
    """Every socket authenticates, subscribes, and is dropped at once: authenticated, but of
    no use. The waits must keep growing (each within its jittered ceiling: 2, 4, 8… times the
    minimum), not start over at the minimum after every such connection."""

    async def main() -> None:
        async with SimGateway(SimOptions(seed=11, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(gw, tmp_path, smd=("265598",), reconnect_min_seconds=0.05,
                                 reconnect_max_seconds=2.0)

            async def scenario(rec: Recorder) -> None:
                for n in range(1, 6):  # the n-th connection subscribes; drop it
                    await gw.wait_for(functools.partial(subscribed, gw, n), timeout(10))
                    await gw.drop_connections()

            await record_while(config, scenario)

    asyncio.run(main())
    waits = [d["seconds"] for k, d in events(tmp_path) if k == "reconnect_wait"]
    assert len(waits) >= 4, waits
    for n, wait in enumerate(waits[:4]):
        ceiling = 0.05 * 2 ** (n + 1)
        assert ceiling / 2 - 0.001 <= wait <= ceiling + 0.001, (n, waits)


def test_a_gateway_that_sends_no_login_burst_is_recorded_all_the_same(tmp_path: Path) -> None:
    """Real gateways sent no ``system``/``act``/``sts`` on most sockets (behaviours §1: the
    2026-04-30 captures), and streamed what they were asked. The recorder waited for an
    ``sts`` that never came: every 25 s an ``auth_timeout``, a new socket, and not one quote.
    Now a socket quiet for a second is sent a ``tic``, and its answer, naming the session,
    logs it in."""

    async def main() -> SimGateway:
        options = SimOptions(seed=11, hb_interval=0.5, update_interval=0.1, login_burst="never")
        async with SimGateway(options) as gw:
            config = make_config(gw, tmp_path, smd=("265598",), orders=True, pnl=True,
                                 tic_seconds=30.0, heartbeat_timeout_seconds=10.0)

            async def scenario(rec: Recorder) -> None:
                await gw.wait_for(lambda: WANTED <= gw.subscriptions(), timeout(10))
                await gw.wait_for(lambda: sum(
                    1 for f in gw.sent if (f.topic or "").startswith("smd+")) >= 5, timeout(10))

            await record_while(config, scenario)
        return gw

    gw = asyncio.run(main())
    assert gw.stats.ws_connects == 1 and not [f for f in gw.sent if f.topic == "sts"]
    received = [r.payload for r in gw.received]
    assert received[0] == b"tic"  # the probe, then the subscriptions
    assert {p.split(b"+")[0] for p in received[1:4]} == {b"smd", b"sor", b"spl"}
    found = events(tmp_path)
    assert [d for k, d in found if k == "auth_ok" and "source" in d] == [
        {"source": "tic", "conn_id": 1}]
    assert not [k for k, _ in found if k in ("auth_timeout", "auth_lost")]
    sent_smd = sum(1 for f in gw.sent if (f.topic or "").startswith("smd+"))
    [(n,)] = rows(f"SELECT count(*) FROM read_parquet('{tmp_path}/market_data/**/*.parquet')")
    assert n == sent_smd >= 5


def test_the_sockets_after_the_first_of_a_session_get_no_burst_and_stream(
        tmp_path: Path) -> None:
    """As on the real gateway: the first socket of the session gets the login burst, the one
    after the drop gets none. It subscribes again, on its ``tic`` answer."""
    gw, recorded = asyncio.run(survive(tmp_path, drop, login_burst="first"))
    assert gw.stats.ws_connects == 2
    assert [d for k, d in events(tmp_path) if k == "auth_ok" and "source" in d] == [
        {"source": "sts", "conn_id": 1}, {"source": "tic", "conn_id": 2}]
    assert "auth_timeout" not in recorded
