"""The fault matrix: each gateway fault injected mid-recording, and every missing frame explained.

For one fault, :func:`run_fault` starts a :class:`~recorder.sim.SimGateway` on 127.0.0.1 and
the real :class:`~recorder.runner.Recorder` against it, waits for quotes to flow, injects the
fault, waits until the recorder has recovered (subscribed again, quotes flowing on a live
connection), quiesces the gateway and stops the recorder cleanly. :func:`compare` then reads
the published ``raw`` and ``events`` tables back with DuckDB and holds them against what the
simulator says it sent (``gw.sent``).

Matching a simulator connection to a recorder connection is exact: the recorder's ``connect``
event names its local address (``detail.local``) and the simulator keeps each connection's
peer address (``gw.peers``).

A frame the simulator sent on a connection is **recorded** if it is in ``raw`` (direction
``in``, byte for byte once the session id is redacted) on the matching recorder connection, in
send order. A missing frame is **accounted for as a gap** when all of these hold:

1. its connection matches a recorder connection ``R``;
2. every frame of that connection the recorder did record came before it in send order (the
   missing frames are the tail of the connection: nothing was lost *while* it was read);
3. ``events`` holds a ``gap`` for ``R``: it starts at the last frame received on ``R``
   (``start_ns``, ``last_seq``, and the close ``code``) and ends when the next connection
   opened, or with the run (``end_ns``);
4. the frame was sent no later than that gap's end.

Anything else missing is **unaccounted**; a recorded frame the simulator never sent on that
connection (or out of order) is **unexpected**. Faults that must not cost a connection
(bad bytes, malformed JSON, big frames, bursts, REST errors) must also leave no gap at all.

``python -m recorder.faultmatrix`` (``scripts/faults``) prints the matrix as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from recorder.config import (
    Config,
    GatewayConfig,
    OrdersConfig,
    OutputConfig,
    PnlConfig,
    SessionConfig,
    SmdGroup,
)
from recorder.runner import Recorder
from recorder.sim import SentFrame, SimGateway, SimOptions

WANTED = frozenset({"smd+265598", "sor", "spl"})

FAST_SESSION = SessionConfig(
    tic_seconds=1.0,
    tickle_seconds=1.0,
    heartbeat_timeout_seconds=2.0,  # the simulator beats every 0.5 s here
    smd_refresh_seconds=540.0,
    smh_timeout_seconds=5.0,
    reconnect_min_seconds=0.05,
    reconnect_max_seconds=0.3,
)


@dataclass
class Context:
    """What a fault's injection and checks can see."""

    gw: SimGateway
    recorder: Recorder
    notes: dict[str, Any] = field(default_factory=dict)


Inject = Callable[[Context], Awaitable[None]]
Check = Callable[[Context, "Tables"], list[str]]


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Inject
    reconnects: bool  # True: must cost a new connection; False: must not
    check: Check | None = None
    session: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)
    pin_cafile: bool = True  # verify against the simulator's certificate (else loopback rule)
    queue_max: int = 10_000


@dataclass(frozen=True)
class Gap:
    conn_id: int
    start_ns: int
    end_ns: int
    last_seq: int
    code: int | None
    next_conn_id: int | None


@dataclass
class Tables:
    """What the recorder published, read back: ``in`` rows per connection, events, gaps."""

    raw_in: dict[int, list[bytes]]
    events: list[tuple[str, Any]]
    gaps: dict[int, Gap]
    local: dict[int, str]  # recorder conn_id -> its local address

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


@dataclass
class Row:
    fault: str
    sent: int = 0
    recorded: int = 0
    missing: int = 0
    accounted: int = 0
    unexpected: int = 0
    gaps: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def unaccounted(self) -> int:
        return self.missing - self.accounted

    @property
    def ok(self) -> bool:
        return self.unaccounted == 0 and self.unexpected == 0 and not self.problems


# -- reading back ------------------------------------------------------------------------------


