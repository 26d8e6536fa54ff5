"""The simulator's REST bodies and its auth states (pure: state and ``now_ms`` in, JSON out).

Auth states and what REST answers in each (our reading of the seeds and behaviours §9–11):

============  =========================================  ==========================================
state         ``/tickle``                                 other endpoints
============  =========================================  ==========================================
OK            200, ``authStatus.authenticated: true``    200
EXPIRED       200, ``authenticated: false``              ``/iserver/*`` and ``/sso/validate``: 401,
                                                         except ``/iserver/reauthenticate`` and
                                                         ``/iserver/auth/ssodh/init`` (they restore)
COMPETING     200, ``authenticated: false``,             ``/iserver/auth/status`` 200 with the same;
              ``competing: true``                        ssodh/init with ``compete: true``
                                                         restores; other ``/iserver/*`` 401
MAINTENANCE   200, ``authenticated: false``              every ``/iserver/*`` and validate: 401
TIMED_OUT     401 (the gateway's session timed out:      as EXPIRED
              "all endpoints will return 401", seed 003)
============  =========================================  ==========================================

``/logout`` always answers ``{"status":true}`` and moves to EXPIRED. Bodies are flat objects as
the gateway sends them (the seeds' ``{"success":{"value":…}}`` wrapper is a client library's).
"""

from __future__ import annotations

import enum
from typing import Any
from urllib.parse import unquote

import orjson

from recorder.sim.encode import MAC, SERVER_NAME, SERVER_VERSION

USER_ID = 123456789


class AuthState(enum.Enum):
    OK = "ok"
    EXPIRED = "expired"
    COMPETING = "competing"
    MAINTENANCE = "maintenance"
    TIMED_OUT = "timed_out"


MESSAGES = {
    AuthState.OK: "",
    AuthState.EXPIRED: "",
    AuthState.COMPETING: "competing session",
    AuthState.MAINTENANCE: "maintenance",
    AuthState.TIMED_OUT: "",
}


def auth_status(state: AuthState) -> dict[str, Any]:
    """The ``/iserver/auth/status`` body (also ssodh/init's answer)."""
    return {
        "authenticated": state is AuthState.OK,
        "established": state is AuthState.OK,
        "competing": state is AuthState.COMPETING,
        "connected": state is not AuthState.MAINTENANCE,
        "message": MESSAGES[state],
        "MAC": MAC,
        "serverInfo": {"serverName": SERVER_NAME, "serverVersion": SERVER_VERSION},
        "fail": "",
    }


def tickle(session_id: str, state: AuthState, sso_expires_ms: int) -> dict[str, Any]:
    return {
        "session": session_id,
        "ssoExpires": sso_expires_ms,
        "collission": False,
        "userId": USER_ID,
        "hmds": {"error": "no bridge"},
        "iserver": {
            "authStatus": {
                "authenticated": state is AuthState.OK,
                "competing": state is AuthState.COMPETING,
                "connected": state is not AuthState.MAINTENANCE,
                "message": MESSAGES[state],
                "MAC": MAC,
                "serverInfo": {"serverName": SERVER_NAME, "serverVersion": SERVER_VERSION},
            }
        },
    }


def validate(username: str, auth_time_ms: int, now_ms: int, expires_ms: int) -> dict[str, Any]:
    return {
        "USER_ID": USER_ID,
        "USER_NAME": username,
        "RESULT": True,
        "AUTH_TIME": auth_time_ms,
        "SF_ENABLED": False,
        "IS_FREE_TRIAL": False,
        "CREDENTIAL": username,
        "IP": "127.0.0.1",
        "EXPIRES": expires_ms,
        "QUALIFIED_FOR_MOBILE_AUTH": None,
        "LANDING_APP": "UNIVERSAL",
        "IS_MASTER": False,
        "lastAccessed": now_ms,
        "LOGIN_TYPE": 2,
        "PAPER_USER_NAME": username,
        "features": {
            "env": "PROD",
            "wlms": True,
            "realtime": True,
            "bond": True,
            "optionChains": True,
            "calendar": True,
            "newMf": True,
        },
        "region": "NJ",
    }


def decide(path: str, state: AuthState, body: dict[str, Any]) -> tuple[int, AuthState]:
    """For a REST call: the HTTP status to answer and the auth state afterwards."""
    if path == "/logout":
        return 200, AuthState.EXPIRED
    if path == "/tickle":
        return (401 if state is AuthState.TIMED_OUT else 200), state
    if state is AuthState.OK:
        return 200, state
    if state in (AuthState.EXPIRED, AuthState.TIMED_OUT):
        if path in ("/iserver/reauthenticate", "/iserver/auth/ssodh/init"):
            return 200, AuthState.OK
        return 401, state
    if state is AuthState.COMPETING:
        if path == "/iserver/auth/ssodh/init":
            return 200, (AuthState.OK if body.get("compete") is True else state)
        if path in ("/iserver/auth/status", "/iserver/reauthenticate"):
            return 200, state
        return 401, state
    return 401, state  # maintenance


def session_from_cookie(header: str) -> str | None:
    """The session id in a ``Cookie`` header: ``api=<id>`` or ``api={"session":"<id>"}``."""
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name.strip() != "api":
            continue
        value = unquote(value.strip())
        if value.startswith("{"):
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                return None
            sid = parsed.get("session") if isinstance(parsed, dict) else None
            return sid if isinstance(sid, str) else None
        return value.strip('"') or None
    return None
