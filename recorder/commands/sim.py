"""``recorder sim``: run the simulated gateway in the foreground (SPEC §8).

Bad values are refused by click (exit 2, one line); a port in use is one line too. It prints
the URL, the session id and the cafile, then runs until Ctrl-C or SIGTERM. Fault flags repeat
a fault on a timer, for trying a recorder by hand.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
from typing import Any

import click

from recorder.waiting import wait_set


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A number of seconds (or frames/s): finite and above 0. ``nan`` passed ``<= 0`` and
    made a fault fire at once and again every tick."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a number > 0, got {value}")
    return value


def _rate(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(f"must be a number >= 0 (frames/s), got {value}")
    return value


def _every_for(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, float] | None:
    if value is None:
        return None
    every, sep, duration = value.partition(":")
    try:
        pair = (float(every), float(duration))
    except ValueError:
        raise click.BadParameter("expected EVERY:DURATION in seconds, e.g. 60:5") from None
    if not sep or not all(math.isfinite(x) and x > 0 for x in pair):
        raise click.BadParameter("expected EVERY:DURATION in seconds, both > 0, e.g. 60:5")
    return pair


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told)."
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port; 0 picks a free one.",
)
@click.option(
    "--seed", default=1, show_default=True, type=int, help="Seed for every simulated value."
)
@click.option("--no-tls", is_flag=True, help="Plain HTTP/WS instead of HTTPS/WSS.")
@click.option(
    "--hb-interval",
    default=10.0,
    show_default=True,
    type=float,
    callback=_positive,
    help="Seconds between system hb frames.",
)
@click.option(
    "--update-interval",
    default=0.5,
    show_default=True,
    type=float,
    callback=_positive,
    help="Seconds of the _updated grid (smd, sbd, spl ticks).",
)
@click.option(
    "--smd-expiry",
    default=900.0,
    show_default=True,
    type=float,
    callback=_positive,
    help="Seconds after which an smd stream ends silently unless umd then smd renew it.",
)
@click.option(
    "--smd-resend-renews",
    is_flag=True,
    help="A plain re-send of smd also renews a stream (by default only umd then smd does).",
)
@click.option(
    "--smh-over-limit",
    default="silent",
    show_default=True,
    type=click.Choice(["silent", "error"]),
    help="What a 6th concurrent smh gets.",
)
@click.option(
    "--login-burst",
    default="always",
    show_default=True,
    type=click.Choice(["always", "first", "never"]),
    help="Which logged-in sockets get the system, act and sts frames: every one, the first of "
    "each session (as real gateways were seen to do), or none.",
)
@click.option(
    "--session-id", default=None, help="Session id (letters/digits); default derived from the seed."
)
@click.option(
    "--account", default="DU1234567", show_default=True, help="Account id in act, sor, str, spl."
)
@click.option(
    "--rate",
    default=0.0,
    show_default=True,
    type=float,
    callback=_rate,
    help="Extra real-shaped frames/s to every logged-in socket (smd of five fixed conids, "
    "subscribed or not, and sor, str, spl): load, not a subscription's stream.",
)
@click.option(
    "--burst",
    is_flag=True,
    help="With --rate: send RATE frames in one second every 10 s instead of steadily.",
)
@click.option(
    "--grid",
    type=float,
    callback=_positive,
    metavar="S",
    help="With --rate: send each S seconds' frames in one batch at the start of the S, as a "
    "real gateway sends market data (0.5), instead of steadily.",
)
@click.option(
    "--drop-every",
    type=float,
    callback=_positive,
    help="Drop every socket (no close frame) every S seconds.",
)
@click.option(
    "--stall-every",
    metavar="S:DURATION",
    callback=_every_for,
    help="Every S seconds, send nothing for DURATION seconds.",
)
@click.option(
    "--expire-after",
    type=float,
    callback=_positive,
    help="Expire the session once after S seconds (401, close 1000 loop).",
)
@click.option(
    "--maintenance-every",
    metavar="S:DURATION",
    callback=_every_for,
    help="Every S seconds, a maintenance window of DURATION seconds.",
)
@click.option(
    "--compete-after",
    type=float,
    callback=_positive,
    help="A competing session takes over once after S seconds.",
)
@click.option(
    "--bad-utf8-every",
    type=float,
    callback=_positive,
    help="Every S seconds, a frame with a 0x99 byte.",
)
@click.option(
    "--malformed-every",
    type=float,
    callback=_positive,
    help="Every S seconds, a frame that is not JSON.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="debug logs every frame sent and received.",
)
def sim(**kw: Any) -> None:
    """Run the simulated Client Portal gateway (HTTPS+WSS on one port) in the foreground.

    It prints its URL, session id and certificate (the cafile to give the recorder as
    gateway.cafile) on stdout, then runs until Ctrl-C or SIGTERM."""
    from recorder.sim import SimOptions

    logging.basicConfig(
        level=kw["log_level"].upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    if kw["grid"] is not None and (kw["rate"] <= 0 or kw["burst"]):
        raise click.UsageError("--grid paces --rate frames: give --rate, and not --burst")
    if kw["burst"] and kw["rate"] <= 0:
        raise click.UsageError("--burst sends --rate frames in bursts: give --rate too")
    try:
        options = SimOptions(
            seed=kw["seed"],
            host=kw["host"],
            port=kw["port"],
            tls=not kw["no_tls"],
            hb_interval=kw["hb_interval"],
            update_interval=kw["update_interval"],
            smd_expiry_seconds=kw["smd_expiry"],
            smh_over_limit=kw["smh_over_limit"],
            session_id=kw["session_id"],
            record_traffic=False,
            account=kw["account"],
            login_burst=kw["login_burst"],
            smd_resend_renews=kw["smd_resend_renews"],
        ).validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        asyncio.run(_serve(options, kw))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {kw['host']}:{kw['port']}: {exc.strerror or exc}"
        ) from None


async def _serve(options: Any, kw: dict[str, Any]) -> None:
    from recorder.sim import SimGateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # HUP: its terminal closed
        loop.add_signal_handler(sig, stop.set)
    async with SimGateway(options) as gw:
        click.echo(f"simulated gateway: {gw.url}  (websocket {gw.ws_url})")
        click.echo(f"session id: {gw.session_id}")
        click.echo(f"cafile: {gw.cafile or '(no TLS)'}")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_faults(gw, kw, stop))
            await stop.wait()
        click.echo("stopping")


async def _faults(gw: Any, kw: dict[str, Any], stop: asyncio.Event) -> None:
    """Fire the fault flags on their timers until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    due: dict[str, float] = {}
    for name in ("drop_every", "bad_utf8_every", "malformed_every"):
        if kw[name]:
            due[name] = start + kw[name]
    for name in ("stall_every", "maintenance_every"):
        if kw[name]:
            due[name] = start + kw[name][0]
    for name in ("expire_after", "compete_after"):
        if kw[name]:
            due[name] = start + kw[name]
    if kw["rate"] > 0:
        if kw["burst"]:
            due["burst"] = start
        else:
            gw.set_rate(kw["rate"], grid=kw["grid"] or 0.0)
    while not stop.is_set():
        now = loop.time()
        for name, when in list(due.items()):
            if now < when:
                continue
            if name == "drop_every":
                await gw.drop_connections()
            elif name == "bad_utf8_every":
                gw.send_bad_utf8()
            elif name == "malformed_every":
                gw.send_malformed()
            elif name == "stall_every":
                gw.stall(kw[name][1])
            elif name == "maintenance_every":
                gw.maintenance(kw[name][1])
            elif name == "expire_after":
                gw.expire_session()
            elif name == "compete_after":
                gw.compete()
            elif name == "burst":
                gw.burst(int(kw["rate"]), 1.0)
            period = {"stall_every": 0, "maintenance_every": 0}.get(name)
            if name in ("expire_after", "compete_after"):
                del due[name]
            elif name == "burst":
                due[name] = when + 10.0
            elif period is not None:
                due[name] = when + kw[name][0]
            else:
                due[name] = when + kw[name]
        await wait_set(stop, 0.1)
