"""One function per data topic: a parsed frame in, rows of one table out.

Each handler takes ``(obj, topic, frame)`` (``obj`` is the parsed JSON object, ``topic`` its
``topic`` string) and returns ``(table, rows)``; rows are tuples in the column order of
``schemas/<table>.toml`` (``tests/test_normalizer.py`` checks the two agree).

Rules:
- A handler never raises anything but :class:`NormalizeError`, and raises it only for a frame
  whose shape it cannot read (``data``/``args`` of the wrong type, an element that is not an
  object). Odd *values* never raise: they become null.
- A key with no typed column goes to ``extra`` as raw text (:func:`recorder.values.raw_text`);
  so does a value that could not be read into its typed column, unless it is a documented
  blank (``""``, ``"N/A"``, ``"-"``). ``extra`` is null when it would be empty.
- Two keys feeding one column (``acct``/``account``, ``trade_time_r``/``trade_time``): the one
  listed first in the handler's spec wins, whatever order the frame has them in; the other
  goes to ``extra`` only when it disagrees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from recorder.frames import Frame
from recorder.normalize.market_data import smd_rows
from recorder.normalize.rows import (
    NormalizeError,
    Row,
    fill,
    malformed_detail,
)
from recorder.values import (
    compact_utc_ms,
    epoch_ms,
    int32,
    int64,
    is_blank,
    number,
    raw_text,
    size_at_price,
    text,
)

__all__ = ["TOPIC_HANDLERS", "NormalizeError", "Row", "malformed_detail"]

Handler = Callable[[dict[str, Any], str, Frame], tuple[str, list[Row]]]


def _array(obj: dict[str, Any], key: str, topic: str) -> list[dict[str, Any]]:
    items = obj.get(key)
    if type(items) is not list:
        raise NormalizeError(f"{topic} frame has no `{key}` array")
    for item in items:
        if type(item) is not dict:
            raise NormalizeError(f"{topic} `{key}` element is not an object")
    return items


# --- smh: bars ---------------------------------------------------------------------------

_BAR_KEYS: Final = {"o": 6, "h": 7, "l": 8, "c": 9, "v": 10}


def _echo(obj: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(bar, period, source)`` from the ``payload`` echo string of an smh answer."""
    echo = obj.get("payload")
    if type(echo) is str:
        try:
            echo = orjson.loads(echo)
        except orjson.JSONDecodeError:
            return None, None, None
    if type(echo) is not dict:
        return None, None, None
    return text(echo.get("bar")), text(echo.get("period")), text(echo.get("source"))


def smh_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """One ``bars`` row per element of ``data``; ``bar_time`` from ``t`` when present; the
    answer's own fields (``serverId``, ``priceFactor``…) on every row."""
    data = _array(obj, "data", topic)
    conid = int64(topic[4:]) if topic[3:4] == "+" else None
    head = (frame.recv_ts_ns, frame.seq, conid, text(obj.get("serverId")), text(obj.get("symbol")))
    outside_rth = obj.get("outsideRth")
    tail = (*_echo(obj), int64(obj.get("priceFactor")), int64(obj.get("volumeFactor")),
            outside_rth if type(outside_rth) is bool else None)
    rows: list[Row] = []
    for item in data:
        bar: list[Any] = [None] * 5
        for key, value in item.items():
            slot = _BAR_KEYS.get(key)
            if slot is not None:
                bar[slot - 6] = number(value)
        rows.append((*head, epoch_ms(item.get("t")), *bar, *tail))
    return "bars", rows


# --- sbd: depth --------------------------------------------------------------------------


def sbd_topic(topic: str) -> tuple[str | None, int | None, str | None]:
    """``(account, conid, exchange)`` of ``sbd+ACCT+CONID[+EXCH]``."""
    parts = topic.split("+")
    account = parts[1] if len(parts) > 1 and parts[1] else None
    conid = int64(parts[2]) if len(parts) > 2 else None
    exchange = parts[3] if len(parts) > 3 and parts[3] else None
    return account, conid, exchange


def sbd_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """One ``depth`` row per element of ``data``; ``price`` may be ``"size @ price"``."""
    data = _array(obj, "data", topic)
    account, conid, exchange = sbd_topic(topic)
    rows: list[Row] = []
    for item in data:
        row_no = focus = price = size = bid = ask = None
        extra: list[tuple[str, str]] | None = None
        for key, value in item.items():
            if key == "price":
                size, price = size_at_price(value)
                ok = price is not None and (size is not None or "@" not in str(value))
            elif key == "row":
                row_no = int32(value)
                ok = row_no is not None
            elif key == "focus":
                focus = int32(value)
                ok = focus is not None
            elif key == "bid":
                bid = number(value)
                ok = bid is not None
            elif key == "ask":
                ask = number(value)
                ok = ask is not None
            else:
                ok = False
            if not ok and not is_blank(value):
                if extra is None:
                    extra = []
                extra.append((key, raw_text(value)))
        rows.append(
            (frame.recv_ts_ns, frame.seq, account, conid, exchange, row_no, focus, price, size,
             bid, ask, extra)
        )  # fmt: skip
    return "depth", rows