def read_tables(out: Path) -> Tables:
    import duckdb

    con = duckdb.connect()
    raw_in: dict[int, list[bytes]] = {}
    if list((out / "raw").rglob("*.parquet")):
        for conn, payload in con.sql(
            f"SELECT conn_id, payload FROM read_parquet('{out}/raw/**/*.parquet')"
            " WHERE direction = 'in' ORDER BY seq"
        ).fetchall():
            raw_in.setdefault(int(conn), []).append(bytes(payload))
    events: list[tuple[str, Any]] = []
    if list((out / "events").rglob("*.parquet")):
        for kind, detail in con.sql(
            f"SELECT kind, detail FROM read_parquet('{out}/events/**/*.parquet') ORDER BY seq"
        ).fetchall():
            events.append((kind, orjson.loads(detail) if detail else None))
    gaps: dict[int, Gap] = {}
    local: dict[int, str] = {}
    for kind, detail in events:
        if kind == "connect" and isinstance(detail, dict) and detail.get("local"):
            local[int(detail["conn_id"])] = str(detail["local"])
        elif kind == "gap" and isinstance(detail, dict):
            gap = Gap(int(detail["conn_id"]), int(detail["start_ns"]), int(detail["end_ns"]),
                      int(detail["last_seq"]), detail.get("code"), detail.get("next_conn_id"))
            gaps[gap.conn_id] = gap
    return Tables(raw_in, events, gaps, local)


def compare(fault: str, sent: Sequence[SentFrame], peers: dict[int, str], session_id: str,
            tables: Tables) -> Row:
    """Hold what the simulator sent against what was published; see the module docstring."""
    secret = session_id.encode()
    by_sim: dict[int, list[SentFrame]] = {}
    for frame in sent:
        by_sim.setdefault(frame.conn_id, []).append(frame)
    recorder_of = {addr: conn for conn, addr in tables.local.items()}
    row = Row(fault, sent=len(sent), gaps=len(tables.gaps))
    matched: set[int] = set()
    for sim_conn, frames in sorted(by_sim.items()):
        conn = recorder_of.get(peers.get(sim_conn, "?"))
        got = tables.raw_in.get(conn, []) if conn is not None else []
        if conn is not None:
            matched.add(conn)
        want = [f.payload.replace(secret, b"<redacted>") for f in frames]
        prefix = 0
        while prefix < min(len(got), len(want)) and got[prefix] == want[prefix]:
            prefix += 1
        row.recorded += prefix
        row.unexpected += len(got) - prefix
        if len(got) > prefix:
            row.problems.append(f"connection {conn}: recorded frame {prefix} differs from sent")
        lost = frames[prefix:]
        row.missing += len(lost)
        gap = tables.gaps.get(conn) if conn is not None else None
        if gap is not None:
            row.accounted += sum(1 for f in lost if f.ts_ns <= gap.end_ns)
    for conn, got in tables.raw_in.items():
        if conn not in matched:
            row.unexpected += len(got)
            row.problems.append(f"recorder connection {conn} matches no simulator connection")
    return row


# -- running one fault -------------------------------------------------------------------------


def make_config(gw: SimGateway, out: Path, fault: Fault) -> Config:
    return Config(
        gateway=GatewayConfig(url=gw.url, cafile=(gw.cafile or "") if fault.pin_cafile else ""),
        output=OutputConfig(dir=out, timezone="America/New_York", rotate_seconds=300.0,
                            flush_seconds=0.2),
        session=dataclasses.replace(FAST_SESSION, **fault.session),
        smd=(SmdGroup(conids=("265598",)),),
        orders=OrdersConfig(enabled=True),
        pnl=PnlConfig(enabled=True),
    )


def _smd_sent(gw: SimGateway) -> int:
    return sum(1 for f in gw.sent if (f.topic or "").startswith("smd+"))


async def _flowing(gw: SimGateway, within: float) -> None:
    """Every subscription is live on an open socket and quotes arrive on it."""
    await gw.wait_for(lambda: WANTED <= gw.subscriptions(), within)
    before = _smd_sent(gw)
    await gw.wait_for(lambda: _smd_sent(gw) >= before + 3, within)


