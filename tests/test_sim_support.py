"""Helpers for the simulator's socket tests (no tests here): connect, read, time units."""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from recorder.sim import SimGateway

SCALE = float(os.environ.get("RECORDER_TEST_TIMEOUT_SCALE", "1"))
T = 2.0 * SCALE  # one timeout unit, seconds


# Heartbeats out of the way (one a wall-clock hour) where a test expects one exact next frame:
# on a 5 s grid, an hb landing between a request and its answer failed such a test before.
NO_HB = 3600.0


def client_ssl(gw: SimGateway) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=gw.cafile) if gw.cafile else None


def open_ws(gw: SimGateway, cookie: str | None = "plain") -> Any:
    """``async with open_ws(gw) as ws``: cookie "plain" (api=<id>), "json", or None."""
    headers = {}
    if cookie == "plain":
        headers["Cookie"] = f"api={gw.session_id}"
    elif cookie == "json":
        headers["Cookie"] = "api=" + orjson.dumps({"session": gw.session_id}).decode()
    return connect(
        gw.ws_url,
        ssl=client_ssl(gw),
        additional_headers=headers,
        max_size=None,
        open_timeout=T,
        close_timeout=T,
    )


async def recv_json(ws: ClientConnection, wait: float = T) -> dict[str, Any]:
    async with asyncio.timeout(wait):
        raw = await ws.recv(decode=False)
    assert isinstance(raw, bytes)
    value = orjson.loads(raw)
    assert isinstance(value, dict)
    return value


async def recv_until(ws: ClientConnection, want: Any, limit: int = 500) -> dict[str, Any]:
    """Read frames until one satisfies ``want(frame)``; fail after ``limit`` frames."""
    for _ in range(limit):
        frame = await recv_json(ws)
        if want(frame):
            return frame
    raise AssertionError("no matching frame")


async def login(ws: ClientConnection) -> list[dict[str, Any]]:
    return [await recv_json(ws) for _ in range(3)]
