"""smd frames to ``market_data`` rows: one row per frame, a delta of the quote.

Rules (field ids: ``behaviours.md`` §13):
- The envelope keys are columns: ``conid``, ``conidEx`` -> ``conid_ex``, ``_updated`` ->
  ``updated`` (epoch ms), ``server_id``; ``6119`` equals ``server_id`` and is dropped (kept in
  ``extra`` only if it differs; used as ``server_id`` when that key is absent); ``topic`` is
  dropped (``raw.topic`` has it).
- 31 is the last price; a ``C`` prefix sets ``last_is_close``, ``H`` sets ``halted``. Both flags
  are null when the frame carries no 31.
- Volume prefers 7762 (unformatted), then ``87_raw``, then 87 parsed (``"12.2M"``); the unused
  sources are dropped when they parse, kept in ``extra`` when they do not.
- Every other numeric field in :data:`NUMERIC_FIELDS` is parsed with
  :func:`recorder.values.number`; 55 and 6509 are kept verbatim; any other key goes to ``extra``.
- A field sent as a blank string (``""``, ``N/A``, ``-``…) is a value withdrawn (no bid now),
  which a delta's absent field is not: its id goes to ``cleared`` (the volume sources last),
  so ``quotes`` clears the column instead of carrying the old value. 55 and 6509 are verbatim
  text, never cleared; a JSON ``null`` counts as absent (Arrow's reader cannot tell them apart).
"""

from __future__ import annotations

from typing import Any, Final

from recorder.frames import Frame
from recorder.normalize.rows import Row
from recorder.values import (
    BLANKS,
    epoch_ms,
    int64,
    is_blank,
    last_price,
    number,
    raw_text,
    text,
)

WIDTH: Final = 27
CLEARED: Final = 26  # the cleared column's index
NUMERIC_FIELDS: Final[dict[str, int]] = {
    "84": 10,  # bid
    "86": 11,  # ask
    "88": 12,  # bid_size
    "85": 13,  # ask_size
    "7059": 14,  # last_size
    "70": 16,  # high
    "71": 17,  # low
    "7295": 18,  # open
    "7296": 19,  # close
    "7741": 20,  # prior_close
    "82": 21,  # change
    "83": 22,  # change_pct
    "7635": 23,  # mark
}
# Every other key gets a code below zero, so one dict lookup classifies it. The envelope keys
# are read up front with direct lookups (every frame has them) and skipped in the loop.
_ENVELOPE, _SYMBOL, _AVAIL, _LAST, _V7762, _V87RAW, _V87 = 0, -1, -2, -3, -4, -5, -6
_KEYS: Final[dict[str, int]] = {
    **NUMERIC_FIELDS,
    **dict.fromkeys(("topic", "_updated", "conid", "conidEx", "server_id", "6119"), _ENVELOPE),
    "55": _SYMBOL,
    "6509": _AVAIL,
    "31": _LAST,
    "7762": _V7762,
    "87_raw": _V87RAW,
    "87": _V87,
}
_MS_MAX: Final = 253_402_300_799_999
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _envelope(row: list[Any], obj: dict[str, Any]) -> list[tuple[str, str]] | None:
    """Fill updated, conid, conid_ex, server_id; the odd values go to the returned extra."""
    get = obj.get
    extra: list[tuple[str, str]] | None = None
    updated, conid = get("_updated"), get("conid")
    conid_ex, server_id = get("conidEx"), get("server_id")
    if type(updated) is int and 0 <= updated <= _MS_MAX:
        row[2] = updated
    elif updated is not None:
        row[2] = epoch_ms(updated)
        if row[2] is None:
            extra = _odd(extra, "_updated", updated)
    if type(conid) is int and _I64_MIN <= conid <= _I64_MAX:
        row[3] = conid
    elif conid is not None:
        row[3] = int64(conid)
        if row[3] is None:
            extra = _odd(extra, "conid", conid)
    if type(conid_ex) is str:
        row[4] = conid_ex
    elif conid_ex is not None:
        extra = _odd(extra, "conidEx", conid_ex)
    if type(server_id) is str:
        row[5] = server_id
    elif server_id is not None:
        row[5] = text(server_id)
        if row[5] is None:
            extra = _odd(extra, "server_id", server_id)
    marker = get("6119")
    if marker is not None:
        mark = text(marker)
        if row[5] is None:
            row[5] = mark
        elif mark != row[5]:
            extra = _odd(extra, "6119", marker)
    return extra


def _odd(extra: list[tuple[str, str]] | None, key: str, value: Any) -> list[tuple[str, str]] | None:
    """Keep ``value`` in extra unless it is a documented blank."""
    if is_blank(value):
        return extra
    if extra is None:
        return [(key, raw_text(value))]
    extra.append((key, raw_text(value)))
    return extra


def _unread(row: list[Any], extra: list[tuple[str, str]] | None, key: str,
            value: Any) -> list[tuple[str, str]] | None:
    """A field value with no typed reading: a blank string is listed in ``cleared`` (a value
    withdrawn), anything else but a JSON null is kept in ``extra``."""
    if type(value) is str and value in BLANKS:
        cleared = row[CLEARED]
        if cleared is None:
            row[CLEARED] = [key]
        else:
            cleared.append(key)
        return extra
    return _odd(extra, key, value)


def smd_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """The one ``market_data`` row of an smd frame."""
    row: list[Any] = [None] * WIDTH
    row[0] = frame.recv_ts_ns
    row[1] = frame.seq
    extra = _envelope(row, obj)
    volumes: list[tuple[int, str, Any]] | None = None
    keys = _KEYS
    for key, value in obj.items():
        code = keys.get(key)
        if code == _ENVELOPE:
            continue
        if code is None:
            parsed: Any = None
        elif code > 0:
            if type(value) is str:
                try:
                    parsed = float(value)  # number()'s fast path, inlined: most values
                except ValueError:
                    parsed = number(value)
                else:  # as number(): finite, plain ASCII, no "1_000"
                    if parsed - parsed != 0.0 or "_" in value or not value.isascii():
                        parsed = None
            else:
                parsed = number(value)
            if parsed is not None:
                row[code] = parsed
                continue
        elif code == _LAST:
            parsed, is_close, halted = last_price(value)
            if parsed is not None:
                row[7], row[8], row[9] = parsed, is_close, halted
                continue
        elif code == _SYMBOL:
            parsed = row[6] = text(value)
        elif code == _AVAIL:
            parsed = row[24] = text(value)
        else:
            if volumes is None:
                volumes = []
            volumes.append((code, key, value))
            continue
        if parsed is None:
            extra = _unread(row, extra, key, value)
    if volumes is not None:
        extra = _volume(row, volumes, extra)
    row[25] = extra
    return "market_data", [tuple(row)]


def _volume(
    row: list[Any], volumes: list[tuple[int, str, Any]], extra: list[tuple[str, str]] | None
) -> list[tuple[str, str]] | None:
    """Pick the volume source by preference (7762, 87_raw, 87); keep unreadable ones in extra."""
    for _code, key, value in sorted(volumes, reverse=True):  # codes: 7762 > 87_raw > 87
        parsed = number(value)
        if parsed is None:
            extra = _unread(row, extra, key, value)
        elif row[15] is None:
            row[15] = parsed
    return extra