async def run_fault(fault: Fault, out: Path, *, seed: int = 11, scale: float = 1.0) -> Row:
    """Record through one fault into ``out`` and compare; problems go in the row."""
    started = time.monotonic()
    options = SimOptions(seed=seed, hb_interval=0.5, update_interval=0.1, **fault.sim)
    problems: list[str] = []
    async with SimGateway(options) as gw:
        recorder = Recorder(make_config(gw, out, fault), queue_max=fault.queue_max)
        ctx = Context(gw, recorder)
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        try:
            await _flowing(gw, 10 * scale)
            connects = gw.stats.ws_connects
            await fault.inject(ctx)
            if fault.reconnects:
                await gw.wait_for(lambda: gw.stats.ws_connects > connects, 15 * scale)
            await _flowing(gw, 15 * scale)
            if not fault.reconnects and gw.stats.ws_connects != connects:
                problems.append(f"the fault cost {gw.stats.ws_connects - connects} reconnect(s)")
            gw.stall(600.0)  # quiesce: what was sent is read before the clean stop
            await asyncio.sleep(0.3)
        except TimeoutError as exc:
            problems.append(f"recording did not resume: {exc}")
        finally:
            if task.done() and task.exception() is not None:
                problems.append(f"the recorder crashed: {task.exception()!r}")
            stop.set()
            try:
                await asyncio.wait_for(task, 20 * scale)
            except Exception as exc:  # a crash is a finding of the matrix, not of this code
                problems.append(f"the recorder failed: {type(exc).__name__}: {exc}")
        sent, peers, session_id = list(gw.sent), dict(gw.peers), gw.session_id
    tables = read_tables(out)
    row = compare(fault.name, sent, peers, session_id, tables)
    row.problems[:0] = problems
    if fault.reconnects and not tables.gaps:
        row.problems.append("the fault left no gap event")
    if not fault.reconnects and tables.gaps:
        row.problems.append(f"unexpected gap(s): {sorted(tables.gaps)}")
    if fault.check is not None:
        row.problems += fault.check(ctx, tables)
    row.seconds = time.monotonic() - started
    return row


# -- the faults --------------------------------------------------------------------------------


LOAD_RATE = 2000.0  # frames/s while the socket drops, so some are in flight when it goes


async def _under_load(ctx: Context, fault: Callable[[], Awaitable[None]]) -> None:
    gw = ctx.gw
    gw.set_rate(LOAD_RATE)
    await asyncio.sleep(0.3)
    await fault()
    await asyncio.sleep(0.3)
    gw.set_rate(0)


async def _drop(ctx: Context) -> None:
    await _under_load(ctx, ctx.gw.drop_connections)


async def _stall(ctx: Context) -> None:
    ctx.gw.stall(600.0)  # silent for good: only the watchdog can get quotes flowing again


async def _expire(ctx: Context) -> None:
    gw = ctx.gw
    closes, tickles, connects = gw.stats.ws_closes_1000, gw.stats.tickle_calls, gw.stats.ws_connects
    gw.expire_session()
    await gw.wait_for(lambda: gw.stats.ws_closes_1000 > closes, 10)
    await gw.wait_for(lambda: gw.stats.tickle_calls >= tickles + 2, 10)
    ctx.notes["hammered"] = gw.stats.ws_connects - connects
    gw.restore_session()


async def _compete(ctx: Context) -> None:
    ctx.gw.compete()
    await asyncio.sleep(1.0)
    ctx.notes["ssodh_while_competing"] = ctx.gw.stats.ssodh_init_calls
    ctx.gw.restore_session()  # the other session logs out: ours may come back


async def _maintenance(ctx: Context) -> None:
    connects = ctx.gw.stats.ws_connects
    ctx.gw.maintenance(1.5)
    await asyncio.sleep(1.4)
    ctx.notes["hammered"] = ctx.gw.stats.ws_connects - connects


RESTART_DOWN_SECONDS = 1.0  # the port refuses connections this long: several attempts fail


async def _restart(ctx: Context) -> None:
    await _under_load(ctx, lambda: ctx.gw.restart(RESTART_DOWN_SECONDS))


async def _bad_utf8(ctx: Context) -> None:
    ctx.gw.send_bad_utf8()
    await asyncio.sleep(0.2)


async def _malformed(ctx: Context) -> None:
    ctx.gw.send_malformed()
    await asyncio.sleep(0.2)


async def _oversized(ctx: Context) -> None:
    ctx.gw.send_oversized()
    await asyncio.sleep(0.3)


BURST_BASE_RATE = 200.0  # frames/s of steady extra load: the "normal" rate
BURST_SECONDS = 1.0


async def _burst(ctx: Context) -> None:
    gw = ctx.gw
    gw.set_rate(BURST_BASE_RATE)
    await asyncio.sleep(0.5)
    before = gw.stats.frames_sent
    gw.burst(int(20 * BURST_BASE_RATE * BURST_SECONDS), BURST_SECONDS)
    await gw.wait_for(lambda: gw.stats.frames_sent >= before + 20 * BURST_BASE_RATE, 20)
    gw.set_rate(0)