# --- sor: orders -------------------------------------------------------------------------

_ORDER_SPEC: Final = {
    "acct": (2, text),
    "account": (2, text),
    "conid": (3, int64),
    "conidex": (4, text),
    "conidEx": (4, text),
    "orderId": (5, int64),
    "status": (6, text),
    "order_ccp_status": (7, text),
    "side": (8, text),
    "orderType": (9, text),
    "price": (10, number),
    "avgPrice": (11, number),
    "totalSize": (12, number),
    "filledQuantity": (13, number),
    "remainingQuantity": (14, number),
    "ticker": (15, text),
    "secType": (16, text),
    "timeInForce": (17, text),
    "orderDesc": (18, text),
    "lastExecutionTime_r": (19, epoch_ms),
}
_ORDER_WIDTH: Final = 22
_ORDER_SNAPSHOT: Final = 20  # the ``snapshot`` column


def _order_row(item: dict[str, Any], frame: Frame, snapshot: bool) -> Row:
    row = fill(item, _ORDER_SPEC, _ORDER_WIDTH, frame.recv_ts_ns, frame.seq)
    return (*row[:_ORDER_SNAPSHOT], snapshot, *row[_ORDER_SNAPSHOT + 1:])


def sor_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """One ``orders`` row per element of ``args`` (partial updates give mostly-null rows)."""
    rows: list[Row] = []
    for item in _array(obj, "args", topic):
        rows.append(_order_row(item, frame, False))
    return "orders", rows


def order_list_rows(detail: object, frame: Frame) -> list[Row]:
    """One ``orders`` row (``snapshot`` true) per order of an ``/iserver/account/orders``
    answer, the ``detail`` of an ``orders_snapshot`` event; an answer of another shape, or an
    element that is not an object, gives none (the event keeps the answer whole)."""
    orders = detail.get("orders") if type(detail) is dict else None
    if type(orders) is not list:
        return []
    return [_order_row(item, frame, True) for item in orders if type(item) is dict]


# --- str: trades -------------------------------------------------------------------------

_TRADE_SPEC: Final = {
    "execution_id": (2, text),
    "conid": (3, int64),
    "symbol": (4, text),
    "side": (5, text),
    "size": (6, number),
    "price": (7, number),
    "trade_time_r": (8, epoch_ms),
    "trade_time": (8, compact_utc_ms),
    "exchange": (9, text),
    "net_amount": (10, number),
    "commission": (11, number),
    "account": (12, text),
    "sec_type": (13, text),
    "order_id": (14, int64),
}
_TRADE_WIDTH: Final = 16


def str_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """One ``trades`` row per execution; both copies of a re-sent execution are kept."""
    rows: list[Row] = []
    for item in _array(obj, "args", topic):
        rows.append(fill(item, _TRADE_SPEC, _TRADE_WIDTH, frame.recv_ts_ns, frame.seq))
    return "trades", rows


# --- spl: pnl ----------------------------------------------------------------------------

_PNL_SPEC: Final = {
    "rowType": (4, int32),
    "dpl": (5, number),
    "nl": (6, number),
    "upl": (7, number),
    "rpl": (8, number),
    "uel": (9, number),
    "el": (10, number),
    "mv": (11, number),
}
_PNL_WIDTH: Final = 13


def spl_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """One ``pnl`` row per ``"<acct>.Core"`` key of ``args``."""
    args = obj.get("args")
    if type(args) is not dict:
        raise NormalizeError("spl frame without an `args` object")
    rows: list[Row] = []
    for key, item in args.items():
        if type(item) is not dict:
            raise NormalizeError("spl `args` value is not an object")
        row = list(fill(item, _PNL_SPEC, _PNL_WIDTH, frame.recv_ts_ns, frame.seq))
        row[2] = key.partition(".")[0]
        row[3] = key
        rows.append(tuple(row))
    return "pnl", rows


TOPIC_HANDLERS: Final[dict[str, Handler]] = {
    "smd": smd_rows,
    "smh": smh_rows,
    "sbd": sbd_rows,
    "sor": sor_rows,
    "str": str_rows,
    "spl": spl_rows,
}
"""Topic prefix (the text before the first ``+``) to its handler."""
