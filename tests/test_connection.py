"""The multiplexer on its own, against the simulated gateway, with storage's side played by a
``put`` that can be made to wait forever (storage full) and a ``keep`` that records what it got.

The rule under test: a frame on the wire is never dropped on the way to storage, even when the
task carrying it is cancelled while ``put`` waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from recorder.connection import Multiplexer
from recorder.frames import IN, OUT, Frame
from recorder.ids import Counters
from recorder.pacing import Pacer
from recorder.redact import Redactor
from recorder.session import GatewayApi, SessionKeeper, tls_context, ws_url
from recorder.sim import SimGateway, SimOptions, encode
from recorder.smh_slots import SmhScheduler
from recorder.subscriptions import SubscriptionBook
from tests.recording import make_config, timeout


@dataclass
class FullStorage:
    """``put`` takes frames until :attr:`full` says a frame must wait; that one waits forever.
    ``slow`` makes puts take time. ``keep`` is the runner's never-waiting hand-off."""

    full: Callable[[Frame], bool] = lambda frame: False
    slow: Callable[[Frame], float] = lambda frame: 0.0  # seconds a put takes (a slow disk)
    put_frames: list[Frame] = field(default_factory=list)
    kept: list[Frame] = field(default_factory=list)
    waiting: list[Frame] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # kinds the multiplexer emitted

    async def put(self, frame: Frame) -> None:
        if delay := self.slow(frame):
            await asyncio.sleep(delay)
        if self.full(frame):
            self.waiting.append(frame)
            await asyncio.Event().wait()
        self.put_frames.append(frame)

    def keep(self, frame: Frame) -> None:
        self.kept.append(frame)


@asynccontextmanager
async def multiplexer(gw: SimGateway, storage: FullStorage, tic_seconds: float = 1.0,
                      clock: Callable[[], float] = time.monotonic
                      ) -> AsyncIterator[tuple[Multiplexer, asyncio.Task[None]]]:
    config = make_config(gw, Path("unused"), tic_seconds=tic_seconds)
    tls = tls_context(config.gateway)
    counters = Counters()

    def emit(kind: str, topic: str | None, detail: object) -> None:
        storage.events.append(kind)

    async with aiohttp.ClientSession() as http:
        api = GatewayApi(http, config.gateway.url, tls, Pacer())
        keeper = SessionKeeper(api, config.session, Redactor(), emit, poll_seconds=0.05)
        mux = Multiplexer(ws_url(config.gateway.url), tls, keeper, config.session,
                          SubscriptionBook(config),
                          SmhScheduler(config.smh, config.session.smh_max_concurrent,
                                       config.session.smh_timeout_seconds),
                          storage.put, emit, counters, storage.keep, clock)
        keeping = asyncio.create_task(keeper.run())
        running = asyncio.create_task(mux.run())
        try:
            yield mux, running
        finally:
            running.cancel()
            keeping.cancel()
            await asyncio.gather(running, keeping, return_exceptions=True)


def test_a_tic_waiting_for_storage_when_its_connection_ends_is_kept() -> None:
    """The ticker sends ``tic`` and waits for storage; the socket drops meanwhile, the reader
    sees it and the connection's end cancels the ticker. The tic was sent: it must reach
    storage through ``keep``, exactly once."""
    storage = FullStorage(full=lambda frame: frame.direction == OUT and frame.payload == b"tic")

    async def main() -> None:
        async with SimGateway(SimOptions(seed=1, hb_interval=0.1)) as gw:
            async with multiplexer(gw, storage, tic_seconds=0.05) as (mux, _):
                await gw.wait_for(lambda: bool(storage.waiting), timeout(10))
                await gw.drop_connections()
                await gw.wait_for(lambda: bool(storage.kept), timeout(10))

    asyncio.run(main())
    tic = storage.waiting[0]
    assert storage.kept[0] is tic
    assert tic not in storage.put_frames
    assert [f.seq for f in storage.kept].count(tic.seq) == 1


def test_a_received_frame_waiting_for_storage_when_the_reader_is_cancelled_is_kept() -> None:
    """At a stop that storage does not let finish, the runner cancels the reader mid-put: the
    frame it had received must still reach storage, through ``keep``."""
    storage = FullStorage()

    async def main() -> None:
        async with SimGateway(SimOptions(seed=1, hb_interval=0.1)) as gw:
            async with multiplexer(gw, storage) as (mux, running):
                await gw.wait_for(lambda: mux.authenticated, timeout(10))
                storage.full = lambda frame: frame.direction == IN
                await gw.wait_for(lambda: bool(storage.waiting), timeout(10))
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

    asyncio.run(main())
    assert storage.kept == storage.waiting[:1]
    assert storage.kept[0] not in storage.put_frames
    seqs = [f.seq for f in storage.put_frames + storage.kept]
    assert sorted(seqs) == list(range(1, max(seqs) + 1))


