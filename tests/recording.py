"""Shared pieces of the end-to-end recording tests: configs, a run harness, readers.

Every test here runs the real recorder (session keeper, multiplexer, storage) against the real
simulated gateway on 127.0.0.1 over TLS. Timeouts are one unit, scaled by
``RECORDER_TEST_TIMEOUT_SCALE`` for slow machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from recorder.config import (
    Config,
    GatewayConfig,
    OrdersConfig,
    OutputConfig,
    PnlConfig,
    SbdRequest,
    SessionConfig,
    SmdGroup,
    SmhRequest,
    TradesConfig,
)
from recorder.redact import Redactor
from recorder.runner import Recorder, RunSummary
from recorder.sim import SimGateway
from recorder.status import StatusReporter
from recorder.storage import Storage, StorageOptions

SCALE = float(os.environ.get("RECORDER_TEST_TIMEOUT_SCALE", "1"))


def timeout(seconds: float) -> float:
    return seconds * SCALE


FAST_SESSION = SessionConfig(
    tic_seconds=1.0,
    tickle_seconds=1.0,
    heartbeat_timeout_seconds=2.0,  # the sim beats every 0.5 s in these tests
    smd_refresh_seconds=540.0,
    smh_max_concurrent=5,
    smh_timeout_seconds=5.0,
    reconnect_min_seconds=0.05,
    reconnect_max_seconds=0.3,
    compete=False,
)


def make_config(
    gw: SimGateway,
    out: Path,
    *,
    smd: tuple[str, ...] = ("265598", "8314"),
    smh: tuple[SmhRequest, ...] = (),
    sbd: tuple[SbdRequest, ...] = (),
    orders: bool = False,
    trades: bool = False,
    pnl: bool = False,
    rotate_seconds: float = 300.0,
    flush_seconds: float = 0.2,
    **session: Any,
) -> Config:
    return Config(
        gateway=GatewayConfig(url=gw.url, cafile=gw.cafile or ""),
        output=OutputConfig(dir=out, timezone="America/New_York", rotate_seconds=rotate_seconds,
                            flush_seconds=flush_seconds),
        session=dataclasses.replace(FAST_SESSION, **session),
        smd=(SmdGroup(conids=smd),) if smd else (),
        smh=smh,
        sbd=sbd,
        orders=OrdersConfig(enabled=orders),
        trades=TradesConfig(enabled=trades),
        pnl=PnlConfig(enabled=pnl),
    )


async def record_while(
    config: Config,
    scenario: Callable[[Recorder], Awaitable[None]],
    redactor: Redactor | None = None,
    *,
    queue_max: int = 10_000,
    storage: Callable[[StorageOptions, Redactor], Storage] = Storage,
    status: StatusReporter | None = None,
) -> RunSummary:
    """Run the recorder until ``scenario`` returns, then stop it cleanly (as SIGTERM would).
    ``queue_max`` small makes storage's backpressure reach the socket; ``storage`` makes the
    recorder's storage (one on a file-system seam, say); ``status`` shows its status line."""
    recorder = Recorder(config, redactor=redactor, queue_max=queue_max, storage=storage,
                        status=status)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        while recorder.multiplexer is None:
            if task.done():
                return task.result()
            await asyncio.sleep(0.01)
        await scenario(recorder)
    finally:
        stop.set()
        summary = await asyncio.wait_for(task, timeout(15))
    return summary


def sim_frames_in(gw: SimGateway) -> list[tuple[int, bytes]]:
    """What the simulator sent, as (connection, payload) in send order, redacted as stored."""
    secret = gw.session_id.encode()
    return [(f.conn_id, f.payload.replace(secret, b"<redacted>")) for f in gw.sent]


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Put back what ``recorder record``'s :func:`setup_logging` changes (the root logger's
    handlers and level, and the websockets and aiohttp levels) when a test runs it in this
    process, as if it were a process of its own."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", "websockets", "aiohttp")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
