"""IBKR display strings to typed values: small pure functions that never raise.

The gateway sends most numbers as display strings. The encodings seen in real frames and
documented by IBKR (``behaviours.md`` §5, §7):

- plain decimals ``"271.55"``, ``"64.780"``; JSON numbers for some fields (83, sizes in str);
- thousands commas ``"1,236"``; magnitude suffixes ``"3.4K"``, ``"12.2M"``, ``"1.1B"``;
- a ``C`` (previous close) or ``H`` (halted) prefix on the last price ``"C4735.10"``;
- ``"size @ price"`` in sbd ladder rows;
- ``""``, ``"N/A"`` and ``"-"`` for "no value".

Rules:
- Every function returns ``None`` for a value it cannot read; none raises for any input.
- ``bool`` is not a number here (JSON ``true`` is not a price).
- :func:`is_blank` tells a documented "no value" (``None``, ``""``, ``"N/A"``, ``"-"``) from an odd
  value: the normalizer keeps odd values' raw text in ``extra`` and drops blank ones.
- Suffixed values are scaled exactly (``"12.2M"`` is 12200000.0, not 12199999.999999998).
"""

from __future__ import annotations

import calendar
from decimal import Decimal
from typing import Final

import orjson

BLANKS: Final = frozenset({"", "N/A", "-", "n/a", "NA"})
_SCALE: Final = {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}


def is_blank(value: object) -> bool:
    """True for a value that documents "nothing here": None, ``""``, ``"N/A"``, ``"-"``.
    Exactly so, not after stripping: the batch paths compare exact strings, and a padded
    ``" N/A"`` is kept in ``extra`` as sent by both."""
    return value is None or (type(value) is str and value in BLANKS)


def number(value: object) -> float | None:
    """A display number (``"1,236"``, ``"12.2M"``, ``"-0.5"``, ``0.56``) as float, else None.

    Only what a display number can be: ``float()`` also reads ``"nan"``, ``"inf"``,
    ``"1_000"`` and digits of other scripts, which are odd values here, not numbers."""
    if type(value) is str:
        try:
            parsed = float(value)  # the fast path: "271.55"
        except ValueError:
            return _display_number(value)
        return parsed if _finite_plain(parsed, value) else None
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    return None


def _display_number(text: str) -> float | None:
    s = text.strip().replace(",", "")
    if not s or s in BLANKS:
        return None
    if s[-1] == "%":
        s = s[:-1]
    scale = _SCALE.get(s[-1:].upper()) if s[-1:].isalpha() else None
    if scale is not None:
        mantissa = s[:-1]
        if not _plain(mantissa):
            return None
        try:
            scaled = float(Decimal(mantissa) * scale)
        except (ArithmeticError, ValueError):  # InvalidOperation; Overflow past 1e999999
            return None
        return scaled if scaled - scaled == 0.0 else None  # past a float's range: inf
    try:
        parsed = float(s)
    except ValueError:
        return None
    return parsed if _finite_plain(parsed, s) else None


def _plain(text: str) -> bool:
    """ASCII without ``_``: what ``float()`` and ``Decimal()`` read beyond a display number
    (``"1_000"``, digits of other scripts) is left out."""
    return text.isascii() and "_" not in text


def _finite_plain(parsed: float, text: str) -> bool:
    return parsed - parsed == 0.0 and _plain(text)  # nan - nan and inf - inf are nan


def last_price(value: object) -> tuple[float | None, bool, bool]:
    """Field 31: ``(price, is_close, halted)``; ``"C150.25"`` -> ``(150.25, True, False)``."""
    if type(value) is str and value[:1] in ("C", "H"):
        price = number(value[1:])
        if price is not None:
            return price, value[0] == "C", value[0] == "H"
        return None, False, False
    return number(value), False, False


def size_at_price(value: object) -> tuple[float | None, float | None]:
    """An sbd ``price`` as ``(size, price)``: ``"100 @ 150.25"`` -> ``(100.0, 150.25)``.

    A plain price gives ``(None, price)``; either is None when absent or unreadable.
    """
    if type(value) is str and "@" in value:
        size_text, _, price_text = value.partition("@")
        return number(size_text), number(price_text)
    return None, number(value)


def integer(value: object) -> int | None:
    """An integral JSON number or digit string (``265598``, ``"265598"``, ``1.0``) as int."""
    if type(value) is int:
        return value
    if type(value) is str:
        s = value.strip()
        if s.isascii() and (s.isdigit() or (s[:1] == "-" and s[1:].isdigit())):
            return int(s)
        return None
    if type(value) is float and value.is_integer():
        return int(value)
    return None


_INT64_MAX: Final = 2**63 - 1


def int64(value: object) -> int | None:
    """:func:`integer`, limited to the int64 range (larger ids are unreadable, not an error)."""
    i = integer(value)
    if i is None or -_INT64_MAX - 1 <= i <= _INT64_MAX:
        return i
    return None


def int32(value: object) -> int | None:
    """:func:`integer`, limited to the int32 range."""
    i = integer(value)
    if i is None or -(2**31) <= i < 2**31:
        return i
    return None


_EPOCH_MS_MAX: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def epoch_ms(value: object) -> int | None:
    """An epoch-milliseconds JSON number (``1777552110061``) as int, within year 0..9999."""
    i = integer(value)
    if i is None or not 0 <= i <= _EPOCH_MS_MAX:
        return None
    return i


def compact_utc_ms(value: object) -> int | None:
    """``"20260429-14:21:18"`` (UTC, as in str ``trade_time``) as epoch ms, else None."""
    if type(value) is not str or len(value) != 17 or value[8] != "-":
        return None
    s: str = value
    parts = (s[0:4], s[4:6], s[6:8], s[9:11], s[12:14], s[15:17])
    if s[11] != ":" or s[14] != ":" or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    y, mo, d, h, mi, se = (int(p) for p in parts)
    if not (y >= 1 and 1 <= mo <= 12 and h < 24 and mi < 60 and se < 61):
        return None
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:  # no 31 April, no 29 February 2026
        return None
    return calendar.timegm((y, mo, d, h, mi, se, 0, 0, 0)) * 1000


def text(value: object) -> str | None:
    """A string column's value: strings verbatim, numbers as their JSON text, else None."""
    if type(value) is str:
        return value
    if type(value) is int or type(value) is float:
        return raw_text(value)
    return None


def raw_text(value: object) -> str:
    """A value for ``extra``: a string verbatim, anything else as its JSON text."""
    if type(value) is str:
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # pragma: no cover - parsed JSON always serializes
        return repr(value)
