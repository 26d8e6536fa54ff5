"""What a simulated gateway is told at start, and the records it keeps of its traffic.

:class:`SimOptions` is frozen and checked by :meth:`SimOptions.validate` (the CLI turns its
``ValueError`` into a one-line ``click.BadParameter``). Nothing here touches a socket or a
clock: the options, the traffic records and the counters are plain data shared by the pure
parts (``encode``, ``market``, ``protocol``) and the driver (``server``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, NamedTuple

SmhOverLimit = Literal["silent", "error"]
LoginBurst = Literal["always", "first", "never"]
LOGIN_BURSTS = ("always", "first", "never")

DEFAULT_ACCOUNT = "DU1234567"
DEFAULT_USERNAME = "user1234"


@dataclass(frozen=True)
class SimOptions:
    """Everything that shapes one simulated gateway.

    Times are seconds. ``hb_interval`` is the ``system`` heartbeat period (IBKR: 10 s) on a
    phase shared by every socket of the gateway; ``update_interval`` is the ``_updated`` grid
    (IBKR: 500 ms) on which smd, sbd, spl (and order/bulletin activity) tick.
    ``login_burst`` is which logged-in sockets get the ``system``, ``act`` and ``sts`` frames:
    every one, the first of each session only (what real gateways were seen to do: the
    sockets after it got none, and streamed all the same; behaviours §1, §18), or none.
    An smd stream ends silently ``smd_expiry_seconds`` after it was subscribed (IBKR: 15
    minutes) and stays on the gateway's books. Re-sending its ``smd`` adds fields but, unless
    ``smd_resend_renews``, neither restarts that clock nor revives an ended stream: ``umd``
    then ``smd`` does. That is what a public client reports of real gateways since April 2026,
    and what IBKR advised it.
    """

    seed: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = True
    hb_interval: float = 10.0
    update_interval: float = 0.5
    smd_expiry_seconds: float = 900.0
    smh_over_limit: SmhOverLimit = "silent"
    session_id: str | None = None
    record_traffic: bool = True
    account: str = DEFAULT_ACCOUNT
    username: str = DEFAULT_USERNAME
    smh_max_concurrent: int = 5
    orders_every_ticks: int = 20  # an order lifecycle on sor every N update ticks (0: never)
    bulletin_every_ticks: int = 120  # a blt to every socket every N update ticks (0: never)
    login_burst: LoginBurst = "always"
    smd_resend_renews: bool = False

    def validate(self) -> SimOptions:
        """Return ``self`` if every value is possible, else raise ``ValueError`` naming it."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        for name in ("hb_interval", "update_interval", "smd_expiry_seconds"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.smh_over_limit not in ("silent", "error"):
            raise ValueError(
                f"smh_over_limit must be 'silent' or 'error', got {self.smh_over_limit!r}"
            )
        if self.session_id is not None and (
            len(self.session_id) < 4 or not self.session_id.isalnum()
        ):
            raise ValueError("session_id must be at least 4 letters or digits")
        if self.smh_max_concurrent < 1:
            raise ValueError("smh_max_concurrent must be >= 1")
        if self.login_burst not in LOGIN_BURSTS:
            raise ValueError(f"login_burst must be one of {', '.join(LOGIN_BURSTS)}, got "
                             f"{self.login_burst!r}")
        if self.orders_every_ticks < 0 or self.bulletin_every_ticks < 0:
            raise ValueError("orders_every_ticks and bulletin_every_ticks must be >= 0")
        return self

    def resolved_session_id(self) -> str:
        """The ``/tickle`` session id: ``session_id`` if given, else 32 hex chars from the seed."""
        if self.session_id is not None:
            return self.session_id
        return hashlib.sha256(f"ibkr-sim-session-{self.seed}".encode()).hexdigest()[:32]


class SentFrame(NamedTuple):
    """One websocket message the simulator sent: ``topic`` is None for topic-less frames."""

    conn_id: int
    ts_ns: int
    topic: str | None
    payload: bytes


class ReceivedFrame(NamedTuple):
    """One websocket message the simulator received, exact bytes (text is UTF-8 encoded)."""

    conn_id: int
    ts_ns: int
    payload: bytes


@dataclass
class SimStats:
    """Counters of a gateway's life; they only grow, except ``smh_open`` (slots held now)."""

    tickle_calls: int = 0
    auth_status_calls: int = 0
    validate_calls: int = 0
    ssodh_init_calls: int = 0
    reauthenticate_calls: int = 0
    logout_calls: int = 0
    orders_calls: int = 0
    rest_calls: int = 0
    rest_faults: int = 0
    tics_received: int = 0
    ws_connects: int = 0
    ws_handshakes_held: int = 0  # upgrade requests held back (hold_handshakes)
    ws_logins: int = 0
    ws_closes_1000: int = 0
    smd_subscribes: int = 0
    umd_received: int = 0
    smh_requests: int = 0
    smh_answers: int = 0
    smh_refused: int = 0
    umh_received: int = 0
    smh_open: int = 0
    smh_open_max: int = 0
    sbd_subscribes: int = 0
    frames_sent: int = 0
    frames_received: int = 0
