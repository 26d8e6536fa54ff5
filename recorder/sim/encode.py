"""Pure encoders for the frames a Client Portal gateway sends: explicit values in, wire bytes out.

Rules (each from ``../shared/ibkr/behaviours.md`` and the captured frames):

- Every frame is compact JSON (no spaces), keys in the order the real gateway sends them;
  ``orjson`` keeps dict insertion order, so each encoder builds its dict in that order.
- Topic-less frames exist: ``{"message":"waiting for session"}`` and ``{"error":…,"code":…}``.
- smd: the first snapshot has ``topic`` in the middle (``<first field>, conidEx, topic, conid,
  _updated, 6119, <one field>, server_id, <rest>``); the duplicate snapshot and every delta are
  ``server_id, conidEx, conid, _updated, 6119, <fields…>, topic`` (topic last).
- No function here reads a clock: times (``now_ms``, ``hb_ms``, ``updated_ms``) are parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

SERVER_NAME: Final = "SimGw10045"
SERVER_VERSION: Final = "Build 10.45.1a, Apr 22, 2026 1:39:05 PM"
MAC: Final = "98:F2:B3:23:BF:A0"

FieldValue = str | int | float

WAITING_FOR_SESSION: Final = b'{"message":"waiting for session"}'


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def topic_unknown(text: str) -> bytes:
    """The gateway's answer to text it cannot parse: it takes the first 3 chars as the topic."""
    return dumps({"error": f"Topic unknown '{text[:3]}'", "code": 1})


def error_frame(message: str, code: int) -> bytes:
    return dumps({"error": message, "code": code})


def system_success(username: str, is_paper: bool) -> bytes:
    return dumps({"topic": "system", "success": username, "isFT": False, "isPaper": is_paper})


def heartbeat(hb_ms: int) -> bytes:
    return b'{"topic":"system","hb":%d}' % hb_ms


def act(account: str, gateway_session_tag: str, is_paper: bool) -> bytes:
    """The ``act`` frame of the login burst (shape of the 2026 capture, one account)."""
    args = {
        "accounts": [account],
        "acctProps": {
            account: {
                "hasChildAccounts": False,
                "supportsCashQty": True,
                "liteUnderPro": False,
                "noFXConv": False,
                "isProp": False,
                "supportsFractions": True,
                "allowCustomerTime": False,
                "autoFx": False,
            }
        },
        "aliases": {account: account},
        "allowFeatures": {
            "showGFIS": True,
            "allowEventContract": True,
            "allowFXConv": True,
            "allowTypeAhead": True,
            "snapshotRefreshTimeout": 30,
            "liteUser": False,
            "research": True,
            "allowCrypto": False,
            "allowFA": False,
            "allowedAssetTypes": "STK,CFD,OPT,FOP,WAR,FUT,BAG,PDC,CASH,IND,BOND,BILL,FUND",
            "sideBySide": True,
        },
        "chartPeriods": {
            "STK": ["*"],
            "OPT": ["2h", "1d", "2d", "1w", "1m"],
            "FUT": ["*"],
            "CASH": ["*"],
        },
        "groups": [],
        "profiles": [],
        "selectedAccount": account,
        "serverInfo": {"serverName": SERVER_NAME, "serverVersion": SERVER_VERSION},
        "sessionId": gateway_session_tag,
        "isFT": False,
        "isPaper": is_paper,
    }
    return dumps({"topic": "act", "args": args})


def sts_login(username: str) -> bytes:
    """The ``sts`` frame of the login burst (2026 build keys)."""
    return dumps(
        {
            "topic": "sts",
            "args": {
                "connected": True,
                "authenticated": True,
                "established": True,
                "competing": False,
                "message": "",
                "fail": "",
                "serverName": SERVER_NAME,
                "serverVersion": SERVER_VERSION,
                "username": username,
            },
        }
    )


def sts_one(key: str, value: Any) -> bytes:
    """A one-key ``sts`` frame, as the gateway sends them when auth changes."""
    return dumps({"topic": "sts", "args": {key: value}})


def sts_auth_lost(competing: bool, message: str = "") -> list[bytes]:
    """The small sts frames a socket gets when the brokerage session is lost."""
    return [
        sts_one("competing", competing),
        sts_one("message", message),
        sts_one("authenticated", False),
    ]


def tic_reply(session_id: str, last_accessed_ms: int) -> bytes:
    return dumps(
        {"topic": "tic", "alive": True, "id": session_id, "lastAccessed": last_accessed_ms}
    )


def smd_first(
    conid: int,
    conid_ex: str,
    server_id: str,
    updated_ms: int,
    fields: Sequence[tuple[str, FieldValue]],
) -> bytes:
    """The first of the two snapshot frames: ``topic`` sits in the middle."""
    frame: dict[str, Any] = {}
    rest = list(fields)
    if rest:
        key, value = rest.pop(0)
        frame[key] = value
    frame["conidEx"] = conid_ex
    frame["topic"] = f"smd+{conid}"
    frame["conid"] = conid
    frame["_updated"] = updated_ms
    frame["6119"] = server_id
    if rest:
        key, value = rest.pop(0)
        frame[key] = value
    frame["server_id"] = server_id
    for key, value in rest:
        frame[key] = value
    return dumps(frame)


def smd_update(
    conid: int,
    conid_ex: str,
    server_id: str,
    updated_ms: int,
    fields: Sequence[tuple[str, FieldValue]],
) -> bytes:
    """The duplicate snapshot and every delta: the envelope, the fields, ``topic`` last."""
    frame: dict[str, Any] = {
        "server_id": server_id,
        "conidEx": conid_ex,
        "conid": conid,
        "_updated": updated_ms,
        "6119": server_id,
    }
    for key, value in fields:
        frame[key] = value
    frame["topic"] = f"smd+{conid}"
    return dumps(frame)


def sbd(topic: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """A BookTrader ladder: ``{"topic":"sbd+ACCT+CONID","data":[{row,focus,price[,bid|ask]}…]}``."""
    return dumps({"topic": topic, "data": list(rows)})


def spl(account: str, dpl: float, nl: float, upl: float, el: float, uel: float, mv: float) -> bytes:
    return dumps(
        {
            "topic": "spl",
            "args": {
                f"{account}.Core": {
                    "rowType": 1,
                    "dpl": dpl,
                    "nl": nl,
                    "upl": upl,
                    "el": el,
                    "uel": uel,
                    "mv": mv,
                }
            },
        }
    )


def blt(bulletin_id: str, message: str) -> bytes:
    return dumps({"topic": "blt", "args": {"id": bulletin_id, "message": message}})


def ntf(notification_id: str, text: str, title: str, url: str) -> bytes:
    return dumps(
        {"topic": "ntf", "args": {"id": notification_id, "text": text, "title": title, "url": url}}
    )


def with_bad_utf8(frame: bytes) -> bytes:
    """Put a raw 0x99 byte inside the first string value of ``frame`` (still valid JSON shape).

    Real gateways send the Windows-1252 trademark sign this way in order/trade text.
    """
    marker = frame.find(b'":"')
    if marker < 0:
        return frame[:-1] + b',"text":"\x99"}'
    cut = marker + 3
    return frame[:cut] + b"\x99" + frame[cut:]


MALFORMED: Final = b'{"topic":"smd+265598","31":"271.5'  # cut off mid-value: not JSON
