"""The processes of the end-to-end benchmark, each driven over stdin/stdout in JSON lines.

``python -m recorder.benchmark.children sim`` runs a :class:`~recorder.sim.SimGateway` (TLS on
127.0.0.1, traffic not recorded, heartbeats and update ticks an hour apart so that the only
traffic is the login burst, the subscription snapshots and the load pump) and prints
``{"url","cafile","session_id"}``. It then obeys ``rate <frames/s>`` (the load pump; 0 stops
it; ``rate full``: as fast as TCP takes it; ``rate <frames/s> grid <s>``: in one batch every
``<s>`` seconds, as a real gateway's snapshots come) and ``stats`` (prints ``{"frames_sent"}``)
until ``quit``.

``... record --url U --cafile C --out DIR`` runs the real :class:`~recorder.runner.Recorder`
against it; ``... reader`` (same options) runs it with a storage that counts every frame and
drops it (:mod:`recorder.benchmark.dropping`): the socket reader's cost alone, the most any
faster storage could give in one process; ``... bare --url U --cafile C --session-id S`` runs the
baseline: a bare ``websockets`` receive loop with the same TLS context, cookie, connection
options and subscription messages, doing nothing with a frame but count it. All print a sample
``{"t","frames_in","queue","ready"}`` every :data:`SAMPLE_SECONDS`, and on ``stop`` end
cleanly and print ``{"done": true, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from recorder.actions import Send
from recorder.config import (
    Config,
    GatewayConfig,
    OrdersConfig,
    OutputConfig,
    PnlConfig,
    SbdRequest,
    SessionConfig,
    SmdGroup,
    TradesConfig,
)

SAMPLE_SECONDS = 0.25
ACCOUNT = "DU1234567"
QUIET_SECONDS = 3600.0  # the simulator's hb and update ticks: out of the way of the pump


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


async def commands() -> Any:
    """Lines from stdin, read in a thread so the event loop never waits on them."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            yield "quit"
            return
        yield line.strip()


def bench_config(url: str, cafile: str, out: Path, rotate_seconds: float = 300.0) -> Config:
    """What the recorder subscribes to in the benchmark: quotes, depth, orders, trades, P&L."""
    return Config(
        gateway=GatewayConfig(url=url, cafile=cafile),
        output=OutputConfig(dir=out, timezone="America/New_York", rotate_seconds=rotate_seconds),
        session=SessionConfig(tic_seconds=59.0, heartbeat_timeout_seconds=120.0,
                              reconnect_min_seconds=0.05, reconnect_max_seconds=0.5),
        smd=(SmdGroup(conids=("265598", "272093", "3691937", "208813720", "107113386")),),
        sbd=(SbdRequest(ACCOUNT, 265598),),
        orders=OrdersConfig(enabled=True),
        trades=TradesConfig(enabled=True),
        pnl=PnlConfig(enabled=True),
    )


# -- the simulator ---------------------------------------------------------------------------


async def run_sim() -> None:
    from recorder.sim import SimGateway, SimOptions
    from recorder.sim.websocket import FULL_SPEED

    options = SimOptions(seed=1, tls=True, hb_interval=QUIET_SECONDS,
                         update_interval=QUIET_SECONDS, record_traffic=False, account=ACCOUNT)
    async with SimGateway(options) as gw:
        emit({"url": gw.url, "cafile": gw.cafile, "session_id": gw.session_id})
        async for line in commands():
            word, _, arg = line.partition(" ")
            if word == "rate":
                rate, _, grid = arg.partition(" grid ")
                gw.set_rate(FULL_SPEED if rate == "full" else float(rate),
                            grid=float(grid or 0))
                emit({"rate": arg})
            elif word == "stats":
                emit({"frames_sent": gw.stats.frames_sent, "ws_connects": gw.stats.ws_connects})
            elif word == "quit":
                return


# -- the recorder ----------------------------------------------------------------------------


async def run_record(url: str, cafile: str, out: Path, rotate_seconds: float,
                     drop: bool = False) -> None:
    from recorder.benchmark.dropping import DroppingStorage
    from recorder.runner import Recorder
    from recorder.storage import Storage

    recorder = Recorder(bench_config(url, cafile, out, rotate_seconds),
                        storage=DroppingStorage if drop else Storage)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))

    async def sample() -> None:
        while True:
            mux = recorder.multiplexer
            emit({"t": time.monotonic(), "frames_in": mux.frames_in if mux else 0,
                  "queue": recorder.queue_depth,
                  "ready": bool(mux and mux.authenticated)})
            await asyncio.sleep(SAMPLE_SECONDS)

    sampler = asyncio.create_task(sample())
    async for line in commands():
        if line in ("stop", "quit"):
            break
    stop.set()
    summary = await task
    sampler.cancel()
    stats = summary.storage
    emit({"done": True, "frames_in": summary.frames_in, "reconnects": summary.reconnects,
          "journaled": stats.frames, "rows": stats.rows,
          "files_published": stats.files_published, "full_waits": stats.full_waits,
          "last_error": stats.last_error})


# -- the bare receive loop -------------------------------------------------------------------


async def run_bare(url: str, cafile: str, session_id: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from recorder.session import tls_context, ws_url
    from recorder.subscriptions import SubscriptionBook

    config = bench_config(url, cafile, Path("unused"))
    count = 0
    async with connect(ws_url(url), additional_headers={"Cookie": f"api={session_id}"},
                       ssl=tls_context(config.gateway), open_timeout=10.0, close_timeout=2.0,
                       ping_interval=None, compression=None, max_size=None, max_queue=64,
                       proxy=None) as ws:
        for action in SubscriptionBook(config).on_authenticated(time.monotonic()):
            if isinstance(action, Send):
                await ws.send(action.text)

        async def receive() -> None:
            nonlocal count
            try:
                while True:
                    await ws.recv(decode=False)
                    count += 1
            except ConnectionClosed:
                pass

        async def sample() -> None:
            while True:
                emit({"t": time.monotonic(), "frames_in": count, "queue": 0, "ready": True})
                await asyncio.sleep(SAMPLE_SECONDS)

        receiver = asyncio.create_task(receive())
        sampler = asyncio.create_task(sample())
        async for line in commands():
            if line in ("stop", "quit"):
                break
        await ws.close(1000, "bench stopping")
        await receiver
        sampler.cancel()
    emit({"done": True, "frames_in": count})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m recorder.benchmark.children")
    parser.add_argument("role", choices=("sim", "record", "reader", "bare"))
    parser.add_argument("--url", default="")
    parser.add_argument("--cafile", default="")
    parser.add_argument("--session-id", default="")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--rotate-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.role == "sim":
        asyncio.run(run_sim())
    elif args.role in ("record", "reader"):
        asyncio.run(run_record(args.url, args.cafile, args.out, args.rotate_seconds,
                               drop=args.role == "reader"))
    else:
        asyncio.run(run_bare(args.url, args.cafile, args.session_id))


if __name__ == "__main__":
    main()
