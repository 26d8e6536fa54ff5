"""Pre-built, real-shaped frames for load (``set_rate``/``burst``): built once, sent many times.

The pool mixes smd deltas, sbd ladders, sor and str frames, spl and the odd hb, in a fixed
order from the seed, so a benchmark's stream is the same every run and costs no encoding per
frame. Every entry is ``(payload, topic)``.
"""

from __future__ import annotations

import functools

from recorder.sim import encode
from recorder.sim.account import Account, ladder
from recorder.sim.connection import SmdSub
from recorder.sim.market import Market

POOL_SIZE = 200
_CONIDS = (265598, 272093, 3691937, 208813720, 107113386)


@functools.lru_cache(maxsize=8)
def frame_pool(seed: int, account: str) -> tuple[tuple[bytes, str], ...]:
    market = Market(seed)
    acct = Account(account, seed)
    subs = [
        SmdSub(c, str(c), ("31", "84", "86", "85", "88", "7059", "87", "83", "6509"), "q0", 0.0)
        for c in _CONIDS
    ]
    out: list[tuple[bytes, str]] = []
    updated = 1777552200143
    for sub in subs:
        first, second = sub.snapshot(market.quote(sub.conid), updated)
        out.append((second, f"smd+{sub.conid}"))
    step = 0
    while len(out) < POOL_SIZE:
        step += 1
        updated += 500
        market.step(set(_CONIDS))
        for sub in subs:
            frame = sub.delta(market.quote(sub.conid), updated)
            if frame is not None:
                out.append((frame, f"smd+{sub.conid}"))
        if step % 3 == 0:
            out.append(
                (ladder(f"sbd+{account}+265598", market.quote(265598)), f"sbd+{account}+265598")
            )
        if step % 5 == 0:
            out.append((acct.pnl(step % 11 - 5.0), "spl"))
        if step % 10 == 0:
            frames, executions = acct.lifecycle(market.quote(265598), updated)
            out.extend((f, "sor") for f in frames[:3])
            for ex in executions[:1]:
                out.append((ex.frame(True), "str"))
        if step % 20 == 0:
            out.append((encode.heartbeat(updated - updated % 10000 + 1501), "system"))
    return tuple(out[:POOL_SIZE])
