"""The benchmark's offline frames: the simulator's real-shaped mix, every frame different.

:func:`mixed_frames` drives the simulator's pure parts (:class:`~recorder.sim.market.Market`,
:class:`~recorder.sim.account.Account`, :class:`~recorder.sim.connection.SmdSub`) the way its
update loop does, so the offline run sees what ``recorder sim`` sends: smd deltas of ten
instruments (frozen and unusable ones included), sbd ladders, spl, order lifecycles (sor), both
copies of each execution (str), smh answers (bars), heartbeats and tic replies. Unlike the
simulator's 200-frame load pool, no payload repeats, so Parquet compresses it as it would a
real day. Deterministic: same ``count`` and ``seed``, same frames.
"""

from __future__ import annotations

from recorder.frames import IN, Frame
from recorder.sim import encode, history
from recorder.sim.account import Account, ladder
from recorder.sim.connection import SmdSub
from recorder.sim.market import Market

CONIDS = (265598, 272093, 3691937, 208813720, 107113386, 4815747, 76792991, 8314, 80268543,
          38708077)
FIELDS = ("31", "84", "86", "85", "88", "7059", "87", "7762", "70", "71", "7295", "7296",
          "7741", "82", "83", "6509", "55")
ACCOUNT = "DU1234567"
T0_NS = 1_777_552_200_000_000_000  # 2026-04-30 12:30 UTC, a trading day in New York
STEP_NS = 500_000  # frames 0.5 ms apart: 2,000 frames/s


def mixed_payloads(count: int, seed: int = 1) -> list[bytes]:
    """``count`` payloads in the order the simulator would send them."""
    market = Market(seed)
    account = Account(ACCOUNT, seed)
    subs = [SmdSub(c, str(c), FIELDS, f"q{i + 1}", 0.0) for i, c in enumerate(CONIDS)]
    updated = 1_777_552_200_004
    out: list[bytes] = []
    for sub in subs:
        out.extend(sub.snapshot(market.quote(sub.conid), updated))
    step = 0
    while len(out) < count:
        step += 1
        updated += 500
        market.step(set(CONIDS))
        for sub in subs:
            frame = sub.delta(market.quote(sub.conid), updated)
            if frame is not None:
                out.append(frame)
        if step % 3 == 0:
            out.append(ladder(f"sbd+{ACCOUNT}+265598", market.quote(265598)))
        if step % 5 == 0:
            out.append(account.pnl(step % 17 - 8.0))
        if step % 20 == 0:
            frames, executions = account.lifecycle(market.quote(265598), updated)
            out.extend(frames)
            for ex in executions:
                out.extend((ex.frame(False), ex.frame(True)))
        if step % 20 == 10:
            out.append(encode.heartbeat(updated - updated % 10_000 + 1_501))
        if step % 60 == 30:
            out.extend([encode.tic_reply("0123456789abcdef0123456789abcdef", updated)] * 4)
        if step % 600 == 300:
            quote = market.quote(265598)
            out.append(history.smh_answer(
                conid=265598, server_id=str(588547 + step), symbol="AAPL", name="APPLE INC",
                price=quote.last, args={"period": "2h", "bar": "1min"},
                payload='{"period":"2h","bar":"1min","source":"trades"}', now_ms=updated,
                rng=quote.rng))
    return out[:count]


def as_frames(payloads: list[bytes]) -> list[Frame]:
    """``in`` frames 0.5 ms apart on one connection, ``seq`` from 1."""
    return [Frame(T0_NS + i * STEP_NS, 1, i + 1, IN, p) for i, p in enumerate(payloads)]
