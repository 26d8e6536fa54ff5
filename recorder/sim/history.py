"""smh answers: historical bars shaped like ``/iserver/marketdata/history`` plus topic and payload.

Pure: ``now_ms`` and the random generator are parameters. Rules (behaviours.md §6):

- ``serverId`` is a string; ``payload`` echoes the subscribe arguments as text.
- ``data`` holds one object per bar with only the keys ``format`` names (``%o/%c/%h/%l/%v``),
  in that order, plus ``t`` (bar start, epoch ms) when ``%t`` is there. Without ``format`` the
  bars carry ``o,c,h,l,v,t``.
- At most 1000 bars (IBKR's limit); a period in days counts 6.5 h a day unless ``outsideRth``.
- ``high``/``low`` are ``price*priceFactor/volume/minutes-from-startTime`` strings.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any, Final

from recorder.sim.encode import dumps

MAX_BARS: Final = 1000
_UNIT_SECONDS: Final = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "min": 60,
    "mins": 60,
    "h": 3600,
    "hrs": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "m": 30 * 86400,
    "y": 365 * 86400,
}
_FORMAT_KEYS: Final = {"%o": "o", "%c": "c", "%h": "h", "%l": "l", "%v": "v", "%t": "t"}


def duration_seconds(text: str, rth: bool) -> int | None:
    """``"1d"`` -> 86400 (23400 with ``rth``), ``"5min"`` -> 300; None if unreadable."""
    m = re.fullmatch(r"(\d+)\s*([a-zA-Z]+)", text.strip())
    if not m or m.group(2).lower() not in _UNIT_SECONDS:
        return None
    unit = m.group(2).lower()
    n = int(m.group(1))
    if rth and unit in ("d", "w", "m", "y"):
        return n * _UNIT_SECONDS[unit] // 86400 * 23400
    return n * _UNIT_SECONDS[unit]


def bar_keys(fmt: Any) -> list[str]:
    if not isinstance(fmt, str) or not fmt:
        return ["o", "c", "h", "l", "v", "t"]
    keys = [_FORMAT_KEYS[p] for p in fmt.split("/") if p in _FORMAT_KEYS]
    return keys or ["o", "c", "h", "l"]


def smh_answer(
    *,
    conid: int,
    server_id: str,
    symbol: str,
    name: str,
    price: float,
    args: dict[str, Any],
    payload: str,
    now_ms: int,
    rng: random.Random,
) -> bytes:
    """The one answer to an smh request."""
    outside_rth = bool(args.get("outsideRth", args.get("outsideRTH", False)))
    bar_s = duration_seconds(str(args.get("bar", "1min")), rth=False) or 60
    period_s = duration_seconds(str(args.get("period", "1d")), rth=not outside_rth) or 86400
    count = max(1, min(MAX_BARS, period_s // bar_s))
    keys = bar_keys(args.get("format"))
    end_ms = now_ms // (bar_s * 1000) * bar_s * 1000
    start_ms = end_ms - (count - 1) * bar_s * 1000
    data: list[dict[str, Any]] = []
    px = price if price > 0 else 100.0
    hi = (-1.0, 0, 0)
    lo = (float("inf"), 0, 0)
    for i in range(count):
        o = round(px, 2)
        c = round(max(0.01, o + rng.uniform(-0.3, 0.3)), 2)
        h = round(max(o, c) + rng.uniform(0, 0.1), 2)
        low = round(min(o, c) - rng.uniform(0, 0.1), 2)
        v = rng.randint(1, 5000)
        values = {"o": o, "c": c, "h": h, "l": low, "v": v, "t": start_ms + i * bar_s * 1000}
        data.append({k: values[k] for k in keys})
        minutes = i * bar_s // 60
        if h > hi[0]:
            hi = (h, v, minutes)
        if low < lo[0]:
            lo = (low, v, minutes)
        px = c
    start = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(start_ms / 1000))
    frame = {
        "serverId": server_id,
        "symbol": symbol,
        "text": name,
        "priceFactor": 100,
        "startTime": start,
        "high": f"{round(hi[0] * 100)}/{hi[1]}/{hi[2]}",
        "low": f"{round(lo[0] * 100)}/{lo[1]}/{lo[2]}",
        "timePeriod": f"{period_s}s" if period_s < 86400 else str(args.get("period", "1d")),
        "barLength": bar_s,
        "mdAvailability": "S",
        "mktDataDelay": 0,
        "outsideRth": outside_rth,
        "volumeFactor": 100,
        "priceDisplayRule": 1,
        "priceDisplayValue": "2",
        "negativeCapable": False,
        "messageVersion": 2,
        "data": data,
        "points": count - 1,
        "travelTime": rng.randint(3, 40),
        "topic": f"smh+{conid}",
        "payload": payload,
    }
    return dumps(frame)


def over_limit_error(limit: int) -> bytes:
    """Our choice for a refused smh (no public capture exists): a topic-less error frame."""
    return dumps(
        {
            "error": f"Max number of concurrent historical data requests ({limit}) exceeded",
            "code": 429,
        }
    )
