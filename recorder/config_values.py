"""Reading one TOML table of the configuration: typed values, and errors that name the key.

:class:`Table` reads the values of one table (or one command-line option) and refuses an
unknown key at once, with the nearest known one as a hint; the ``check_*`` functions check
values IBKR gives a meaning to (conids, field ids, the gateway URL). Every failure is a
:class:`ConfigError` whose ``str`` is one line starting with the key at fault. The values IBKR
accepts (bar sizes, periods, sources) come from the history endpoint's table in the IBKR docs
(``shared/seeds``). :mod:`recorder.config` builds the configuration out of these.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import urllib.parse
import zoneinfo
from collections.abc import Sequence
from typing import Any


class ConfigError(Exception):
    """A configuration that cannot be recorded with; ``str(e)`` is one line naming ``key``.

    ``key`` is the TOML key path (``session.tic_seconds``, ``smd[1].conids[0]``), the option
    (``--smh``), or empty when the file itself is at fault (missing, not TOML).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        return " ".join(text.split())


_BARS = frozenset(
    ["1min", "2min", "3min", "5min", "10min", "15min", "30min",
     "1h", "2h", "3h", "4h", "8h", "1d", "1w", "1m"]
)
#: Period unit -> the largest count IBKR's history endpoint accepts ("m" is months).
_PERIOD_MAX = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}
_PERIOD = re.compile(r"([1-9][0-9]{0,3})(" + "|".join(_PERIOD_MAX) + ")")
_SOURCES = ("trades", "midpoint", "bid_ask", "bid", "ask")
MAX_CONID_DIGITS = 12  # IBKR's conids have up to 9 or 10; an int64 would take 19
_SMD_CONID = re.compile(rf"[1-9][0-9]{{0,{MAX_CONID_DIGITS - 1}}}(@[A-Za-z0-9_.]+)?")
_FIELD = re.compile(r"[0-9]{1,6}")
_MISSING: Any = object()


class Table:
    """One TOML table being read: ``where`` is its key path; unknown keys are refused at once.

    A ``where`` starting with ``--`` is a command-line option, and names every value in it.
    """

    def __init__(self, raw: dict[str, Any], where: str, known: Sequence[str] | None = None):
        self.raw = raw
        self.where = where
        for name in raw:
            if known is not None and name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
                what = "unknown section" if not where else "unknown key"
                raise ConfigError(self.key(str(name)), what + hint)

    def key(self, name: str) -> str:
        if self.where.startswith("--"):
            return self.where
        return f"{self.where}.{name}" if self.where else name

    def require(self, name: str) -> Any:
        if name not in self.raw:
            raise ConfigError(self.key(name), "is required")
        return self.raw[name]

    def _get(self, name: str, default: Any) -> Any:
        return self.require(name) if default is _MISSING else self.raw.get(name, default)

    def string(self, name: str, default: str = _MISSING) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"must be a string, got {_kind(value)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, got {_kind(value)}")
        return value

    def integer(self, name: str, default: int) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"must be an integer, got {_kind(value)}")
        return value

    def number(self, name: str, default: float) -> float:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(name), f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise ConfigError(self.key(name), f"must be a finite number, got {value}")
        return float(value)

    def positive(self, name: str, default: float) -> float:
        value = self.number(name, default)
        if value <= 0:
            raise ConfigError(self.key(name), f"must be above 0 seconds, got {value:g}")
        return value

    def array(self, name: str, required: bool) -> list[Any] | None:
        if name not in self.raw and not required:
            return None
        value = self.require(name)
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"must be an array, got {_kind(value)}")
        return value

    def timezone(self, name: str, default: str) -> str:
        value = self.string(name, default)
        try:
            zoneinfo.ZoneInfo(value)
        except Exception:  # zoneinfo raises several kinds for odd names; all mean "unknown"
            raise ConfigError(
                self.key(name), f"unknown time zone {value!r} (use an IANA name)"
            ) from None
        return value

    def period(self, name: str, default: str) -> str:
        value = self.string(name, default)
        match = _PERIOD.fullmatch(value)
        if match is None or int(match[1]) > _PERIOD_MAX[match[2]]:
            allowed = ", ".join(f"1-{n}{unit}" for unit, n in _PERIOD_MAX.items())
            raise ConfigError(self.key(name), f"must be a period IBKR offers ({allowed}), "
                              f"got {value!r}")
        return value

    def bar(self, name: str, default: str) -> str:
        value = self.string(name, default)
        if value not in _BARS:
            raise ConfigError(self.key(name), "must be a bar size IBKR offers "
                              f"({', '.join(sorted(_BARS))}), got {value!r}")
        return value

    def source(self, name: str, default: str) -> str:
        value = self.string(name, default)
        if value not in _SOURCES:
            raise ConfigError(self.key(name), f"must be one of {'|'.join(_SOURCES)}, "
                              f"got {value!r}")
        return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, dict):
        return "a table"
    return "an array" if isinstance(value, list) else type(value).__name__


