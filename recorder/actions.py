"""What the pure parts of the recorder ask their drivers to do.

The subscription book, the smh slot scheduler and friends never touch a socket or the
``events`` table. They return a list of actions, in order, and the driver carries them out in
that order:

- :class:`Send`: send ``text`` as one websocket text message (and record it as an ``out``
  frame, like everything sent).
- :class:`Note`: record a lifecycle event in the ``events`` table: ``kind`` (``subscribe``,
  ``unsubscribe``, ``smh_request``, ``smh_answer``, ``smh_timeout``, ``smd_refresh``, …),
  the ``topic`` it concerns, and an optional JSON-able ``detail``.

Actions are frozen values: equal when their fields are equal, safe to keep and compare in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Action", "Note", "Send"]


@dataclass(frozen=True)
class Send:
    """Send ``text`` on the websocket, as a text message."""

    text: str


@dataclass(frozen=True)
class Note:
    """Record an event of ``kind`` about ``topic`` (with JSON-able ``detail``) in ``events``."""

    kind: str
    topic: str | None = None
    detail: Mapping[str, Any] | None = None


Action = Send | Note
