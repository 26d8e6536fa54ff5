"""The REST side of a gateway session: who we are, whether we may stream, and staying alive.

Rules this module keeps (SPEC §5):

- ``GET /tickle`` gives the session id (a credential: registered with the :class:`Redactor`
  at once, never logged) and ``iserver.authStatus``.
- Not authenticated: with ``compete = true`` we ``POST /iserver/auth/ssodh/init``
  ``{"publish":true,"compete":true}``; otherwise we only poll ``/iserver/auth/status`` and
  wait. The recorder never takes the brokerage session from TWS unless told to.
- ``/tickle`` every ``tickle_seconds``; ``/sso/validate`` on the slower timer of
  :class:`recorder.policy.SessionTimers` (never more than once a minute).
- Every request goes through the :class:`recorder.pacing.Pacer` (IBKR's pacing table).
- Nothing here ever ends the process: a refused connection, a 401, a 429 or a 500 is noted as
  an event, backed off, and retried.

The gateway base URL and the authentication step are each in one place (``GatewayApi`` and
``SessionKeeper._authenticate``) so OAuth straight to api.ibkr.com can slot in later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from recorder.config import ConfigError, GatewayConfig, SessionConfig
from recorder.pacing import Pacer
from recorder.policy import Due, SessionTimers, backoff
from recorder.redact import Redactor
from recorder.waiting import wait_set

log = logging.getLogger(__name__)

API_PREFIX = "/v1/api"
EmitEvent = Callable[[str, str | None, Any], None]


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(gateway: GatewayConfig,
                cafile_key: str = "gateway.cafile") -> ssl.SSLContext | None:
    """The TLS policy of SPEC §5, decided before anything connects.

    Loopback gateways (the Client Portal gateway's own self-signed certificate) are accepted
    unverified unless ``cafile`` is given. Any other host needs ``cafile`` to verify against, or
    an explicit ``insecure``; otherwise :class:`ConfigError` names ``gateway.cafile``. Plain
    ``http`` (the session cookie in clear) is for loopback only, unless ``insecure``. A
    ``cafile`` that cannot be loaded is named as ``cafile_key`` (``--cafile`` when the option
    gave it).
    """
    parts = urlsplit(gateway.url)
    if parts.scheme == "http":
        if is_loopback(parts.hostname or "") or gateway.insecure:
            return None
        raise ConfigError("gateway.url", (
            f"http:// to {parts.hostname}, which is not a loopback host, would send the session "
            "cookie unencrypted: use https://, or --insecure to allow it"))
    if gateway.cafile:
        try:
            return ssl.create_default_context(cafile=gateway.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(cafile_key, f"cannot load {gateway.cafile}: {exc}") from exc
    if is_loopback(parts.hostname or "") or gateway.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    raise ConfigError(
        "gateway.cafile",
        f"{parts.hostname} is not a loopback host: give gateway.cafile (--cafile PEM) to verify "
        "its certificate, or --insecure to accept it unverified",
    )


def _connect_failure(error: OSError) -> str:
    """Why a connection failed, plainly: the errno's text (``Connection refused``), but for a
    TLS failure its reason, whose errno (1) is not an errno (it read "Operation not
    permitted")."""
    if isinstance(error, ssl.SSLError):
        reason = error.reason or str(error)
        if reason == "WRONG_VERSION_NUMBER":  # the answer was not TLS
            return "TLS handshake failed: the gateway answered without TLS (use http://)"
        return f"TLS handshake failed: {reason}"
    return os.strerror(error.errno) if error.errno else (str(error) or type(error).__name__)


def untrusted_certificate(gateway: GatewayConfig, error: RestError) -> ConfigError:
    """What to tell the user whose gateway's certificate did not verify at the first contact
    (see :class:`SessionKeeper`). Only a ``cafile`` verifies (:func:`tls_context`), so it is
    the one at fault."""
    return ConfigError("gateway.cafile", (
        f"the certificate of {gateway.url} does not verify against {gateway.cafile} "
        f"({error.untrusted}): give the gateway's own certificate, or no cafile for a gateway "
        "on this machine"))


def ws_url(gateway_url: str) -> str:
    parts = urlsplit(gateway_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{API_PREFIX}/ws"


@dataclass(frozen=True)
class AuthStatus:
    authenticated: bool
    competing: bool = False
    connected: bool = False
    message: str = ""

    @classmethod
    def from_json(cls, body: Any) -> AuthStatus:
        if not isinstance(body, dict):
            return cls(False, message="unreadable auth status")
        return cls(
            authenticated=body.get("authenticated") is True,
            competing=body.get("competing") is True,
            connected=body.get("connected") is True,
            message=str(body.get("message") or body.get("fail") or ""),
        )


class RestError(Exception):
    """A REST call that did not give a usable answer (connection, HTTP status, bad body)."""

    def __init__(self, path: str, status: int | None, message: str, *,
                 untrusted: str | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.status = status
        self.untrusted = untrusted  # why the gateway's TLS certificate did not verify, if so


def waiting_hint(competing: bool, url: str) -> str:
    """What the user can do while the recorder waits for a session it will not take."""
    if competing:
        return ("another login holds the brokerage session (TWS, the mobile app, another "
                "gateway): log it out, or set compete = true under [session] to take the "
                "session over")
    return f"log in at {url} in a browser; recording starts once the session is authenticated"


class GatewayApi:
    """The thin REST driver: paced JSON requests under ``/v1/api``."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        tls: ssl.SSLContext | None,
        pacer: Pacer,
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._http = http
        self.url = base_url.rstrip("/")
        self._base = self.url + API_PREFIX
        # aiohttp: an SSLContext to use, or True for its default verification; plain http: True
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self._pacer = pacer
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.calls = 0
        self.answered = False  # the gateway has answered a request (any HTTP status)

    async def _endpoint_turn(self, path: str) -> None:
        """Wait until ``path``'s own pacing limit lets it go, holding no slot meanwhile, so
        requests to other endpoints go on (another request to ``path`` may take the turn
        first: then wait again)."""
        turn = self._pacer.endpoint_wait(path, self._clock())
        while turn > 0:
            await asyncio.sleep(turn)
            turn = self._pacer.endpoint_wait(path, self._clock())

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        await self._endpoint_turn(path)
        wait = self._pacer.reserve(path, self._clock())
        if wait > 0:
            await asyncio.sleep(wait)
        self.calls += 1
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._http.request(
                method,
                self._base + path,
                data=data,
                headers=headers,
                ssl=self._tls,
                timeout=self._timeout,
            ) as response:
                self.answered = True
                raw = await response.read()
                if response.status != 200:
                    raise RestError(path, response.status, f"HTTP {response.status}")
        except aiohttp.ClientConnectorCertificateError as exc:
            error = exc.certificate_error
            reason = getattr(error, "verify_message", None) or str(error)
            raise RestError(path, None, f"TLS certificate not trusted: {reason}",
                            untrusted=reason) from exc
        except aiohttp.ClientConnectorError as exc:  # its text shows the SSLContext's repr
            raise RestError(path, None, f"cannot connect to {exc.host}:{exc.port}: "
                            f"{_connect_failure(exc.os_error)}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            if (isinstance(exc, aiohttp.ServerDisconnectedError) and not self.answered
                    and self._base.startswith("http://")):
                # what a TLS server does with plain http: the Client Portal gateway's default
                detail += " without an answer (if the gateway uses TLS, use https://)"
            raise RestError(path, None, detail) from exc
        try:
            return orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError as exc:
            raise RestError(path, 200, f"not JSON: {exc}") from exc


class SessionKeeper:
    """Keeps a gateway session authenticated and alive; tells the socket when it may stream.

    Run :meth:`run` in the recorder's task group. :meth:`wait_ready` returns the session id
    once the brokerage session is authenticated; :meth:`auth_lost` (called by the socket on an
    ``sts`` saying unauthenticated, or a close-1000 loop) makes the keeper check again at once.

    Every failure is retried, but one: a TLS certificate that does not verify before the
    gateway has ever answered is the config's (a wrong ``cafile``), not the gateway's, and
    waiting does not mend it. ``on_untrusted`` is told, and :meth:`run` returns. Once the
    gateway has answered, a certificate that stops verifying is retried like any failure.
    """

    def __init__(
        self,
        api: GatewayApi,
        session: SessionConfig,
        redactor: Redactor,
        emit: EmitEvent,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        poll_seconds: float = 5.0,
        on_untrusted: Callable[[RestError], None] | None = None,
    ) -> None:
        self._api = api
        self._on_untrusted = on_untrusted
        self._config = session
        self._redactor = redactor
        self._emit = emit
        self._clock = clock
        self._rng = rng or random.Random()
        self._poll_seconds = poll_seconds
        self._ready = asyncio.Event()
        self._recheck = asyncio.Event()
        self.session_id: str | None = None
        self.status = AuthStatus(False)
        self._announced = False  # auth_ok emitted and no auth_lost since
        self.tickles = 0
        self.rest_errors = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> str:
        await self._ready.wait()
        assert self.session_id is not None
        return self.session_id

    def auth_lost(self, reason: str) -> None:
        """The socket saw the session go: stop streaming and check the REST side again."""
        self._ready.clear()
        if self._announced:
            self._announced = False
            self._emit("auth_lost", None, {"reason": reason})
        self._recheck.set()

    def recheck(self) -> None:
        """The socket ended without a word about the session (a drop, a stall, a refused
        connect): confirm the session over REST before the next socket opens, which then
        takes the session id from that answer (a restarted gateway has a new one). Nothing is
        known lost, so no event, unless the answer says so."""
        self._ready.clear()
        self._recheck.set()

    async def run(self) -> None:
        while await self._authenticate():
            await self._keep_alive()

    async def _tickle(self) -> AuthStatus | None:
        """``/tickle``: the session id, and the auth status when the answer carries one (None
        when it does not: seed 000 documents a bare ``{"session": …}``)."""
        body = await self._api.request("GET", "/tickle")
        self.tickles += 1
        if not isinstance(body, dict):
            raise RestError("/tickle", 200, "answer is not an object")
        session = body.get("session")
        if isinstance(session, str) and session:
            self._redactor.add(session)
            self.session_id = session
        iserver = body.get("iserver")
        auth = iserver.get("authStatus") if isinstance(iserver, dict) else None
        return None if auth is None else AuthStatus.from_json(auth)

    async def _authenticate(self) -> bool:
        """Loop until the brokerage session is authenticated (True); back off on errors.
        False: the certificate is the config's fault (see the class), and ``on_untrusted``
        was told."""
        delays: Iterator[float] = backoff(
            self._config.reconnect_min_seconds, self._config.reconnect_max_seconds, self._rng
        )
        said = ""  # the last wait explained: said once, not at every poll
        while True:
            self._recheck.clear()
            try:
                status = await self._tickle_for_status()
                if status is None or not status.authenticated:
                    status = await self._check_status()
                if not status.authenticated and self._config.compete:
                    self._emit("auth", None, {"action": "ssodh_init", "compete": True})
                    body = await self._api.request(
                        "POST", "/iserver/auth/ssodh/init", {"publish": True, "compete": True}
                    )
                    status = AuthStatus.from_json(body)
                    if not status.authenticated:
                        status = await self._check_status()
            except RestError as exc:
                self._note_rest_error(exc)
                if exc.untrusted and not self._api.answered and self._on_untrusted:
                    self._on_untrusted(exc)
                    return False
                log.warning("gateway REST %s; retrying", exc)
                await self._sleep_or_recheck(self._poll_wait(next(delays)))
                continue
            self._set_status(status)
            if status.authenticated and self.session_id:
                return True
            why = status.message or ("competing session" if status.competing else "logged out")
            if self._config.compete:
                log.info("gateway session not authenticated (%s); retrying ssodh/init", why)
            elif why != said:
                log.info("gateway session not authenticated (%s); waiting: %s", why,
                         waiting_hint(status.competing, self._api.url))
            said = why
            await self._sleep_or_recheck(self._poll_wait(next(delays)))

    def _poll_wait(self, delay: float) -> float:
        """The wait before asking again while not streaming: the backoff, but never longer
        than ``tickle_seconds``, since these calls are what keeps the gateway session alive
        meanwhile (IBKR: a session with no requests for a few minutes times out)."""
        return min(self._config.tickle_seconds, max(self._poll_seconds, delay))

    async def _tickle_for_status(self) -> AuthStatus | None:
        """:meth:`_tickle` where a 401 is an answer, not a failure: the gateway's session
        expired or is invalid (seeds 000 and 003), which ``compete`` may take back."""
        try:
            return await self._tickle()
        except RestError as exc:
            return self._not_authenticated(exc, "tickle: HTTP 401 (session expired or invalid)")

    async def _check_status(self) -> AuthStatus:
        """``/iserver/auth/status``. A 401 is an answer here, not a failure: no brokerage
        session (a gateway whose session expired answers so), which ``compete`` goes on to
        take with ssodh/init."""
        try:
            body = await self._api.request("POST", "/iserver/auth/status")
        except RestError as exc:
            return self._not_authenticated(exc, "auth/status: HTTP 401 (no brokerage session)")
        return AuthStatus.from_json(body)

    def _not_authenticated(self, exc: RestError, message: str) -> AuthStatus:
        """A 401 read as "not authenticated" (noted as a REST error too); any other error is
        raised again, as the failure it is."""
        if exc.status != 401:
            raise exc
        self._note_rest_error(exc)
        return AuthStatus(False, message=message)

    def _set_status(self, status: AuthStatus) -> None:
        changed = status != self.status
        self.status = status
        if status.authenticated and self.session_id:
            if not self._announced:
                self._announced = True
                self._emit("auth_ok", None, {"competing": status.competing})
                log.info("gateway session authenticated")
            self._ready.set()
        else:
            self._ready.clear()
            if self._announced:
                self._announced = False
                self._emit("auth_lost", None,
                           {"message": status.message, "competing": status.competing})
            elif changed:
                self._emit("auth", None, {"authenticated": False,
                                          "competing": status.competing,
                                          "message": status.message})

    async def _keep_alive(self) -> None:
        """While authenticated: /tickle and /sso/validate on their timers."""
        timers = SessionTimers(self._config, self._clock())
        while True:
            now = self._clock()
            for due in timers.poll(now):
                try:
                    if due is Due.TICKLE:
                        status = await self._tickle()
                        if status is not None:  # no auth status: the socket's sts tells
                            self._set_status(status)
                            if not status.authenticated:
                                return
                    elif due is Due.VALIDATE:
                        await self._api.request("GET", "/sso/validate")
                except RestError as exc:
                    self._note_rest_error(exc)
                    log.warning("gateway REST %s", exc)
                    if exc.status == 401:
                        self.auth_lost("REST 401")
                        return
            if await self._sleep_or_recheck(max(0.0, timers.next_deadline() - self._clock())):
                return

    async def day_orders(self) -> Any:
        """``GET /iserver/account/orders``: the day's orders, as the gateway answered (None,
        and a ``rest_error`` event, if it did not). A 401 says the session is gone, as from
        any other call."""
        try:
            return await self._api.request("GET", "/iserver/account/orders")
        except RestError as exc:
            self._note_rest_error(exc)
            log.warning("could not list the day's orders: %s", exc)
            if exc.status == 401:
                self.auth_lost("REST 401")
            return None

    def _note_rest_error(self, exc: RestError) -> None:
        self.rest_errors += 1
        self._emit("rest_error", None, {"path": exc.path, "status": exc.status, "error": str(exc)})

    async def _sleep_or_recheck(self, seconds: float) -> bool:
        """Sleep, but wake early when the socket reports auth lost; True if it did."""
        if not await wait_set(self._recheck, seconds):
            return False
        self._recheck.clear()
        return True
