"""The unit that flows from the socket to storage: one frame, with its receive time.

Everything the recorder hands to storage is a :class:`Frame`: frames received from the
gateway (``direction="in"``), messages the recorder sent (``"out"``), and the recorder's own
lifecycle events (``"event"``, whose payload is JSON made by :func:`event_frame`). One type
for all three keeps the journal a single ordered stream, so a crash-recovery replay sees
exactly what the live run saw.

Invariants:
- ``recv_ts_ns`` is taken once, at the socket, with ``time.time_ns()``; nothing downstream
  reads a clock to stamp a frame.
- ``payload`` is the exact wire bytes (never decoded, never re-encoded) for ``in``/``out``.
- ``seq`` increases by one for every frame, whatever its direction, and a run continues
  from the folder's last (:mod:`recorder.ids`).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import orjson

IN: Final = "in"
OUT: Final = "out"
EVENT: Final = "event"
DIRECTIONS: Final = (IN, OUT, EVENT)

ORDERS_SNAPSHOT: Final = "orders_snapshot"
"""The event kind of the day's order list (``/iserver/account/orders``): the connection emits
it, and the normalizer makes its orders ``orders`` rows."""


class Frame(NamedTuple):
    recv_ts_ns: int
    conn_id: int
    seq: int
    direction: str
    payload: bytes


def event_payload(kind: str, topic: str | None = None, detail: Any = None) -> bytes:
    """The payload of a lifecycle event frame: ``{"kind":…,"topic":…,"detail":…}``."""
    return orjson.dumps({"kind": kind, "topic": topic, "detail": detail})


def event_frame(
    recv_ts_ns: int,
    conn_id: int,
    seq: int,
    kind: str,
    topic: str | None = None,
    detail: Any = None,
) -> Frame:
    """Build a lifecycle event (connect, disconnect, subscribe, smh_timeout, …) as a Frame."""
    return Frame(recv_ts_ns, conn_id, seq, EVENT, event_payload(kind, topic, detail))
