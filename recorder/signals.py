"""What the socket driver must react to in a received frame, found without parsing most frames.

Almost every frame (quotes, depth, orders…) needs no reaction from the driver, only storage.
The few that do (``sts`` auth changes, ``smh`` answers that hold a slot, the gateway's
``waiting for session`` prompt and its refusal of a session id, the heartbeat whose age the
status line shows, the answer to a ``tic`` that shows a socket with no ``sts`` is logged in)
are picked out by a cheap byte search and only then parsed. Pure: bytes in, a
:class:`Signal` or ``None`` out; never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_STS = b'"topic":"sts"'
_SMH = b'"topic":"smh+'
_WAITING = b"waiting for session"
_REFUSED = b"Topic unknown"
_REFUSED_TEXT = "Topic unknown '{\"s'"  # as the error's text reads, decoded
_HB = b'"hb":'
_TOPIC = b'"topic":"'
_TOPIC_LEN = len(_TOPIC)
_STS_REST = _STS[_TOPIC_LEN:]  # what follows _TOPIC in _STS
_SMH_REST = _SMH[_TOPIC_LEN:]
_CONID_DIGITS = 19  # a conid is an int64


@dataclass(frozen=True)
class AuthChanged:
    """An ``sts`` frame said the brokerage session is (or is no longer) authenticated."""

    authenticated: bool
    competing: bool | None = None


@dataclass(frozen=True)
class Competing:
    competing: bool


@dataclass(frozen=True)
class WaitingForSession:
    pass


@dataclass(frozen=True)
class SessionRefused:
    """The gateway's ``{"error":"Topic unknown '{\"s'",…}``: it read the ``{"session":…}``
    sent on the socket as a topic, which it does when that session is not one it has
    authenticated (``shared/ibkr/behaviours.md`` §2, §38)."""


@dataclass(frozen=True)
class SmhAnswer:
    conid: int
    server_id: str


@dataclass(frozen=True)
class Heartbeat:
    """The gateway's ``{"topic":"system","hb":…}``, every 10 s: the status line shows its age."""


HEARTBEAT = Heartbeat()


@dataclass(frozen=True)
class TicAnswer:
    """The gateway's answer to a ``tic``: ``{"topic":"tic","alive":true,"id":"<session id>",…}``
    (four copies each time, behaviours §3). It comes only on a socket logged in to a session,
    and names the session."""

    alive: bool
    session_id: str | None


Signal = (AuthChanged | Competing | WaitingForSession | SessionRefused | SmhAnswer | Heartbeat
          | TicAnswer)


def _loads(payload: bytes) -> object:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            return orjson.loads(payload.decode("utf-8", "replace"))
        except orjson.JSONDecodeError:
            return None


def signal_of(payload: bytes) -> Signal | None:
    """The reaction a frame asks for, or ``None`` for the common frame that needs none."""
    if _STS in payload:
        return _sts_signal(payload)
    if _SMH in payload:
        return _smh_signal(payload)
    if _WAITING in payload and _TOPIC not in payload:
        return _waiting_signal(payload)
    if _REFUSED in payload and _TOPIC not in payload:
        return _refused_signal(payload)
    topic = topic_of(payload)
    if topic == b"system" and _HB in payload:
        return HEARTBEAT
    if topic == b"tic":
        return _tic_signal(payload)
    return None


def _sts_signal(payload: bytes) -> Signal | None:
    body = _loads(payload)
    if isinstance(body, dict) and isinstance(args := body.get("args"), dict):
        competing = args.get("competing")
        if "authenticated" in args:
            return AuthChanged(
                args["authenticated"] is True,
                competing if isinstance(competing, bool) else None,
            )
        if isinstance(competing, bool):
            return Competing(competing)
    return None


def _smh_signal(payload: bytes) -> Signal | None:
    body = _loads(payload)
    if not isinstance(body, dict):
        return None
    topic = body.get("topic")
    server_id = body.get("serverId")
    if not isinstance(topic, str) or server_id is None:
        return None
    conid_text = topic[4:].split("+", 1)[0].split("@", 1)[0]
    # ASCII digits only, and no longer than an int64: str.isdigit() also takes "²", which
    # int() refuses, and int() refuses text past 4,300 digits; a raise here would end the run.
    if not (conid_text.isascii() and conid_text.isdigit()) or len(conid_text) > _CONID_DIGITS:
        return None
    return SmhAnswer(int(conid_text), str(server_id))


def _tic_signal(payload: bytes) -> Signal | None:
    body = _loads(payload)
    if not isinstance(body, dict) or body.get("topic") != "tic":
        return None
    session_id = body.get("id")
    return TicAnswer(body.get("alive") is True, session_id if isinstance(session_id, str) else None)


def _waiting_signal(payload: bytes) -> Signal | None:
    body = _loads(payload)
    if isinstance(body, dict) and body.get("message") == "waiting for session":
        return WaitingForSession()
    return None


def _refused_signal(payload: bytes) -> Signal | None:
    body = _loads(payload)
    if isinstance(body, dict) and body.get("error") == _REFUSED_TEXT:
        return SessionRefused()
    return None


def classify(payload: bytes) -> tuple[bytes, Signal | None]:
    """``(topic_of(payload), signal_of(payload))`` in one pass over the payload.

    The socket driver asks both of every frame. Done apart they search the payload four times
    (``bytes.__contains__`` also pays for a TypeError it raises and clears inside, trying the
    needle as an int first); here one search finds each ``"topic":"``, and the ``sts`` and
    ``smh`` markers, which both start with it, are checked where it was found."""
    i = payload.find(_TOPIC)
    if i < 0:  # then neither _STS nor _SMH is in it either
        if payload.find(_WAITING) >= 0:
            return b"message", _waiting_signal(payload)
        if payload.find(_REFUSED) >= 0:
            return b"message", _refused_signal(payload)
        return b"message", None
    start = i + _TOPIC_LEN
    end = payload.find(b'"', start)
    topic = payload[start:end] if end > 0 else payload[start:]
    plus = topic.find(b"+")
    if plus >= 0:
        topic = topic[:plus]
    smh = False
    while i >= 0:  # every "topic":" (they may overlap: search on from the next byte)
        at = i + _TOPIC_LEN
        if payload.startswith(_STS_REST, at):
            return topic, _sts_signal(payload)
        if payload.startswith(_SMH_REST, at):
            smh = True
        i = payload.find(_TOPIC, i + 1)
    if smh:
        return topic, _smh_signal(payload)
    if topic == b"system" and _HB in payload:
        return topic, HEARTBEAT
    if topic == b"tic":
        return topic, _tic_signal(payload)
    return topic, None


def topic_of(payload: bytes) -> bytes:
    """The topic family of a frame for counting (``smd``, ``sbd``, ``system``…), cheaply."""
    i = payload.find(_TOPIC)
    if i < 0:
        return b"message"
    start = i + len(_TOPIC)
    end = payload.find(b'"', start)
    topic = payload[start:end] if end > 0 else payload[start:]
    plus = topic.find(b"+")
    return topic[:plus] if plus >= 0 else topic