def _names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def table(raw: dict[str, Any], name: str, cls: Any) -> Table:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, f"must be a table ([{name}]), got {_kind(value)}")
    return Table(value, name, _names(cls))


def tables(raw: dict[str, Any], name: str, cls: Any) -> list[Table]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(name, f"must be an array of tables ([[{name}]]), got {_kind(value)}")
    tables = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{name}[{i}]", f"must be a table, got {_kind(item)}")
        tables.append(Table(item, f"{name}[{i}]", _names(cls)))
    return tables


def check_url(url: str, key: str) -> str:
    """The gateway's base URL: http(s), with a host, returned without a path. ``/v1/api``
    (where the REST calls live) is accepted and dropped; any other path is refused, since
    every call would miss."""
    try:
        if any(c.isspace() for c in url):
            raise ValueError  # urlsplit keeps it, and the host is then misread
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(key, f"must be an http(s) URL like https://localhost:5000, got {url!r}")
    if parts.path.rstrip("/") not in ("", "/v1/api") or parts.query or parts.fragment:
        raise ConfigError(key, f"must be the gateway's base URL, without a path, like "
                               f"https://localhost:5000, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def check_conid(value: Any, key: str) -> int:
    """A contract id: a positive integer of at most :data:`MAX_CONID_DIGITS` digits, or a
    string of them. A longer one is a typo, and one past an int64 broke the gateway's (the
    simulator's) encoding of its frames, a reconnect loop instead of an error."""
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, f"must be a numeric conid such as 265598, got {_kind(value)}")
    if value >= 10**MAX_CONID_DIGITS:
        raise ConfigError(key, f"must be a conid of at most {MAX_CONID_DIGITS} digits, "
                               f"got {value}")
    return value


def check_smd_conid(value: Any, key: str) -> str:
    """An smd conid: ``265598``, ``"265598"`` or ``"8314@NYSE"``, returned as a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(check_conid(value, key))
    if isinstance(value, str) and _SMD_CONID.fullmatch(value.strip()):
        return value.strip()
    raise ConfigError(key, f"must be a numeric conid or CONID@EXCHANGE, got {_kind(value)}")


def check_fields(values: Sequence[Any], key: str) -> tuple[str, ...]:
    """smd field ids (``"31"`` or ``31``): at least one, each a number, written as IBKR
    writes it (``"031"`` is ``"31"``: the gateway knows no ``"031"`` and would send nothing
    for it)."""
    if not values:
        raise ConfigError(key, "must name at least one field id (or leave it out for the default)")
    fields = []
    for i, value in enumerate(values):
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not _FIELD.fullmatch(text):
            where = key if key.startswith("--") else f"{key}[{i}]"
            raise ConfigError(where, f"must be a numeric field id like \"31\", got {_kind(value)}")
        fields.append(str(int(text)))
    return tuple(dict.fromkeys(fields))
