"""The simulator's aiohttp application: REST under ``/v1/api`` and the websocket route.

Every REST call counts in ``stats.rest_calls`` and its own counter (``/iserver/account/orders``
answers the day's orders: :meth:`recorder.sim.account.Account.day_orders`); a pending
``rest_fault`` answers first (429 ``Too many requests`` or any other status). Auth rules are in
:mod:`recorder.sim.rest`. Both GET and POST are accepted where real gateways accept either.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from recorder.sim import rest
from recorder.sim.rest import AuthState

if TYPE_CHECKING:
    from recorder.sim.server import SimGateway

_COUNTERS = {
    "/tickle": "tickle_calls",
    "/iserver/auth/status": "auth_status_calls",
    "/sso/validate": "validate_calls",
    "/iserver/auth/ssodh/init": "ssodh_init_calls",
    "/iserver/reauthenticate": "reauthenticate_calls",
    "/logout": "logout_calls",
    "/iserver/account/orders": "orders_calls",
}


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def build_app(gw: SimGateway) -> web.Application:
    app = web.Application()

    async def handle(request: web.Request) -> web.Response:
        path = request.path.removeprefix("/v1/api")
        gw.stats.rest_calls += 1
        setattr(gw.stats, _COUNTERS[path], getattr(gw.stats, _COUNTERS[path]) + 1)
        fault = gw.take_rest_fault(path)
        if fault is not None:
            text = "Too many requests" if fault == 429 else "Internal Server Error"
            return _json(fault, {"error": text, "statusCode": fault})
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                parsed = orjson.loads(await request.read() or b"{}")
            except orjson.JSONDecodeError:
                parsed = {}
            body = parsed if isinstance(parsed, dict) else {}
        before = gw.auth
        status, after = rest.decide(path, before, body)
        if after is not before:
            if after is AuthState.OK:
                gw.restore_session()
            else:
                gw.expire_session()  # /logout ends the session; open sockets are closed
        if status != 200:
            return _json(status, {"error": "not authenticated", "statusCode": status})
        now_ms = int(time.time() * 1000)
        if path == "/tickle":
            if not gw.tickle_auth_status:
                return _json(200, {"session": gw.session_id})
            return _json(200, rest.tickle(gw.session_id, gw.auth, 415_890))
        if path == "/sso/validate":
            return _json(200, rest.validate(gw.options.username, gw._started_ms, now_ms, 415_890))
        if path == "/iserver/reauthenticate":
            return _json(200, {"message": "triggered"})
        if path == "/logout":
            return _json(200, {"status": True})
        if path == "/iserver/account/orders":
            return _json(200, gw.account_sim.day_orders(gw.market.quote(265598), gw._started_ms))
        return _json(200, rest.auth_status(gw.auth))  # auth/status, ssodh/init

    for path in _COUNTERS:
        app.router.add_route("GET", "/v1/api" + path, handle)
        app.router.add_route("POST", "/v1/api" + path, handle)
    app.router.add_get("/v1/api/ws", gw.ws_handler)
    return app
