"""REST pacing: how long to wait before a request so IBKR's pacing table is never exceeded.

IBKR answers a request over its limits with HTTP 429 and puts the IP in a penalty box for
10 minutes, so the recorder paces itself instead of finding out. The limits (the IBKR docs'
pacing table, ``shared/seeds``): at most 10 requests a second in all, and per endpoint, e.g.
``/tickle`` 1 a second, ``/sso/validate`` 1 a minute, ``/iserver/account/orders`` 1 per 5 s.

Rules:

- Pure: ``now`` (monotonic seconds) is passed in. :meth:`Pacer.reserve` answers how many
  seconds to wait and commits that slot at once, so the caller must then wait and send (a
  reserved slot is never given to anyone else).
- A limit ``(count, per_seconds)`` is kept as evenly spaced slots, ``per_seconds / count``
  apart (a token bucket of depth one). That never lets more than ``count`` requests into any
  ``per_seconds`` window, at the price of no bursts, which a recorder does not need.
- A request takes a slot in its endpoint's bucket (if the endpoint has a limit) and in the
  global bucket, at the first time both allow. Slots are handed out in reservation order, so
  a caller first waits out its endpoint's own limit (:meth:`Pacer.endpoint_wait`, which
  commits nothing) and reserves then: a request to ``/iserver/account/orders``, allowed once
  in 5 s, must not hold ``/tickle`` back for those 5 s.
- Paths are matched after dropping a ``/v1/api`` prefix, the query string and a trailing
  ``/``; ``{name}`` in a limit's path matches one path segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["DEFAULT_LIMITS", "Pacer", "endpoint"]

#: The IBKR pacing table: endpoint -> (requests, per seconds).
DEFAULT_LIMITS: Mapping[str, tuple[float, float]] = {
    "/tickle": (1, 1.0),
    "/sso/validate": (1, 60.0),
    "/iserver/marketdata/snapshot": (10, 1.0),
    "/iserver/scanner/params": (1, 900.0),
    "/iserver/scanner/run": (1, 1.0),
    "/iserver/trades": (1, 5.0),
    "/iserver/account/orders": (1, 5.0),
    "/iserver/account/pnl/partitioned": (1, 5.0),
    "/portfolio/accounts": (1, 5.0),
    "/portfolio/subaccounts": (1, 5.0),
    "/pa/performance": (1, 900.0),
    "/pa/summary": (1, 900.0),
    "/pa/transactions": (1, 900.0),
    "/fyi/unreadnumber": (1, 1.0),
    "/fyi/settings": (1, 1.0),
    "/fyi/settings/{typecode}": (1, 1.0),
    "/fyi/disclaimer/{typecode}": (1, 1.0),
    "/fyi/deliveryoptions": (1, 1.0),
    "/fyi/deliveryoptions/email": (1, 1.0),
    "/fyi/deliveryoptions/device": (1, 1.0),
    "/fyi/deliveryoptions/{deviceId}": (1, 1.0),
    "/fyi/notifications": (1, 1.0),
    "/fyi/notifications/more": (1, 1.0),
    "/fyi/notifications/{notificationId}": (1, 1.0),
}

_API_PREFIX = "/v1/api"


def endpoint(path: str) -> str:
    """``/v1/api/tickle?x=1`` -> ``/tickle``: the form the limits table uses."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if path == _API_PREFIX or path.startswith(_API_PREFIX + "/"):
        path = path[len(_API_PREFIX):]
    if not path.startswith("/"):
        path = "/" + path
    return path.rstrip("/") or "/"


class Pacer:
    """Hands out send times that respect per-endpoint limits and a global rate."""

    def __init__(
        self, limits: Mapping[str, tuple[float, float]] | None = None, global_rate: float = 10.0
    ) -> None:
        if global_rate <= 0:
            raise ValueError(f"global_rate must be above 0, got {global_rate}")
        table = DEFAULT_LIMITS if limits is None else limits
        self._exact: dict[str, float] = {}
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for path, (count, per_seconds) in table.items():
            if count <= 0 or per_seconds <= 0:
                raise ValueError(f"limit for {path} must be positive, got {(count, per_seconds)}")
            key = endpoint(path)
            self._exact[key] = per_seconds / count
            if "{" in key:
                regex = re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(key))
                self._patterns.append((re.compile(regex), key))
        self._global_interval = 1.0 / global_rate
        self._global_next = float("-inf")
        self._next: dict[str, float] = {}

    def limit_key(self, path: str) -> str | None:
        """The limits-table entry ``path`` falls under, or None (global limit only)."""
        key = endpoint(path)
        if key in self._exact:
            return key
        for regex, pattern in self._patterns:
            if regex.fullmatch(key):
                return pattern
        return None

    def endpoint_wait(self, path: str, now: float) -> float:
        """Seconds until ``path``'s own limit lets a request go (0: now), committing nothing.
        Wait this long before :meth:`reserve`: a slot reserved far ahead would hold every
        other request back behind it in the global bucket."""
        key = self.limit_key(path)
        if key is None:
            return 0.0
        return max(0.0, self._next.get(key, float("-inf")) - now)

    def reserve(self, path: str, now: float) -> float:
        """Seconds to wait before sending a request to ``path`` at ``now`` (0: send now).

        The slot is committed: the caller must send after waiting, and later reservations
        queue behind it.
        """
        key = self.limit_key(path)
        send_at = max(now, self._global_next)
        if key is not None:
            send_at = max(send_at, self._next.get(key, float("-inf")))
            self._next[key] = send_at + self._exact[key]
        self._global_next = send_at + self._global_interval
        return send_at - now
