"""The state every part of the simulated gateway shares, and the one way frames leave it.

:class:`GatewayCore` holds the options, counters, traffic records, market, account and the
open connections; :meth:`GatewayCore.send` is the only place a frame is written to a socket
(so stalls, traffic recording and debug logging apply to every frame alike). The constructor
does no I/O: sockets, files and tasks appear in ``SimGateway.start``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from recorder.sim.account import Account
from recorder.sim.connection import Conn
from recorder.sim.market import Market
from recorder.sim.options import ReceivedFrame, SentFrame, SimOptions, SimStats
from recorder.sim.rest import AuthState

log = logging.getLogger("recorder.sim")


class GatewayCore:
    def __init__(self, options: SimOptions | None = None) -> None:
        self.options = (options or SimOptions()).validate()
        self.session_id = self.options.resolved_session_id()
        self.stats = SimStats()
        self.sent: list[SentFrame] = []
        self.received: list[ReceivedFrame] = []
        self.market = Market(self.options.seed)
        self.auth = AuthState.OK
        self.conns: dict[int, Conn] = {}
        self.peers: dict[int, str] = {}  # conn_id -> the client's "host:port", for matching
        self.port = self.options.port
        self.cafile: str | None = None
        self._next_conn = 0
        self._next_q = 1
        self._next_smh = 588547 + self.options.seed % 1000
        self._tick = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._rate_task: asyncio.Task[None] | None = None
        self._rest_fault: tuple[int, int, str | None] = (0, 0, None)  # status, count, path
        self._runner: web.AppRunner | None = None
        self._ssl: Any = None
        self._certdir: tempfile.TemporaryDirectory[str] | None = None
        self._certs = 0
        self._sessions = 0  # restarts with a new session id
        # False: /tickle answers {"session": …} alone, as seed 000 documents it
        self.tickle_auth_status = True
        self._close_new = 0  # sockets still to close 1000 before login (close_new_sockets)
        self._hold_handshakes = 0.0  # seconds each upgrade is held back (hold_handshakes)
        self._unauthenticated_logins = 0  # sockets still to log in unauthenticated
        self._burst_sessions: set[str] = set()  # session ids whose login burst was sent
        self._started_ms = 0
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.account_sim = Account(self.options.account, self.options.seed)

    # ---- helpers used by the websocket and REST sides ----------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record_received(self, conn: Conn, payload: bytes) -> None:
        self.stats.frames_received += 1
        if self.options.record_traffic:
            self.received.append(ReceivedFrame(conn.conn_id, time.time_ns(), payload))
        if self._debug:
            log.debug("<- conn %d %r", conn.conn_id, payload[:300])

    async def send(self, conn: Conn, payload: bytes, topic: str | None) -> None:
        """Send one text frame of exact bytes, unless the socket is closed or stalled."""
        if conn.closed or conn.stalled_until > time.monotonic():
            return
        try:
            await conn.ws.send_frame(payload, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            conn.closed = True
            return
        except asyncio.CancelledError:
            # aiohttp writes an uncompressed frame to the transport before it awaits the drain,
            # the only place a cancel can land: the frame is on its way, so it counts as sent
            self._sent(conn, payload, topic)
            raise
        self._sent(conn, payload, topic)

    def _sent(self, conn: Conn, payload: bytes, topic: str | None) -> None:
        self.stats.frames_sent += 1
        if self.options.record_traffic:
            self.sent.append(SentFrame(conn.conn_id, time.time_ns(), topic, payload))
        if self._debug:
            log.debug("-> conn %d %r", conn.conn_id, payload[:300])

    def next_server_id(self) -> str:
        q = f"q{self._next_q}"
        self._next_q += 1
        return q

    def next_smh_id(self) -> str:
        self._next_smh += 1 + self._next_smh % 7
        return str(self._next_smh)

    def updated_now_ms(self) -> int:
        """The latest point of the ``_updated`` grid at or before now."""
        interval = self.options.update_interval
        now = time.time()
        return round((math.floor((now - 0.004) / interval) * interval + 0.004) * 1000)

    def take_rest_fault(self, path: str) -> int | None:
        """The status a call to ``path`` (under ``/v1/api``) must answer, if a fault is due."""
        status, count, only = self._rest_fault
        if count <= 0 or only not in (None, path):
            return None
        self._rest_fault = (status, count - 1, only)
        self.stats.rest_faults += 1
        return status

    def _abort_all(self) -> None:
        for conn in list(self.conns.values()):
            conn.abort()
