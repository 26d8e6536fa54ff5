"""What a client says to the gateway: parse one websocket message into a command (pure).

Grammar (behaviours.md §1 item 3, SPEC §5): ``TOPIC+ARG[+ARG…]`` where the last argument may
be JSON (``smd+265598+{"fields":[…]}``), bare ``tic``, bare ``utr``, or the login message
``{"session":"<id>"}``. Anything the gateway cannot read becomes :class:`Unknown`, carrying the
text whose first three characters the gateway reports as the unknown topic.

Rules:
- ``CONID`` may be ``CONID@EXCH``; the frame's ``conid`` is the number, ``conidEx`` the text.
- An ``smd`` without a readable ``fields`` list asks for :data:`market.DEFAULT_FIELDS`.
- ``parse`` never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from recorder.sim.market import DEFAULT_FIELDS


@dataclass(frozen=True)
class Tic:
    pass


@dataclass(frozen=True)
class SessionLogin:
    session_id: str


@dataclass(frozen=True)
class Smd:
    conid: int
    conid_ex: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Umd:
    conid_ex: str


@dataclass(frozen=True)
class Smh:
    conid: int
    conid_ex: str
    args: dict[str, Any]
    payload: str  # the argument text, echoed back as "payload"


@dataclass(frozen=True)
class Umh:
    server_id: str


@dataclass(frozen=True)
class Sbd:
    account: str
    conid: int
    exchange: str | None

    @property
    def key(self) -> str:
        return f"sbd+{self.account}+{self.conid}" + (f"+{self.exchange}" if self.exchange else "")


@dataclass(frozen=True)
class Ubd:
    account: str


@dataclass(frozen=True)
class Stream:
    """``sor``/``str``/``spl`` subscribe (``on=True``) or ``uor``/``utr``/``upl`` (``on=False``)."""

    name: str  # "sor" | "str" | "spl"
    on: bool
    args: dict[str, Any]


@dataclass(frozen=True)
class Ignored:
    """Understood, nothing to answer (``ech+hb``)."""

    text: str


@dataclass(frozen=True)
class Unknown:
    text: str


Command = Tic | SessionLogin | Smd | Umd | Smh | Umh | Sbd | Ubd | Stream | Ignored | Unknown

_STREAMS = {
    "sor": ("sor", True),
    "uor": ("sor", False),
    "str": ("str", True),
    "utr": ("str", False),
    "spl": ("spl", True),
    "upl": ("spl", False),
}


def _conid(text: str) -> tuple[int, str] | None:
    number = text.split("@", 1)[0]
    if not number.isdigit():
        return None
    return int(number), text


def _json_args(text: str) -> dict[str, Any] | None:
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse(message: str) -> Command:
    """Parse one client message; unreadable input gives :class:`Unknown`, never an exception."""
    text = message.strip()
    if text == "tic":
        return Tic()
    if text.startswith("{"):
        body = _json_args(text)
        if body is not None and isinstance(body.get("session"), str):
            return SessionLogin(body["session"])
        return Unknown(text)
    head, _, rest = text.partition("+")
    if head in _STREAMS:
        name, on = _STREAMS[head]
        args = _json_args(rest)
        return Stream(name, on, args or {}) if args is not None else Unknown(text)
    if head == "ech":
        return Ignored(text)
    if head in ("smd", "umd", "smh"):
        target, _, arg_text = rest.partition("+")
        parsed = _conid(target)
        args = _json_args(arg_text)
        if parsed is None or args is None:
            return Unknown(text)
        conid, conid_ex = parsed
        if head == "umd":
            return Umd(conid_ex)
        if head == "smh":
            return Smh(conid, conid_ex, args, arg_text)
        fields = args.get("fields")
        if isinstance(fields, list) and fields and all(isinstance(f, str | int) for f in fields):
            return Smd(conid, conid_ex, tuple(str(f) for f in fields))
        return Smd(conid, conid_ex, DEFAULT_FIELDS)
    if head == "umh" and rest:
        return Umh(rest)
    if head == "sbd":
        parts = rest.split("+")
        if len(parts) in (2, 3) and parts[0] and parts[1].isdigit():
            return Sbd(parts[0], int(parts[1]), parts[2] if len(parts) == 3 and parts[2] else None)
        return Unknown(text)
    if head == "ubd" and rest:
        return Ubd(rest)
    return Unknown(text)
