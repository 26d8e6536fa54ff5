"""The simulated gateway's driver: one aiohttp HTTPS+WSS port, REST under ``/v1/api``, the
websocket at ``/v1/api/ws``. It owns time (``time.time()``) and the sockets; every frame's bytes
come from the pure modules (``encode``, ``market``, ``history``, ``account``, ``protocol``).

Invariants:
- Binds ``127.0.0.1`` unless told otherwise; nothing starts before :meth:`SimGateway.start`.
- ``hb`` frames sit on one gateway-wide phase (``hb_ms % hb_interval`` is the same on every
  socket); ``_updated`` values sit on the ``update_interval`` grid, shared by every conid.
- ``server_id`` counters (``q<N>``) belong to the gateway session: one per smd message, in
  arrival order, never reset by a reconnect.
- Subscriptions live on a connection and die with it.
- With ``record_traffic=False`` nothing grows with traffic (only counters change).
- Faults (``drop_connections``, ``stall``, ``expire_session``, …) change what the sockets see;
  the sync ones schedule their sends on tasks the gateway keeps and cancels on stop.

``subscriptions()`` names what is subscribed on open sockets: ``smd+<conidEx>`` (e.g.
``smd+265598``, ``smd+8314@NYSE``; not once expired), ``smh+<conid>`` per held smh slot,
``sbd+<ACCT>+<CONID>[+<EXCH>]``, and ``sor``, ``str``, ``spl``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from recorder.sim import encode
from recorder.sim.cert import CertFiles, server_context, write_self_signed
from recorder.sim.connection import Conn
from recorder.sim.websocket import WebsocketSide

log = logging.getLogger("recorder.sim")


class SimGateway(WebsocketSide):
    """A simulated IBKR Client Portal gateway. ``async with SimGateway(opts) as gw: …``."""

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SimGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def scheme(self) -> str:
        return "https" if self.options.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.options.tls else 'ws'}://{self._url_host}:{self.port}/v1/api/ws"

    @property
    def _url_host(self) -> str:
        host = self.options.host
        return f"[{host}]" if ":" in host else host

    @property
    def connections(self) -> int:
        return sum(1 for c in self.conns.values() if not c.closed)

    async def start(self) -> None:
        """Make the certificate, bind the port, start the hb and update loops."""
        self._started_ms = int(time.time() * 1000)
        if self.options.tls:
            self._certdir = tempfile.TemporaryDirectory(prefix="recorder-sim-")
            self._ssl = server_context(self._write_cert())
        await self._start_site()
        self._loops = [
            asyncio.create_task(self._grid_loop(self.options.hb_interval, 1.501, self._heartbeat)),
            asyncio.create_task(self._grid_loop(self.options.update_interval, 0.004, self._update)),
        ]
        log.info("simulated gateway on %s (websocket %s)", self.url, self.ws_url)

    async def stop(self) -> None:
        """Stop everything; safe to call twice."""
        for task in [*self._loops, *self._tasks, *([self._rate_task] if self._rate_task else [])]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        if self._rate_task:
            await asyncio.gather(self._rate_task, return_exceptions=True)
        self._loops, self._rate_task = [], None
        self._tasks.clear()
        self._abort_all()
        await self._stop_site()
        if self._certdir is not None:
            self._certdir.cleanup()
            self._certdir = None

    async def restart(self, down_seconds: float = 0.0, new_session: bool = False) -> None:
        """Stop and start the server on the same port: open sockets drop, the session stays
        unless ``new_session`` (a restarted real gateway logged in again: ``/tickle`` gives a
        new session id, and a socket with the old one is asked for its session). For
        ``down_seconds`` nothing listens (connections are refused), as while a real gateway's
        process starts again."""
        self._abort_all()
        await self._stop_site()
        if new_session:
            self._sessions += 1
            self.session_id = hashlib.sha256(
                f"{self.session_id}-{self._sessions}".encode()).hexdigest()[:32]
        if down_seconds > 0:
            await asyncio.sleep(down_seconds)
        await self._start_site()

    def _write_cert(self) -> CertFiles:
        assert self._certdir is not None
        self._certs += 1
        files = write_self_signed(
            Path(self._certdir.name), f"sim-cert-{self._certs}", (self.options.host,)
        )
        self.cafile = str(files.certfile)
        return files

    def rotate_certificate(self) -> None:
        """A new self-signed certificate (a new ``cafile``) for connections from now on."""
        if self._ssl is None:
            raise RuntimeError("rotate_certificate needs tls=True and a started gateway")
        files = self._write_cert()
        self._ssl.load_cert_chain(files.certfile, files.keyfile)

    async def _start_site(self) -> None:
        from recorder.sim.routes import build_app

        self._runner = web.AppRunner(
            build_app(self), handle_signals=False, access_log=None, shutdown_timeout=0.2
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.port, ssl_context=self._ssl)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def _stop_site(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ---- timed loops ------------------------------------------------------------------------

    async def _grid_loop(
        self, interval: float, phase: float, action: Callable[[int], Coroutine[Any, Any, None]]
    ) -> None:
        phase = phase % interval
        while True:
            now = time.time()
            due = (math.floor((now - phase) / interval) + 1) * interval + phase
            await asyncio.sleep(max(0.0, due - now))
            try:
                await action(round(due * 1000))
            except Exception:  # a bug in one tick must not stop the gateway
                log.exception("simulated gateway tick failed")

    async def _heartbeat(self, hb_ms: int) -> None:
        payload = encode.heartbeat(hb_ms)
        for conn in list(self.conns.values()):
            if conn.authed:
                await self.send(conn, payload, "system")

    async def _update(self, updated_ms: int) -> None:
        self._tick += 1
        mono = time.monotonic()
        live = [c for c in self.conns.values() if c.authed and not c.closed]
        conids = {s.conid for c in live for s in c.smd.values()} | {
            s.conid for c in live for s in c.sbd.values()
        }
        self.market.step(conids)
        for conn in live:
            for sub in list(conn.smd.values()):  # a umd may come while a send waits
                if sub.expired:
                    continue
                if mono >= sub.expires_at:
                    sub.expired = True  # IBKR ends the stream silently, and keeps it on its books
                    continue
                frame = sub.delta(self.market.quote(sub.conid), updated_ms)
                if frame is not None:
                    await self.send(conn, frame, f"smd+{sub.conid}")
            for sbd in list(conn.sbd.values()):
                await self.send_ladder(conn, sbd)
            if "spl" in conn.streams:
                await self.send(conn, self.account_sim.pnl(self._tick % 17 - 8.0), "spl")
        every = self.options.orders_every_ticks
        if every and self._tick % every == 0 and any({"sor", "str"} & c.streams for c in live):
            await self._order_activity(live, updated_ms)
        every = self.options.bulletin_every_ticks
        if every and self._tick % every == 0:
            payload = encode.blt(f"BLT{self._tick}", "Simulated bulletin: exchange notice")
            for conn in live:
                await self.send(conn, payload, "blt")

    async def _order_activity(self, live: list[Conn], now_ms: int) -> None:
        quote = self.market.quote(265598)
        frames, executions = self.account_sim.lifecycle(quote, now_ms)
        if executions:
            note = encode.ntf(
                "INDICATIVE_DATA_SUGGESTION",
                "Order filled in simulation",
                "Notice",
                "https://interactivebrokers.com/",
            )
            for conn in live:
                await self.send(conn, note, "ntf")
        for conn in live:
            if "sor" in conn.streams:
                for frame in frames:
                    await self.send(conn, frame, "sor")
            if "str" in conn.streams:
                for ex in executions:
                    await self.send(conn, ex.frame(False), "str")
                    await self.send(conn, ex.frame(True), "str")

    # ---- queries ----------------------------------------------------------------------------

    def subscriptions(self) -> set[str]:
        """What is subscribed on open sockets (format in the module docstring)."""
        out: set[str] = set()
        for conn in self.conns.values():
            if conn.closed:
                continue
            out.update(f"smd+{k}" for k, sub in conn.smd.items() if not sub.expired)
            out.update(f"smh+{conid}" for conid in conn.smh.values())
            out.update(conn.sbd)
            out.update(conn.streams)
        return out

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the contract names it timeout
    ) -> None:
        """Poll ``predicate`` every 10 ms until true; raise ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                name = getattr(predicate, "__name__", repr(predicate))
                raise TimeoutError(
                    f"simulated gateway: condition {name} not met within {timeout:.2f}s"
                )
            await asyncio.sleep(0.01)

    # ---- faults (REST side) ----------------------------------------------------------------

    def rest_fault(self, status: int, count: int, path: str | None = None) -> None:
        """The next ``count`` REST calls (to ``path`` only, e.g. ``/iserver/account/orders``,
        if given) answer HTTP ``status`` (e.g. 429 or 500)."""
        self._rest_fault = (status, count, path)


__all__ = ["SimGateway"]