FLOOD_FRAMES = 10_000


async def _flood(ctx: Context) -> None:
    """Frames as fast as the socket takes them: faster than storage writes them."""
    gw = ctx.gw
    before = gw.stats.frames_sent
    gw.burst(FLOOD_FRAMES, 0.0)
    await gw.wait_for(lambda: gw.stats.frames_sent >= before + FLOOD_FRAMES, 30)


def _check_flood(ctx: Context, tables: Tables) -> list[str]:
    stats = ctx.recorder.storage_stats
    if stats is None or not stats.full_waits:
        return ["the queue never filled: the reader never waited, backpressure went untested"]
    return []


def _rest(status: int) -> Inject:
    async def inject(ctx: Context) -> None:
        gw = ctx.gw
        faults, calls = gw.stats.rest_faults, gw.stats.rest_calls
        gw.rest_fault(status, 2)
        await gw.wait_for(lambda: gw.stats.rest_faults >= faults + 2, 10)
        await gw.wait_for(lambda: gw.stats.rest_calls > calls + 2, 10)  # and REST goes on

    return inject


SMD_EXPIRY = 1.0  # s: the simulator's smd streams end this long after they are subscribed


async def _outlive_smd_expiry(ctx: Context) -> None:
    await asyncio.sleep(SMD_EXPIRY * 3.5)


def _check_smd_refreshed(ctx: Context, tables: Tables) -> list[str]:
    refreshes = tables.kinds().count("smd_refresh")
    return [] if refreshes >= 3 else [f"{refreshes} smd refresh(es) in several expiry periods"]


async def _rotate(ctx: Context) -> None:
    ctx.notes["old_cafile"] = ctx.gw.cafile
    ctx.gw.rotate_certificate()
    await ctx.gw.drop_connections()


def _needs(kind: str | tuple[str, ...], what: str) -> Check:
    """An event of ``kind`` (or of any of several kinds) was recorded."""
    kinds = (kind,) if isinstance(kind, str) else kind

    def check(ctx: Context, tables: Tables) -> list[str]:
        if set(kinds) & set(tables.kinds()):
            return []
        return [f"no {' or '.join(map(repr, kinds))} event: {what}"]

    return check


def _not_hammered(ctx: Context) -> list[str]:
    """While the session is gone the recorder polls REST; it does not keep opening sockets
    into the gateway's close-1000 loop."""
    hammered = ctx.notes.get("hammered", 0)
    return [f"{hammered} sockets opened while the session was gone"] if hammered > 1 else []


def _check_maintenance(ctx: Context, tables: Tables) -> list[str]:
    return (_needs("auth_lost", "the maintenance window was not noted")(ctx, tables)
            + _not_hammered(ctx))


def _check_expiry(ctx: Context, tables: Tables) -> list[str]:
    problems = _needs("auth_lost", "the expiry was not noted")(ctx, tables) + _not_hammered(ctx)
    if ctx.gw.stats.ws_closes_1000 < 1:
        problems.append("the gateway never closed a socket with 1000")
    return problems


def _check_compete(ctx: Context, tables: Tables) -> list[str]:
    problems = _needs("auth_lost", "the competing session was not noted")(ctx, tables)
    if ctx.notes.get("ssodh_while_competing"):
        problems.append("compete = false, yet the recorder took the session (ssodh/init)")
    return problems


def _check_restart(ctx: Context, tables: Tables) -> list[str]:
    # the session is checked over REST before each reconnect (SPEC §5), so it is usually that
    # check, not a socket, which first meets the stopped gateway
    return (_needs("disconnect", "the restart was not noted")(ctx, tables)
            + _needs(("connect_failed", "rest_error"), "no attempt met the stopped gateway")(
                ctx, tables))


def _check_bad_utf8(ctx: Context, tables: Tables) -> list[str]:
    if any(b"\x99" in p for rows in tables.raw_in.values() for p in rows):
        return []
    return ["the non-UTF-8 frame is not in raw byte for byte"]


def _check_oversized(ctx: Context, tables: Tables) -> list[str]:
    if any(len(p) > 1 << 20 for rows in tables.raw_in.values() for p in rows):
        return []
    return ["no frame over 1 MiB in raw"]


