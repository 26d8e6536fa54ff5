"""One simulated websocket connection and its subscriptions (state only, no I/O of its own).

A :class:`Conn` is created by the websocket handler when a socket opens and forgotten when it
closes; its subscriptions die with it (IBKR: subscriptions never survive a reconnect). An
:class:`SmdSub` remembers the values it last sent, so each update is a delta of exactly the
fields that changed, plus ``6508`` when the instrument sends its service parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from recorder.sim import encode
from recorder.sim.encode import FieldValue
from recorder.sim.market import SERVICE_PARAMS, Quote, requested_fields
from recorder.sim.protocol import Sbd


@dataclass
class SmdSub:
    conid: int
    conid_ex: str
    fields: tuple[str, ...]
    server_id: str
    expires_at: float  # monotonic seconds
    last: dict[str, FieldValue] = field(default_factory=dict)
    expired: bool = False  # ended by the gateway, silently, and still counted as subscribed

    def snapshot(self, quote: Quote, updated_ms: int) -> tuple[bytes, bytes]:
        """The two snapshot frames (same values, two key orders); remembers what was sent."""
        values = requested_fields(quote.fields(), self.fields)
        self.last = dict(values)
        return (
            encode.smd_first(self.conid, self.conid_ex, self.server_id, updated_ms, values),
            encode.smd_update(self.conid, self.conid_ex, self.server_id, updated_ms, values),
        )

    def delta(self, quote: Quote, updated_ms: int) -> bytes | None:
        """A frame with only the fields that changed since the last frame, or None."""
        changed = [
            (k, v)
            for k, v in requested_fields(quote.fields(), self.fields)
            if self.last.get(k) != v
        ]
        keys = {k for k, _ in changed}
        if "87_raw" in keys and "87" not in keys:  # 87_raw only travels with 87
            changed = [(k, v) for k, v in changed if k != "87_raw"]
        if not changed and not quote.service_params_due:
            return None
        self.last.update(changed)
        if quote.service_params_due:
            changed.append(("6508", SERVICE_PARAMS))
        return encode.smd_update(self.conid, self.conid_ex, self.server_id, updated_ms, changed)


@dataclass
class Conn:
    conn_id: int
    request: web.Request
    ws: web.WebSocketResponse
    authed: bool = False
    closed: bool = False
    stalled_until: float = 0.0  # monotonic seconds; nothing is sent before then
    ignores_close: bool = False  # a close from the client is never answered (a hung gateway)
    smd: dict[str, SmdSub] = field(default_factory=dict)  # by conidEx
    smh: dict[str, int] = field(default_factory=dict)  # serverId -> conid, the held slots
    sbd: dict[str, Sbd] = field(default_factory=dict)  # by "sbd+ACCT+CONID[+EXCH]"
    streams: set[str] = field(default_factory=set)  # "sor", "str", "spl"

    def abort(self) -> None:
        """Drop the socket: close the transport without a close frame."""
        self.closed = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()
