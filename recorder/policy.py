"""Keep-alive timers and reconnect backoff: what is due, and how long to wait.

Rules:

- Pure: ``now`` (monotonic seconds) is always passed in. Nothing here sleeps, sends or reads
  a clock; the drivers ask :meth:`poll` what is due, do it, and sleep until
  :meth:`next_deadline`.
- One :class:`KeepAlive` per websocket connection (build it when the socket opens): ``TIC``
  every ``tic_seconds`` (IBKR wants one at least once a minute), ``DEAD`` once no frame at all
  came for ``heartbeat_timeout_seconds`` (the gateway sends ``hb`` every 10 s, so silence means
  the socket is gone even when it looks open). A socket not authenticated
  :data:`PROBE_SECONDS` after it opened is sent a ``TIC`` then too: a gateway that sends no
  ``sts`` on it answers the ``tic``, and that answer shows the socket is logged in (seed 004:
  a message must be sent to trigger the backend). ``DEAD`` is reported once; the driver closes the
  socket and builds a new :class:`KeepAlive` for the next one. ``UNAUTHENTICATED`` once the
  socket has been open ``heartbeat_timeout_seconds`` without the driver reporting it
  authenticated (:meth:`KeepAlive.on_authenticated`): a gateway may keep a socket whose session
  it lost open, beating and saying ``authenticated: false``, and it will never stream.
- One :class:`SessionTimers` per authenticated REST session: ``TICKLE`` every
  ``tickle_seconds``, ``VALIDATE`` (``/sso/validate``) every :data:`VALIDATE_SECONDS`.
- A timer that fell behind (the process was suspended) fires once, not once per missed period,
  and restarts its period from ``now``: a burst of catch-up tics helps nobody.
- :func:`backoff` is capped exponential with jitter; the driver iterates it between failed
  attempts and starts a fresh one after a healthy connection.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterator

from recorder.config import SessionConfig

__all__ = ["PROBE_SECONDS", "VALIDATE_SECONDS", "Due", "KeepAlive", "SessionTimers", "backoff"]

#: How long a new socket waits for an ``sts`` before it is sent a ``tic`` to answer instead.
#: Real gateways sent their login burst (``system``, ``act``, ``sts``) within 250 ms of a login,
#: when they sent one (behaviours §1).
PROBE_SECONDS = 1.0

#: ``/sso/validate`` period. IBKR's pacing table allows one a minute; the call only confirms
#: the SSO session (``/tickle`` already keeps it alive), so every five minutes is plenty and
#: stays far from the limit.
VALIDATE_SECONDS = 300.0


class Due(enum.Enum):
    """Something a keep-alive timer says is due now."""

    TIC = "tic"  # send a bare ``tic`` on the websocket
    DEAD = "dead"  # no frame for heartbeat_timeout_seconds: close the socket, reconnect
    UNAUTHENTICATED = "unauthenticated"  # open that long and never authenticated: the same
    TICKLE = "tickle"  # GET /v1/api/tickle
    VALIDATE = "validate"  # GET /v1/api/sso/validate


def backoff(min_seconds: float, max_seconds: float, rng: random.Random) -> Iterator[float]:
    """Delays before reconnect attempts: between ``min`` and ``2·min``, then up to ``4·min``,
    ``8·min``… up to ``max``.

    Each delay is the current ceiling jittered down by up to half, the first one included (many
    recorders losing their gateway at the same moment, as at its 01:00 reset, spread out), never
    below ``min_seconds`` and never above ``max_seconds``. Endless; the same seeded ``rng``
    gives the same delays.
    """
    low = max(0.0, min_seconds)
    high = max(low, max_seconds)
    ceiling = min(high, 2.0 * low)
    while True:
        yield min(high, max(low, ceiling * (1.0 - rng.random() / 2.0)))
        ceiling = min(high, ceiling * 2.0) if ceiling > 0 else high


class KeepAlive:
    """What is due on one websocket connection, opened at ``now``."""

    def __init__(self, session: SessionConfig, now: float) -> None:
        self._tic_seconds = session.tic_seconds
        self._timeout = session.heartbeat_timeout_seconds
        self._next_tic = now + session.tic_seconds
        self._last_frame = now
        self._dead_reported = False
        self._authenticate_by: float | None = now + self._timeout
        self._probe_at: float | None = now + PROBE_SECONDS  # None once authenticated or sent

    @property
    def last_frame(self) -> float:
        """When the last frame arrived (or the connection opened)."""
        return self._last_frame

    def on_frame(self, now: float) -> None:
        """A frame (any frame) arrived at ``now``. Earlier times than one already seen are
        ignored, so the driver may report the same or an older time again."""
        if now > self._last_frame:
            self._last_frame = now
            self._dead_reported = False

    def on_authenticated(self) -> None:
        """The socket authenticated: neither ``UNAUTHENTICATED`` nor the probe ``TIC`` is
        due on it."""
        self._authenticate_by = self._probe_at = None

    def poll(self, now: float) -> list[Due]:
        """What is due at ``now``: ``TIC`` (on its period, or once as the probe of a socket
        not yet authenticated); ``DEAD`` the first time the silence is too long;
        ``UNAUTHENTICATED`` once, when the socket has been open too long unauthenticated."""
        due: list[Due] = []
        if now >= self._next_tic:
            due.append(Due.TIC)
            self._next_tic = now + self._tic_seconds
            self._probe_at = None
        elif self._probe_at is not None and now >= self._probe_at:
            due.append(Due.TIC)
            self._probe_at = None
        if not self._dead_reported and now - self._last_frame >= self._timeout:
            due.append(Due.DEAD)
            self._dead_reported = True
        if self._authenticate_by is not None and now >= self._authenticate_by:
            due.append(Due.UNAUTHENTICATED)
            self._authenticate_by = None
        return due

    def next_deadline(self) -> float:
        """When :meth:`poll` next has something to say (if no frame arrives before)."""
        deadlines = [self._next_tic]
        if self._probe_at is not None:
            deadlines.append(self._probe_at)
        if not self._dead_reported:
            deadlines.append(self._last_frame + self._timeout)
        if self._authenticate_by is not None:
            deadlines.append(self._authenticate_by)
        return min(deadlines)


class SessionTimers:
    """The REST session's timers, started at ``now`` (just after a successful tickle)."""

    def __init__(
        self, session: SessionConfig, now: float, validate_seconds: float = VALIDATE_SECONDS
    ) -> None:
        self._tickle_seconds = session.tickle_seconds
        # never more often than IBKR's 1 request a minute, whatever the caller asks
        self._validate_seconds = max(60.0, validate_seconds)
        self._next_tickle = now + self._tickle_seconds
        self._next_validate = now + self._validate_seconds

    def poll(self, now: float) -> list[Due]:
        """What is due at ``now``: ``TICKLE`` and/or ``VALIDATE``, each at most once."""
        due: list[Due] = []
        if now >= self._next_tickle:
            due.append(Due.TICKLE)
            self._next_tickle = now + self._tickle_seconds
        if now >= self._next_validate:
            due.append(Due.VALIDATE)
            self._next_validate = now + self._validate_seconds
        return due

    def next_deadline(self) -> float:
        """When :meth:`poll` next has something to do."""
        return min(self._next_tickle, self._next_validate)