def test_a_send_waiting_for_storage_is_not_taken_for_a_silent_socket() -> None:
    """Once authenticated, the reader sends the subscriptions, and each frame it sends waits
    for storage like one it received. Meanwhile the gateway's frames wait in the socket: the
    dead-socket watchdog must not call it silent, however long storage takes."""
    storage = FullStorage(full=lambda frame: frame.direction == OUT
                          and frame.payload.startswith(b"smd+"))
    now = [1000.0]

    def tics() -> int:
        return sum(1 for f in storage.put_frames if f.payload == b"tic")

    async def main() -> None:
        async with SimGateway(SimOptions(seed=1, hb_interval=0.1)) as gw:
            async with multiplexer(gw, storage, tic_seconds=0.5, clock=lambda: now[0]):
                await gw.wait_for(lambda: bool(storage.waiting), timeout(10))
                before = tics()
                now[0] += 10.0  # five heartbeat timeouts, the subscribe still waiting
                # the ticker's next round: a tic is due now, and so would the watchdog be
                await gw.wait_for(lambda: tics() > before or "heartbeat_timeout" in storage.events,
                                  timeout(10))

    asyncio.run(main())
    assert "heartbeat_timeout" not in storage.events
    assert storage.events.count("connect") == 1


def _received(storage: FullStorage, conn_id: int) -> list[bytes]:
    return [f.payload for f in storage.put_frames + storage.kept
            if f.direction == IN and f.conn_id == conn_id]


async def _lose_auth_then_send(gw: SimGateway, storage: FullStorage, mux: Multiplexer,
                               frames: list[tuple[bytes, str]]) -> list[bytes]:
    """On the live socket: sts authenticated:false, then ``frames``; wait for the recorder's
    close to end that connection. What the gateway sent on it, in order."""
    await gw.wait_for(lambda: mux.authenticated, timeout(10))
    conn = next(c for c in gw.conns.values() if c.authed and not c.closed)
    await gw.send(conn, encode.sts_one("authenticated", False), "sts")
    for payload, topic in frames:
        await gw.send(conn, payload, topic)
    await gw.wait_for(lambda: "disconnect" in storage.events, timeout(20))
    return [f.payload for f in gw.sent if f.conn_id == 1]


@pytest.mark.parametrize("close", ["auth loss", "stop"])
def test_a_close_the_recorder_starts_reads_out_what_storage_was_behind_on(close: str) -> None:
    """The recorder closes the socket, after sts authenticated:false or at a stop (SPEC §7: a
    clean stop loses nothing). Storage is slow, so the gateway's own close waits behind 800
    frames that take 4 s to take, twice websockets' 2 s close timeout: the socket must not be
    aborted under them, every frame is recorded."""
    storage = FullStorage()
    pad = b"x" * 2000
    burst = [(b'{"topic":"system","hb":%d,"pad":"%s"}' % (i, pad), "system") for i in range(800)]

    async def main() -> tuple[list[bytes], list[bytes]]:
        async with SimGateway(SimOptions(seed=1, hb_interval=10.0)) as gw:
            async with multiplexer(gw, storage, tic_seconds=30.0) as (mux, running):
                await gw.wait_for(lambda: mux.authenticated, timeout(10))
                storage.slow = lambda frame: 0.005
                if close == "auth loss":
                    sent = await _lose_auth_then_send(gw, storage, mux, burst)
                    return sent, _received(storage, 1)
                conn = next(c for c in gw.conns.values() if c.authed and not c.closed)
                for payload, topic in burst:
                    await gw.send(conn, payload, topic)
                await mux.stop()
                await asyncio.wait_for(running, timeout(20))
                return [f.payload for f in gw.sent if f.conn_id == 1], _received(storage, 1)

    sent, received = asyncio.run(main())
    assert len(sent) > 800 and received == sent
    assert "close_timeout" not in storage.events and "heartbeat_timeout" not in storage.events


def test_a_stop_while_the_socket_connects_sends_nothing_on_it() -> None:
    """The stop lands while a new socket's handshake is under way: once it opens, the socket
    is closed at once, with nothing sent on it (no session, subscription or tic), and the run
    ends; it used to authenticate, subscribe and run on until cancelled."""
    storage = FullStorage()

    async def main() -> None:
        async with SimGateway(SimOptions(seed=1, hb_interval=0.1)) as gw:
            async with multiplexer(gw, storage) as (mux, running):
                await gw.wait_for(lambda: mux.authenticated, timeout(10))
                gw.hold_handshakes(0.5)
                await gw.drop_connections()
                await gw.wait_for(lambda: gw.stats.ws_handshakes_held == 1, timeout(10))
                sent_before = len(storage.put_frames)
                await mux.stop()
                await asyncio.wait_for(running, timeout(5))
                assert gw.stats.ws_connects == 2  # the held socket did open
                assert [f for f in storage.put_frames[sent_before:] if f.direction == OUT] == []
                assert [r for r in gw.received if r.conn_id == 2] == []
                assert storage.events.count("connect") == 1

    asyncio.run(main())


def test_a_frame_to_answer_on_a_closing_socket_does_not_end_the_reading() -> None:
    """After the recorder's close, an smh answer comes (its umh would be a send on a closing
    socket): the reader answers nothing there, and reads on to the end."""
    storage = FullStorage(slow=lambda frame: 0.3 if frame.payload.startswith(b'{"topic":"smh+')
                          else 0.0)

    async def main() -> tuple[list[bytes], list[bytes]]:
        async with SimGateway(SimOptions(seed=1, hb_interval=10.0)) as gw:
            async with multiplexer(gw, storage, tic_seconds=30.0) as (mux, _):
                frames = [(b'{"topic":"smh+265598","serverId":"999","data":[]}', "smh+265598")]
                frames += [(b'{"topic":"system","hb":%d}' % i, "system") for i in range(50)]
                sent = await _lose_auth_then_send(gw, storage, mux, frames)
                return sent, _received(storage, 1)

    sent, received = asyncio.run(main())
    assert received == sent
    assert not [f for f in storage.put_frames if f.payload.startswith(b"umh+")]
