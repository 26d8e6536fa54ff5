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
"""

from __future__ import annotations

from typing import Any, Final

from recorder.frames import Frame
from recorder.normalize.rows import Row
from recorder.values import epoch_ms, int64, is_blank, last_price, number, raw_text, text

WIDTH: Final = 26
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
# Non-numeric keys, coded below zero so one dict lookup classifies every key.
_TOPIC, _UPDATED, _CONID, _CONID_EX, _SERVER_ID, _6119, _SYMBOL, _AVAIL, _LAST = range(-1, -10, -1)
_V87, _V87RAW, _V7762 = -10, -11, -12
_KEYS: Final[dict[str, int]] = {
    **NUMERIC_FIELDS,
    "topic": _TOPIC,
    "_updated": _UPDATED,
    "conid": _CONID,
    "conidEx": _CONID_EX,
    "server_id": _SERVER_ID,
    "6119": _6119,
    "55": _SYMBOL,
    "6509": _AVAIL,
    "31": _LAST,
    "87": _V87,
    "87_raw": _V87RAW,
    "7762": _V7762,
}


def smd_rows(obj: dict[str, Any], topic: str, frame: Frame) -> tuple[str, list[Row]]:
    """The one ``market_data`` row of an smd frame."""
    row: list[Any] = [None] * WIDTH
    row[0] = frame.recv_ts_ns
    row[1] = frame.seq
    extra: list[tuple[str, str]] | None = None
    marker: Any = None
    volumes: list[tuple[int, str, Any]] | None = None
    keys = _KEYS
    for key, value in obj.items():
        code = keys.get(key)
        if code is None:
            parsed: Any = None
        elif code > 0:
            if type(value) is str:
                try:
                    parsed = float(value)
                except ValueError:
                    parsed = number(value)
            else:
                parsed = number(value)
            if parsed is not None:
                row[code] = parsed
                continue
        elif code == _TOPIC:
            continue
        elif code == _UPDATED:
            parsed = row[2] = epoch_ms(value)
        elif code == _CONID:
            parsed = row[3] = int64(value)
        elif code == _CONID_EX:
            parsed = row[4] = text(value)
        elif code == _SERVER_ID:
            parsed = row[5] = text(value)
        elif code == _6119:
            marker = value
            continue
        elif code == _SYMBOL:
            parsed = row[6] = text(value)
        elif code == _AVAIL:
            parsed = row[24] = text(value)
        elif code == _LAST:
            parsed, is_close, halted = last_price(value)
            if parsed is not None:
                row[7], row[8], row[9] = parsed, is_close, halted
                continue
        else:
            if volumes is None:
                volumes = []
            volumes.append((code, key, value))
            continue
        if parsed is None and not is_blank(value):
            if extra is None:
                extra = []
            extra.append((key, raw_text(value)))
    if marker is not None:
        mark = text(marker)
        if row[5] is None:
            row[5] = mark
        elif mark != row[5]:
            extra = (extra or []) + [("6119", raw_text(marker))]
    if volumes is not None:
        extra = _volume(row, volumes, extra)
    row[25] = extra
    return "market_data", [tuple(row)]


def _volume(
    row: list[Any], volumes: list[tuple[int, str, Any]], extra: list[tuple[str, str]] | None
) -> list[tuple[str, str]] | None:
    """Pick the volume source by preference (7762, 87_raw, 87); keep unreadable ones in extra."""
    for _code, key, value in sorted(volumes):  # codes: 7762 < 87_raw < 87
        parsed = number(value)
        if parsed is None:
            if not is_blank(value):
                extra = (extra or []) + [(key, raw_text(value))]
        elif row[15] is None:
            row[15] = parsed
    return extra
