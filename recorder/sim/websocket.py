"""The websocket side of the simulated gateway: login, client commands, and socket faults.

Login: a ``Cookie: api=<id>`` (or ``api={"session":"<id>"}``) with the right id logs in at
once; otherwise the socket gets ``{"message":"waiting for session"}`` and logs in on
``{"session":"<id>"}``. Login sends the burst ``system`` success, ``act``, ``sts``. A wrong id,
or ``{"session":…}`` on a socket already logged in, gets the ``Topic unknown '{"s'`` error.
Other commands before login are ignored. While the brokerage session is not authenticated
(expired, competing, maintenance) every new socket is closed with code 1000 right after the
handshake (a competing session sends its ``sts`` frames first).

smh: at most ``smh_max_concurrent`` (5) slots per connection, held from the answer until
``umh+<serverId>`` or the socket closes; a request over the limit gets nothing
(``smh_over_limit="silent"``) or a topic-less error frame (``"error"``).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import WSMsgType, web

from recorder.sim import encode, history
from recorder.sim.account import STR_EMPTY, ladder
from recorder.sim.connection import Conn, SmdSub
from recorder.sim.core import GatewayCore
from recorder.sim.protocol import (
    Ignored,
    Sbd,
    SessionLogin,
    Smd,
    Smh,
    Stream,
    Tic,
    Ubd,
    Umd,
    Umh,
    Unknown,
    parse,
)
from recorder.sim.rest import AuthState, session_from_cookie

PUMP_CHUNK = 64  # frames the load pump sends between yields to the event loop
FULL_SPEED = 1e12  # frames/s: a rate for set_rate that no socket reaches
SNAPSHOT_GRID = 0.5  # s: a real gateway sends smd updates in batches on this grid


def frames_due(elapsed: float, rate: float, grid: float = 0.0) -> int:
    """How many load frames are due ``elapsed`` seconds after the pump started at ``rate``.

    Steady (``grid`` 0): one more as each ``1/rate`` passes, the first at once. On a grid:
    ``rate * grid`` at once at the start of every ``grid`` seconds, as a real gateway sends
    market data in snapshot batches every 500 ms (behaviours §14)."""
    if grid <= 0:
        return int(elapsed * rate) + 1
    return (int(elapsed / grid) + 1) * max(1, round(rate * grid))


def pump_pause(elapsed: float, rate: float, grid: float = 0.0) -> float:
    """How long the pump sleeps when nothing is due: to the next grid line, or a steady
    pump's next frame (at most 5 ms, so a late wake-up never owes a big batch)."""
    if grid <= 0:
        return min(0.005, 1 / rate)
    return grid - elapsed % grid


