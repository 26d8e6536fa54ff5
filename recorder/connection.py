"""The websocket multiplexer: one socket, every subscription, kept alive through every fault.

Rules this module keeps (SPEC §5):

- Connect only when the :class:`SessionKeeper` says the brokerage session is authenticated,
  with ``Cookie: api=<session id>``, from a REST check made at most a second before, or at
  the start of the wait before this socket if that was shorter. If the gateway answers
  ``waiting for session``, send ``{"session":"<id>"}`` once; if it refuses that id, check the
  session again and open a new socket.
- Subscribe only once the socket is known to be logged in: an ``sts`` frame says
  ``authenticated: true``, or, on a socket that got no ``sts`` within a second, the gateway
  answers the ``tic`` it is sent then (:data:`~recorder.policy.PROBE_SECONDS`) with
  ``alive: true`` and this session's id. Real gateways sent the login burst (``system``,
  ``act``, ``sts``) on one socket of a session and none on the sockets after it, which
  streamed all the same (behaviours §1, §18). An ``sts`` saying ``authenticated: false``
  first rules the ``tic`` answer out. Subscriptions never survive a reconnect, so every new
  connection gets them all again.
- With ``sor`` subscribed, each logged-in socket also has the day's orders fetched over REST
  (``/iserver/account/orders``, paced; one request at a time, so a socket that logs in while
  a list is on its way gets one once it is answered): ``sor`` sends only changes.
- Receive bytes (``recv(decode=False)``): gateways send text frames holding bytes that are not
  UTF-8, and decoding would drop the connection. Every frame received or sent is handed on,
  byte for byte, with ``time.time_ns()`` taken once when it arrived: to ``put``, which waits
  while storage is full (the backpressure), or, if the task is cancelled while it waits, to
  ``keep``, which never waits. A frame on the wire is never dropped on the way to storage.
- ``tic`` every ``tic_seconds``; no frame at all for ``heartbeat_timeout_seconds`` means the
  socket is dead: abort it and reconnect. A socket not authenticated that long never will be:
  an auth loss, as below.
- Any close, error or dead socket: back off (capped, jittered), then reconnect. The backoff
  starts over only after a connection that authenticated and stayed up longer than its cap.
- A close 1000 before authentication, or ``sts`` saying unauthenticated, is an auth loss: the
  session keeper checks the REST side again. After such an ``sts`` the recorder closes the
  socket itself, and the next one subscribes afresh. Nothing here ever ends the process; only
  :meth:`stop` does.

Time: this is a driver, so it reads ``clock`` (monotonic seconds) and hands ``now`` to the pure
parts (:class:`KeepAlive`, :class:`SubscriptionBook`, :class:`SmhScheduler`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from recorder.actions import Action, Note, Send
from recorder.config import SessionConfig
from recorder.frames import IN, ORDERS_SNAPSHOT, OUT, Frame
from recorder.ids import Counters
from recorder.policy import Due, KeepAlive, backoff
from recorder.session import SessionKeeper
from recorder.signals import (
    AuthChanged,
    Competing,
    Heartbeat,
    SessionRefused,
    SmhAnswer,
    TicAnswer,
    WaitingForSession,
    classify,
)
from recorder.smh_slots import SmhScheduler
from recorder.subscriptions import SubscriptionBook
from recorder.waiting import wait_set

log = logging.getLogger(__name__)

# A session check this recent is as fresh as IBKR's pacing of /tickle (1 a second) allows.
SESSION_FRESH_SECONDS = 1.0
# How long a close the recorder sends may go unanswered while the socket has nothing to read
# (time spent waiting for storage is not counted: see Multiplexer._close_reading_on).
CLOSE_WAIT_SECONDS = 2.0

EmitEvent = Callable[[str, str | None, Any], None]
PutFrame = Callable[[Frame], Awaitable[None]]
KeepFrame = Callable[[Frame], None]


def _abort(ws: ClientConnection) -> None:
    """Drop the connection at once, with no closing handshake (the reader then ends it)."""
    transport = ws.transport
    if transport is not None:
        transport.abort()


class Multiplexer:
    """Owns the websocket for the whole run. Put :meth:`run` in the task group; call
    :meth:`stop` for a clean stop (unsubscribe, close), after which :meth:`run` returns."""

    def __init__(
        self,
        url: str,
        tls: ssl.SSLContext | None,
        session: SessionKeeper,
        config: SessionConfig,
        book: SubscriptionBook,
        smh: SmhScheduler,
        put: PutFrame,
        emit: EmitEvent,
        counters: Counters,
        keep: KeepFrame,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._tls = tls
        self._session = session
        self._config = config
        self._book = book
        self._smh = smh
        self._put = put
        self._keep = keep
        self._emit = emit
        self._counters = counters
        self._clock = clock
        self._rng = rng or random.Random()
        self._open_timeout = open_timeout
        self._ws: ClientConnection | None = None
        self._closing: asyncio.Future[None] | None = None  # our close after an auth loss
        self._closing_since = 0.0  # when it was sent, or the reader last waited for storage
        self._stopping = False
        self._wake = asyncio.Event()
        self._last_frame = 0.0
        self._last_heartbeat: float | None = None
        self._authenticated_once = False
        self._sent_session = False  # this connection was sent {"session": …} (it is, once)
        self._denied = False  # an sts said unauthenticated before this connection authenticated
        # the open gap: what the last connection ended on, until the next one opens
        self._gap: dict[str, Any] | None = None
        self._last_in_ns = 0
        self._last_in_seq = 0
        self._putting = False  # the reader waits for storage to take a frame it received
        self._sends_waiting = 0  # sends whose frame waits for storage (reader or ticker)
        self._listing_orders: asyncio.Task[None] | None = None  # GET /iserver/account/orders
        self._list_again = False  # a socket logged in while a list was on its way
        self.authenticated = False
        self.connects = 0
        self.reconnects = 0
        self.frames_in = 0
        self.frames_by_topic: Counter[bytes] = Counter()

    @property
    def smh_open(self) -> int:
        return self._smh.open_count

    @property
    def smh_queued(self) -> int:
        return self._smh.queued_count

    @property
    def last_heartbeat_at(self) -> float | None:
        """Monotonic time of the gateway's last heartbeat (``system`` ``hb``, every 10 s), or
        None before the first."""
        return self._last_heartbeat

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            listing, self._listing_orders = self._listing_orders, None
            if listing is not None:
                listing.cancel()
                await asyncio.gather(listing, return_exceptions=True)

    async def _run(self) -> None:
        delays = self._fresh_backoff()
        while not self._stopping:
            session_id = await self._wait_ready()
            if session_id is None:
                break
            authenticated = False
            opened = self._clock()
            try:
                authenticated = await self._connect_and_serve(session_id)
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                self._emit("connect_failed", None, {"error": f"{type(exc).__name__}: {exc}"})
                log.warning("websocket connect failed: %s: %s", type(exc).__name__, exc)
            if self._stopping:
                break
            # SPEC §5: back off, re-check the session, reconnect. The keeper asks REST while we
            # wait, and the next socket takes the session id from its answer.
            self._session.recheck()
            checked = self._clock()
            # Back to the shortest wait only after a connection that was of use: authenticated,
            # and up for longer than the longest wait. A gateway that takes every socket and
            # drops it soon after keeps getting longer waits.
            if authenticated and self._clock() - opened >= self._config.reconnect_max_seconds:
                delays = self._fresh_backoff()
            delay = next(delays)
            self._emit("reconnect_wait", None, {"seconds": round(delay, 3)})
            await self._sleep(delay)
            if self._clock() - checked >= SESSION_FRESH_SECONDS:
                # A gateway restarted during the wait has a new session id, and a socket
                # with the old one is refused: ask again, right before the socket.
                self._session.recheck()

    @property
    def waiting_for_storage(self) -> bool:
        """Whether a frame read or sent is waiting for room in storage now (backpressure)."""
        return self._putting or self._sends_waiting > 0

    async def stop(self) -> None:
        """Unsubscribe everything and close the socket with 1000. :meth:`run` returns once the
        gateway has closed it too: every frame it sent before its close is read and handed on,
        however long storage takes to take them (SPEC §7: a clean stop loses nothing)."""
        self._stopping = True
        self._wake.set()
        ws = self._ws
        if ws is None:  # stopped while disconnected, or connecting (see _connect_and_serve)
            self._end_gap(None)  # the gap ends with the run
            return
        if self.authenticated:
            try:
                await self._execute(ws, self._book.unsubscribe_all())
            except ConnectionClosed:
                pass
        if self._closing is None:
            self._close_reading_on(ws, self._clock(), "recorder stopping")

    # -- one connection ----------------------------------------------------------------------

    async def _connect_and_serve(self, session_id: str) -> bool:
        """Serve one connection until it closes. True if it was healthy (authenticated)."""
        async with connect(
            self._url,
            additional_headers={"Cookie": f"api={session_id}"},
            ssl=self._tls,
            open_timeout=self._open_timeout,
            close_timeout=CLOSE_WAIT_SECONDS,
            ping_interval=None,  # the gateway's hb and our tic are the keep-alive
            compression=None,
            max_size=None,  # a frame over 1 MiB is still a frame to keep
            max_queue=64,
            proxy=None,
        ) as ws:
            if self._stopping:  # stopped during the handshake: nothing was sent on it yet
                await ws.close(1000, "recorder stopping")
                return False
            self._ws = ws
            self._counters.conn_id += 1
            self.connects += 1
            if self.connects > 1:
                self.reconnects += 1
            self.authenticated = False
            local = ws.local_address
            self._emit("connect", None, {
                "conn_id": self._counters.conn_id, "url": self._url,
                "local": f"{local[0]}:{local[1]}" if local else None,
            })
            self._end_gap(self._counters.conn_id)
            self._last_in_ns, self._last_in_seq, self._putting = time.time_ns(), 0, False
            log.info("websocket connected (connection %d)", self._counters.conn_id)
            ever_authenticated = False
            self._last_frame = self._clock()
            ticker = asyncio.create_task(self._tick(ws), name="ticker")
            try:
                ever_authenticated = await self._read(ws, session_id)
            finally:
                ticker.cancel()
                try:
                    await ticker
                except asyncio.CancelledError:
                    pass
                closed_by_us = self._closing is not None
                if self._closing is not None:
                    closing, self._closing = self._closing, None
                    closing.cancel()  # done by now unless this connection ended otherwise
                    await asyncio.gather(closing, return_exceptions=True)
                self._ws = None
                self.authenticated = False
                self._book.on_disconnected()
                self._smh.on_disconnected()
                code = ws.close_code
                self._emit(
                    "disconnect",
                    None,
                    {"conn_id": self._counters.conn_id, "code": code, "reason": ws.close_reason,
                     "stopping": self._stopping},
                )
                if not self._stopping:
                    self._gap = {"conn_id": self._counters.conn_id, "start_ns": self._last_in_ns,
                                 "last_seq": self._last_in_seq, "code": code}
                    log.warning("websocket closed (code %s); reconnecting", code)
                    # the gateway's close loop of a lost session; not its answer to ours
                    if code == 1000 and not self._authenticated_once and not closed_by_us:
                        self._session.auth_lost("websocket closed 1000 before authentication")
            return ever_authenticated

    async def _read(self, ws: ClientConnection, session_id: str) -> bool:
        try:
            return await self._read_frames(ws, session_id)
        except ConnectionClosed:  # a send to a socket that just died
            return self.connects > 0 and self._authenticated_once

    async def _read_frames(self, ws: ClientConnection, session_id: str) -> bool:
        self._authenticated_once = self._sent_session = self._denied = False
        conn_id = self._counters.conn_id
        put = self._put
        counters = self._counters
        by_topic = self.frames_by_topic
        clock = self._clock
        time_ns = time.time_ns
        while True:
            try:
                data = await ws.recv(decode=False)
            except ConnectionClosed:
                return self._authenticated_once
            ts = time_ns()
            if isinstance(data, str):  # cannot happen with decode=False; keep the type honest
                data = data.encode()
            self._last_frame = clock()
            self.frames_in += 1
            try:
                topic, signal = classify(data)
            except Exception:  # a bug must not end the run: the frame is still recorded
                log.exception("could not classify a frame; recording it as is")
                topic, signal = b"message", None
            by_topic[topic] += 1
            counters.seq += 1
            self._putting = True  # blocked here is backpressure, not a silent socket
            frame = Frame(ts, conn_id, counters.seq, IN, data)
            try:
                await put(frame)
            except asyncio.CancelledError:
                self._keep(frame)
                raise
            self._putting = False
            self._last_in_ns, self._last_in_seq = ts, counters.seq
            if signal is None or self._closing is not None:
                continue  # closing: read the socket out, but answer nothing on it
            try:
                await self._on_signal(ws, signal, session_id)
            except ConnectionClosed:
                pass  # a send to a socket that is going away: recv() still drains what came

    async def _on_signal(self, ws: ClientConnection, signal: Any, session_id: str) -> None:
        """React to a frame the socket must answer (``_authenticated_once`` records that this
        connection authenticated, ``_sent_session`` that it was sent the session once)."""
        conn_id = self._counters.conn_id
        now = self._clock()
        if isinstance(signal, AuthChanged):
            if signal.authenticated and not self.authenticated:
                await self._subscribe(ws, now, {"source": "sts", "conn_id": conn_id})
            elif not signal.authenticated and not self.authenticated:
                self._denied = True  # a tic answer does not log this socket in, then
            elif not signal.authenticated and self.authenticated:
                self.authenticated = False
                self._book.on_disconnected()
                self._smh.on_disconnected()
                self._session.auth_lost("sts authenticated: false")
                # the subscriptions went with the session, and nothing on this socket brings
                # them back (a gateway may keep it open): the next socket subscribes afresh
                self._close_reading_on(ws, now, "authentication lost")
        elif isinstance(signal, Heartbeat):
            self._last_heartbeat = now
        elif isinstance(signal, TicAnswer):
            if (signal.alive and signal.session_id == session_id and not self.authenticated
                    and not self._denied):
                log.info("the gateway sent no sts on this socket but answers its tic for the "
                         "session: subscribing")
                await self._subscribe(ws, now, {"source": "tic", "conn_id": conn_id})
        elif isinstance(signal, Competing):
            self._emit("auth", None, {"competing": signal.competing, "source": "sts"})
        elif isinstance(signal, SmhAnswer):
            await self._execute(ws, self._smh.on_answer(signal.conid, signal.server_id, now))
        elif isinstance(signal, WaitingForSession) and not self._sent_session:
            self._sent_session = True
            await self._send(ws, f'{{"session":"{session_id}"}}')
        elif isinstance(signal, SessionRefused) and self._sent_session and not self.authenticated:
            # The gateway does not know this session id (restarted, logged in anew) or it is
            # not authenticated: this socket will never stream, and resending does not help
            # (behaviours §2, §38). Ask REST for the session, and open a new socket with it,
            # instead of waiting out the heartbeat timeout on this one.
            log.warning("the gateway refused the session id on the socket; checking the session "
                        "and reconnecting")
            self._session.auth_lost("session refused on the socket")
            self._close_reading_on(ws, now, "authentication lost")

    async def _subscribe(self, ws: ClientConnection, now: float, detail: dict[str, Any]) -> None:
        """The socket is logged in (``detail`` says how): send every subscription."""
        self.authenticated = self._authenticated_once = True
        self._emit("auth_ok", None, detail)
        if self._book.orders:
            if self._listing_orders is None or self._listing_orders.done():
                self._listing_orders = asyncio.create_task(self._list_orders(), name="orders")
            else:  # one request at a time: this socket's list comes after the one on its way
                self._list_again = True
        await self._execute(ws, self._book.on_authenticated(now))
        await self._execute(ws, self._smh.on_authenticated(now))
        self._wake.set()

    def _close_reading_on(self, ws: ClientConnection, now: float, reason: str) -> None:
        """Close the socket with 1000 and read on until the gateway has closed it too. No time
        limit on websockets' side: while storage makes the reader wait, the gateway's close
        waits unread behind its frames, and a limit would abort the socket and lose them. The
        ticker gives up instead, once the socket has had :meth:`_close_wait` seconds of reading
        without closing, not counting time spent waiting for storage (see
        :meth:`_tick_until_closed`)."""
        ws.close_timeout = None
        self._closing_since = now
        self._closing = asyncio.ensure_future(ws.close(1000, reason))

    def _close_wait(self) -> float:
        """How long a closing socket may go on without the gateway's close: at a stop, as
        long as websockets would wait (the frames before the close take no time to read
        unless storage is slow, and that time is not counted); after an auth loss, the
        dead-socket timeout, since nothing waits for the recorder then."""
        if self._stopping:
            return min(CLOSE_WAIT_SECONDS, self._config.heartbeat_timeout_seconds)
        return self._config.heartbeat_timeout_seconds

    async def _tick(self, ws: ClientConnection) -> None:
        """Timers of one connection: tic, the dead-socket watchdog, smd refresh, smh slots."""
        try:
            await self._tick_until_closed(ws)
        except ConnectionClosed:
            pass  # the reader sees the close too and ends the connection

    async def _tick_until_closed(self, ws: ClientConnection) -> None:
        keepalive = KeepAlive(self._config, self._clock())
        while True:
            now = self._clock()
            if self.waiting_for_storage:
                # frames are waiting for storage, not for the socket: it is not silent, and
                # a close it was sent is not overdue
                self._last_frame = self._closing_since = now
            keepalive.on_frame(self._last_frame)
            if self._authenticated_once:
                keepalive.on_authenticated()
            if self._closing is not None and now - self._closing_since >= self._close_wait():
                self._emit("close_timeout", None, {"seconds": round(now - self._closing_since, 1)})
                log.warning("the gateway did not close the socket: aborting it")
                _abort(ws)
                return
            for due in keepalive.poll(now):
                if due is Due.TIC:
                    if self._closing is None:  # a closing socket sends nothing more
                        await self._send(ws, "tic")
                elif due is Due.DEAD:
                    silent = round(now - self._last_frame, 1)
                    self._emit("heartbeat_timeout", None, {"silent_seconds": silent})
                    log.warning("no frame for %.1f s: the socket is dead, reconnecting", silent)
                    _abort(ws)
                    return
                elif due is Due.UNAUTHENTICATED and self._closing is None:
                    # open, beating, maybe saying authenticated: false, and never streaming
                    # (behaviours §38): the session went, whatever REST said before the socket
                    waited = self._config.heartbeat_timeout_seconds
                    self._emit("auth_timeout", None, {"seconds": waited})
                    log.warning("the socket was not authenticated within %.0f s: checking the "
                                "session and reconnecting", waited)
                    self._session.auth_lost("socket not authenticated")
                    self._close_reading_on(ws, now, "not authenticated")
            deadlines = [keepalive.next_deadline()]
            if self._closing is not None:
                deadlines.append(self._closing_since + self._close_wait())
            if self.authenticated and not self._stopping:
                await self._execute(ws, self._book.poll(now), timers=True)
                await self._execute(ws, self._smh.poll(now), timers=True)
                deadlines += [d for d in (self._book.next_deadline(), self._smh.next_deadline())
                              if d is not None]
            wait = min(deadlines) - self._clock()
            self._wake.clear()
            await wait_set(self._wake, min(max(wait, 0.01), 1.0))

    async def _list_orders(self) -> None:
        """The day's orders over REST, beside the ``sor`` subscription (seed 001 advises it):
        ``sor`` sends only changes, so an order placed before the recording, or changed while
        no socket was up, would otherwise never be recorded whole. The answer is kept as an
        ``orders_snapshot`` event, whose orders the normalizer turns into ``orders`` rows."""
        again = True
        while again:
            self._list_again = False
            try:
                body = await self._session.day_orders()
            except Exception:  # a bug here must not go unseen, nor end the recording
                log.exception("listing the day's orders failed")
                body = None
            if body is not None:
                orders = body.get("orders") if isinstance(body, dict) else None
                self._emit(ORDERS_SNAPSHOT, "sor", body)
                log.info("the gateway lists %s order(s) for the day",
                         len(orders) if isinstance(orders, list) else "?")
            again = self._list_again and not self._stopping

    # -- helpers -----------------------------------------------------------------------------

    def _end_gap(self, next_conn_id: int | None) -> None:
        """Record the gap a lost connection left: from the last frame received on it
        (``start_ns``, ``last_seq``) to the next connection (``end_ns``, ``next_conn_id``), or
        to the stop (``next_conn_id`` null). Frames the gateway sent in it were not received."""
        gap, self._gap = self._gap, None
        if gap is None:
            return
        end = time.time_ns()
        self._emit("gap", None, {**gap, "end_ns": end, "next_conn_id": next_conn_id,
                                 "seconds": round((end - gap["start_ns"]) / 1e9, 3)})

    async def _execute(self, ws: ClientConnection, actions: Iterable[Action],
                       timers: bool = False) -> None:
        """Carry out ``actions`` in order. The timers' (a refresh's ``umd`` then ``smd``) stop
        once :meth:`stop` begins: a send that waited for storage must not subscribe again
        after the stop's unsubscribes."""
        for action in actions:
            if timers and self._stopping:
                return
            if isinstance(action, Send):
                await self._send(ws, action.text)
            elif isinstance(action, Note):
                self._emit(action.kind, action.topic, dict(action.detail or {}))

    async def _send(self, ws: ClientConnection, text: str) -> None:
        await ws.send(text)
        frame = Frame(time.time_ns(), self._counters.conn_id, self._counters.next_seq(), OUT,
                      text.encode())
        self._sends_waiting += 1
        try:
            await self._put(frame)
        except asyncio.CancelledError:
            # Sent, so it is kept: the ticker is cancelled when its connection ends, maybe while
            # storage is full and this put waits.
            self._keep(frame)
            raise
        finally:
            self._sends_waiting -= 1

    async def _wait_ready(self) -> str | None:
        ready = asyncio.ensure_future(self._session.wait_ready())
        woken = asyncio.ensure_future(self._wake_for_stop())
        done, pending = await asyncio.wait({ready, woken}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return ready.result() if ready in done and not self._stopping else None

    async def _wake_for_stop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):  # not wait_for: see recorder/waiting.py
                await self._wake_for_stop()
        except TimeoutError:
            pass

    def _fresh_backoff(self) -> Any:
        return backoff(self._config.reconnect_min_seconds, self._config.reconnect_max_seconds,
                       self._rng)