def _check_rest(status: int) -> Check:
    def check(ctx: Context, tables: Tables) -> list[str]:
        seen = [d for k, d in tables.events if k == "rest_error" and isinstance(d, dict)
                and d.get("status") == status]
        return [] if len(seen) >= 2 else [f"expected two rest_error events with {status}"]

    return check


def _check_rotate(ctx: Context, tables: Tables) -> list[str]:
    if ctx.gw.cafile == ctx.notes.get("old_cafile"):
        return ["the certificate did not change"]
    return []


FAULTS: tuple[Fault, ...] = (
    Fault("drop", "socket dropped (TCP abort, no close frame) under 2,000 frames/s", _drop, True,
          _needs("disconnect", "the drop was not noted")),
    Fault("stall", "silent stall: socket open, no frames", _stall, True,
          _needs("heartbeat_timeout", "the dead socket was not noticed")),
    Fault("expiry", "session expired: REST 401, sockets closed 1000 in a loop", _expire, True,
          _check_expiry),
    Fault("competing", "competing session (compete = false: wait, never steal)", _compete,
          True, _check_compete),
    Fault("maintenance", "maintenance window of 1.5 s", _maintenance, True,
          _check_maintenance),
    Fault("restart", "gateway restarted on the same port (down 1 s), under 2,000 frames/s",
          _restart, True, _check_restart),
    Fault("bad-utf8", "a text frame holding a 0x99 byte", _bad_utf8, False, _check_bad_utf8),
    Fault("malformed", "a frame that is not JSON", _malformed, False,
          _needs("malformed", "the malformed frame was not noted")),
    Fault("over-1mib", "a 1.25 MiB frame", _oversized, False, _check_oversized),
    Fault("burst-20x", "a burst at 20x the normal rate (4,000 frames in 1 s), queue of 256",
          _burst, False, queue_max=256),
    Fault("flood", f"{FLOOD_FRAMES:,} frames at full speed into a queue of 64: the reader waits",
          _flood, False, _check_flood, queue_max=64),
    Fault("rest-429", "REST answers 429 twice", _rest(429), False, _check_rest(429),
          session={"tickle_seconds": 0.5}),
    Fault("rest-500", "REST answers 500 twice", _rest(500), False, _check_rest(500),
          session={"tickle_seconds": 0.5}),
    Fault("smd-expiry", f"smd streams end silently {SMD_EXPIRY:g} s after each subscribe, and "
          "a re-send does not renew them", _outlive_smd_expiry, False, _check_smd_refreshed,
          session={"smd_refresh_seconds": SMD_EXPIRY * 0.6},
          sim={"smd_expiry_seconds": SMD_EXPIRY}),
    Fault("cert-rotated", "a new TLS certificate between connections (loopback, no cafile)",
          _rotate, True, _check_rotate, pin_cafile=False),
)

BY_NAME = {f.name: f for f in FAULTS}


# -- the table ---------------------------------------------------------------------------------

HEADER = ("fault", "frames sent", "frames recorded", "frames missing", "missing as gap",
          "unaccounted", "seconds")


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER]
    for r in rows:
        as_gap = "-" if r.missing == 0 else ("yes" if r.unaccounted == 0 else "no")
        lines.append((r.fault, str(r.sent), str(r.recorded), str(r.missing), as_gap,
                      str(r.unaccounted + r.unexpected), f"{r.seconds:.1f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    for r in rows:
        for problem in r.problems:
            out.append(f"! {r.fault}: {problem}")
    return "\n".join(out)


async def run_matrix(names: Sequence[str], root: Path) -> list[Row]:
    rows = []
    for name in names:
        rows.append(await run_fault(BY_NAME[name], root / name))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/faults",
        description="Inject each gateway fault mid-recording and account for every frame.")
    parser.add_argument("faults", nargs="*", metavar="FAULT",
                        help=f"faults to run (default: all): {', '.join(BY_NAME)}")
    parser.add_argument("--out", type=Path, help="keep the recordings here (default: a temp dir)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.faults if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(unknown)}")
    names = args.faults or list(BY_NAME)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="recorder-faults-") as tmp:
        root = args.out or Path(tmp)
        rows = asyncio.run(run_matrix(names, root))
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