class WebsocketSide(GatewayCore):
    """Everything that happens on ``/v1/api/ws`` (a base of :class:`SimGateway`)."""

    # ---- connection ---------------------------------------------------------------------------

    async def ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        # autoclose off: the handler answers a client's close itself, unless told not to
        ws = web.WebSocketResponse(compress=False, timeout=2.0, max_msg_size=1 << 20,
                                   autoclose=False)
        if self._hold_handshakes > 0:
            self.stats.ws_handshakes_held += 1
            await asyncio.sleep(self._hold_handshakes)
        await ws.prepare(request)
        self._next_conn += 1
        conn = Conn(self._next_conn, request, ws)
        self.conns[conn.conn_id] = conn
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers[conn.conn_id] = f"{peer[0]}:{peer[1]}"
        self.stats.ws_connects += 1
        try:
            if self._close_new > 0:
                self._close_new -= 1
                await self.close_1000(conn)
                return ws
            if self.auth is not AuthState.OK:
                if self.auth is AuthState.COMPETING:
                    for frame in encode.sts_auth_lost(True, "competing session"):
                        await self.send(conn, frame, "sts")
                await self.close_1000(conn)
                return ws
            if session_from_cookie(request.headers.get("Cookie", "")) == self.session_id:
                await self._login(conn)
            else:
                await self.send(conn, encode.WAITING_FOR_SESSION, None)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    data = msg.data.encode()
                elif msg.type is WSMsgType.BINARY:
                    data = msg.data
                else:
                    continue
                self.record_received(conn, data)
                await self._handle(conn, data.decode("utf-8", "replace"))
            if conn.ignores_close:
                await self._until_dropped(conn)
            else:
                await ws.close(drain=False)  # the answer to the client's close
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.closed = True
            self.conns.pop(conn.conn_id, None)
            self._count_smh()
        return ws

    async def _until_dropped(self, conn: Conn) -> None:
        """Keep a socket whose close went unanswered until the client drops it (or the
        simulator stops): its frames keep flowing meanwhile."""
        transport = conn.request.transport
        # aiohttp has nothing to await for "the transport closed" once a close was received
        # (receive() returns at once from then on), so look every 50 ms
        while transport is not None and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def close_1000(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.stats.ws_closes_1000 += 1
        try:
            await conn.ws.close(code=1000, message=b"")
        except (ConnectionError, RuntimeError):
            pass

    async def _login(self, conn: Conn) -> None:
        conn.authed = True
        self.stats.ws_logins += 1
        if self._unauthenticated_logins == 0 and not self._burst_for(self.session_id):
            return  # logged in without a word: it answers tic and streams what it is asked
        paper = self.options.account.startswith("D")
        await self.send(conn, encode.system_success(self.options.username, paper), "system")
        tag = f"{self._started_ms // 1000:08x}.{conn.conn_id:08x}"
        await self.send(conn, encode.act(self.options.account, tag, paper), "act")
        if self._unauthenticated_logins > 0:
            self._unauthenticated_logins -= 1
            for frame in encode.sts_auth_lost(False):
                await self.send(conn, frame, "sts")
            return
        await self.send(conn, encode.sts_login(self.options.username), "sts")

    def _burst_for(self, session_id: str) -> bool:
        """Whether a socket logged in to ``session_id`` now gets the login burst."""
        burst = self.options.login_burst
        if burst == "first":
            first = session_id not in self._burst_sessions
            self._burst_sessions.add(session_id)
            return first
        return burst == "always"

    # ---- commands --------------------------------------------------------------------------

    async def _handle(self, conn: Conn, text: str) -> None:
        cmd = parse(text)
        if isinstance(cmd, Tic):
            self.stats.tics_received += 1
            if conn.authed:
                reply = encode.tic_reply(self.session_id, int(time.time() * 1000))
                for _ in range(4):
                    await self.send(conn, reply, "tic")
            return
        if isinstance(cmd, SessionLogin):
            if not conn.authed and cmd.session_id == self.session_id and self.auth is AuthState.OK:
                await self._login(conn)
            else:
                await self.send(conn, encode.topic_unknown(text), None)
            return
        if not conn.authed:
            return
        if isinstance(cmd, Smd):
            await self._smd(conn, cmd)
        elif isinstance(cmd, Umd):
            self.stats.umd_received += 1
            conn.smd.pop(cmd.conid_ex, None)
        elif isinstance(cmd, Smh):
            await self._smh(conn, cmd)
        elif isinstance(cmd, Umh):
            self.stats.umh_received += 1
            conn.smh.pop(cmd.server_id, None)
            self._count_smh()
        elif isinstance(cmd, Sbd):
            self.stats.sbd_subscribes += 1
            conn.sbd[cmd.key] = cmd
            await self.send_ladder(conn, cmd)
        elif isinstance(cmd, Ubd):
            for key in [k for k, s in conn.sbd.items() if s.account == cmd.account]:
                del conn.sbd[key]
        elif isinstance(cmd, Stream):
            await self._stream(conn, cmd)
        elif isinstance(cmd, Unknown):
            await self.send(conn, encode.topic_unknown(cmd.text), None)
        elif isinstance(cmd, Ignored):
            pass

    async def _smd(self, conn: Conn, cmd: Smd) -> None:
        """Subscribe, or re-send to a subscription: that adds fields and sends the snapshot
        again, but unless ``smd_resend_renews`` it neither restarts the stream's expiry clock
        nor revives a stream that expired (only ``umd`` then ``smd`` does)."""
        self.stats.smd_subscribes += 1
        old = conn.smd.get(cmd.conid_ex)
        fields = cmd.fields
        expires_at = time.monotonic() + self.options.smd_expiry_seconds
        if old is not None:
            fields = old.fields + tuple(f for f in cmd.fields if f not in old.fields)
            if not self.options.smd_resend_renews:
                if old.expired:
                    old.fields = fields
                    return
                expires_at = old.expires_at
        sub = SmdSub(cmd.conid, cmd.conid_ex, fields, self.next_server_id(), expires_at)
        conn.smd[cmd.conid_ex] = sub
        first, second = sub.snapshot(self.market.quote(cmd.conid), self.updated_now_ms())
        await self.send(conn, first, f"smd+{cmd.conid}")
        await self.send(conn, second, f"smd+{cmd.conid}")

    async def _smh(self, conn: Conn, cmd: Smh) -> None:
        self.stats.smh_requests += 1
        limit = self.options.smh_max_concurrent
        if len(conn.smh) >= limit:
            self.stats.smh_refused += 1
            if self.options.smh_over_limit == "error":
                await self.send(conn, history.over_limit_error(limit), None)
            return
        server_id = self.next_smh_id()
        conn.smh[server_id] = cmd.conid
        self._count_smh()
        quote = self.market.quote(cmd.conid)
        frame = history.smh_answer(
            conid=cmd.conid,
            server_id=server_id,
            symbol=quote.instrument.symbol,
            name=quote.instrument.name,
            price=quote.last,
            args=cmd.args,
            payload=cmd.payload,
            now_ms=int(time.time() * 1000),
            rng=quote.rng,
        )
        self.stats.smh_answers += 1
        await self.send(conn, frame, f"smh+{cmd.conid}")

    def _count_smh(self) -> None:
        self.stats.smh_open = sum(len(c.smh) for c in self.conns.values() if not c.closed)
        self.stats.smh_open_max = max(self.stats.smh_open_max, self.stats.smh_open)

    async def _stream(self, conn: Conn, cmd: Stream) -> None:
        if not cmd.on:
            conn.streams.discard(cmd.name)
            return
        conn.streams.add(cmd.name)
        now_ms = int(time.time() * 1000)
        if cmd.name == "str":
            await self.send(conn, STR_EMPTY, "str")
            if cmd.args.get("realtimeUpdatesOnly") is not True:
                for ex in self.account_sim.backfill(self.market.quote(265598), now_ms):
                    await self.send(conn, ex.frame(False), "str")
                    await self.send(conn, ex.frame(True), "str")
        elif cmd.name == "spl":
            await self.send(conn, self.account_sim.pnl(0.0), "spl")

    def sbd_topic(self, sbd: Sbd) -> str:
        return f"sbd+{sbd.account}+{sbd.conid}"

    async def send_ladder(self, conn: Conn, sbd: Sbd) -> None:
        topic = self.sbd_topic(sbd)
        await self.send(conn, ladder(topic, self.market.quote(sbd.conid)), topic)

    # ---- socket faults ---------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Abort every open socket: the transport closes without a close frame."""
        self._abort_all()
        await asyncio.sleep(0)

    def stall(self, seconds: float) -> None:
        """Existing sockets stay open but get nothing (not even hb) for ``seconds``."""
        until = time.monotonic() + seconds
        for conn in self.conns.values():
            conn.stalled_until = until

    def ignore_closes(self) -> None:
        """Existing sockets never answer a close the client sends, and keep sending frames:
        a gateway hung on its side of the closing handshake (a close the gateway starts itself
        still happens). New sockets answer as usual."""
        for conn in self.conns.values():
            conn.ignores_close = True

    def close_new_sockets(self, count: int) -> None:
        """The next ``count`` sockets are closed 1000 before they log in, with no ``sts``,
        while REST still says authenticated: what a client sees when the session went between
        its REST check and its connect (behaviours §39)."""
        self._close_new = count

    def hold_handshakes(self, seconds: float) -> None:
        """Answer each new socket's upgrade request only after ``seconds`` (0: at once): a
        gateway slow to accept, so a client's stop can land while it connects."""
        self._hold_handshakes = seconds

    def unauthenticated_logins(self, count: int) -> None:
        """The next ``count`` sockets get the login burst with ``sts authenticated: false``
        (behaviours §38's frames) in place of the login ``sts``, while REST still says
        authenticated. The socket stays open, beating and answering ``tic``."""
        self._unauthenticated_logins = count

    def _lose_auth(self, state: AuthState) -> None:
        self.auth = state
        competing = state is AuthState.COMPETING
        message = "competing session" if competing else ""
        for conn in list(self.conns.values()):
            self.spawn(self._kick(conn, competing, message))

    async def _kick(self, conn: Conn, competing: bool, message: str) -> None:
        if conn.authed:
            for frame in encode.sts_auth_lost(competing, message):
                await self.send(conn, frame, "sts")
        await self.close_1000(conn)

    def expire_session(self) -> None:
        """REST says unauthenticated (401); sockets get sts, then close 1000, new ones too."""
        self._lose_auth(AuthState.EXPIRED)

    def time_out_session(self) -> None:
        """As :meth:`expire_session`, but REST answers 401 to ``/tickle`` too: the gateway's
        own session timed out (seed 003: "all endpoints will return 401")."""
        self._lose_auth(AuthState.TIMED_OUT)

    def compete(self) -> None:
        """A competing session took the brokerage session (ssodh/init with compete restores)."""
        self._lose_auth(AuthState.COMPETING)

    def maintenance(self, seconds: float) -> None:
        """Like :meth:`expire_session`, restoring itself after ``seconds``."""
        self._lose_auth(AuthState.MAINTENANCE)

        async def end() -> None:
            await asyncio.sleep(seconds)
            if self.auth is AuthState.MAINTENANCE:
                self.auth = AuthState.OK

        self.spawn(end())

    def restore_session(self) -> None:
        self.auth = AuthState.OK

    def _broadcast(self, payload: bytes, topic: str | None) -> None:
        for conn in list(self.conns.values()):
            if conn.authed and not conn.closed:
                self.spawn(self.send(conn, payload, topic))

    def send_bad_utf8(self) -> None:
        """Every logged-in socket gets one sor frame whose text holds a raw 0x99 byte."""
        frame = (
            b'{"topic":"sor","args":[{"acct":"'
            + self.options.account.encode()
            + b'","orderId":912091999,"orderDesc":"Buy 1 AAPL\x99 Limit 1.00, Day",'
            b'"status":"Submitted"}]}'
        )
        self._broadcast(frame, "sor")

    def send_malformed(self) -> None:
        """Every logged-in socket gets one text frame that is not valid JSON."""
        self._broadcast(encode.MALFORMED, None)

    def send_oversized(self, nbytes: int = (1 << 20) + (1 << 18)) -> None:
        """Every logged-in socket gets one valid ``blt`` frame of about ``nbytes`` bytes
        (default 1.25 MiB: over websockets' and aiohttp's 1 MiB default message limit)."""
        text = ("Simulated oversized bulletin. " * (nbytes // 30 + 1))[:nbytes]
        self._broadcast(encode.blt("BLTBIG", text), "blt")

    def send_raw(self, payload: bytes, topic: str | None = None) -> None:
        """Every logged-in socket gets ``payload`` as one text frame, byte for byte (fuzzing)."""
        self._broadcast(payload, topic)

    # ---- load -------------------------------------------------------------------------------

    def set_rate(self, frames_per_s: float, seconds: float | None = None,
                 grid: float = 0.0) -> None:
        """Send extra real-shaped frames to every logged-in socket; 0 stops. Steadily, or with
        ``grid`` (e.g. :data:`SNAPSHOT_GRID`) in one batch at the start of every ``grid``
        seconds (see :func:`frames_due`). A rate beyond reach (:data:`FULL_SPEED`) sends as
        fast as the sockets take them."""
        self._start_pump(frames_per_s, None, seconds, grid)

    def burst(self, frames: int, within_seconds: float) -> None:
        """Send ``frames`` extra frames to every logged-in socket within ``within_seconds``."""
        self._start_pump(frames / max(within_seconds, 1e-3), frames, within_seconds, 0.0)

    def _start_pump(self, rate: float, total: int | None, seconds: float | None,
                    grid: float) -> None:
        if self._rate_task is not None:
            self._rate_task.cancel()
            self._rate_task = None
        if rate > 0:
            self._rate_task = asyncio.get_running_loop().create_task(
                self._pump(rate, total, seconds, grid)
            )

    async def _pump(self, rate: float, total: int | None, seconds: float | None,
                    grid: float) -> None:
        from recorder.sim.load import frame_pool

        pool = frame_pool(self.options.seed, self.options.account)
        start = time.monotonic()
        sent = 0
        i = 0
        while total is None or sent < total:
            elapsed = time.monotonic() - start
            if seconds is not None and total is None and elapsed >= seconds:
                break
            due = frames_due(elapsed, rate, grid) - sent
            if total is not None:
                due = min(due, total - sent)
            if due <= 0:
                await asyncio.sleep(pump_pause(elapsed, rate, grid))
                continue
            # At a rate beyond reach, due only grows while sends rarely wait (a fast reader);
            # a step of at most PUMP_CHUNK frames keeps the rest of the simulator (REST,
            # commands, other sockets) running meanwhile.
            due = min(due, PUMP_CHUNK)
            live = [c for c in self.conns.values() if c.authed and not c.closed]
            for _ in range(due):
                payload, topic = pool[i % len(pool)]
                i += 1
                for conn in live:
                    await self.send(conn, payload, topic)
            sent += due
            await asyncio.sleep(0)
