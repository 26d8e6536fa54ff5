"""The recorder's configuration: the TOML file (SPEC §4) merged with ``record``'s options (§3).

Rules:

- Everything is checked here, before anything connects. A bad value raises :class:`ConfigError`,
  whose ``str`` is one line that starts with the key at fault: ``session.tic_seconds``,
  ``smd[1].conids[0]`` (array indices count from 0) for the file, the option name (``--smh``)
  for the command line. Nothing else escapes :func:`load_config`.
- Options win over the file. ``--smd`` conids (each argument may hold several, comma-separated)
  form one more smd group with ``--fields`` (or the default fields); ``--smh``/``--sbd`` are
  added after the file's requests; ``--orders``/``--trades``/``--pnl``/``--insecure`` only ever
  switch something on.
- Types are strict: a bool is not a number, an int is fine where a float is wanted, a conid is
  an integer or a digit string (an smd conid may carry ``@EXCHANGE``).
- The values IBKR accepts (bar sizes, periods, sources) come from the history endpoint's table in
  the IBKR docs (``shared/seeds``).
- The only I/O is reading the file, in :func:`load_config`.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import re
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_FIELDS",
    "CliOverrides",
    "Config",
    "ConfigError",
    "GatewayConfig",
    "OrdersConfig",
    "OutputConfig",
    "PnlConfig",
    "SbdRequest",
    "SessionConfig",
    "SmdGroup",
    "SmhRequest",
    "TradesConfig",
    "load_config",
    "parse_duration",
    "parse_sbd_spec",
    "parse_smh_spec",
    "parse_until",
]

#: smd fields asked for when a group names none: last, bid, ask, sizes, volume, high/low,
#: open/close, prior close, change, availability, symbol (SPEC §4).
DEFAULT_FIELDS: tuple[str, ...] = (
    "31", "84", "86", "85", "88", "7059", "87", "7762", "70", "71",
    "7295", "7296", "7741", "82", "83", "6509", "55",
)


@dataclass(frozen=True)
class GatewayConfig:
    url: str = "https://localhost:5000"
    cafile: str = ""
    insecure: bool = False


@dataclass(frozen=True)
class OutputConfig:
    dir: Path = Path("data")
    timezone: str = "America/New_York"
    rotate_seconds: float = 300.0
    flush_seconds: float = 1.0


@dataclass(frozen=True)
class SessionConfig:
    tic_seconds: float = 30.0
    tickle_seconds: float = 60.0
    heartbeat_timeout_seconds: float = 25.0
    smd_refresh_seconds: float = 540.0
    smh_max_concurrent: int = 5
    smh_timeout_seconds: float = 30.0
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    compete: bool = False


@dataclass(frozen=True)
class SmdGroup:
    """Conids (``"265598"`` or ``"8314@NYSE"``) streamed with the same fields."""

    conids: tuple[str, ...]
    fields: tuple[str, ...] = DEFAULT_FIELDS


@dataclass(frozen=True)
class SmhRequest:
    """One historical-bars request; ``every_seconds`` 0 means once per run."""

    conid: int
    period: str = "1d"
    bar: str = "1min"
    source: str = "trades"
    outside_rth: bool = False
    every_seconds: float = 0.0


@dataclass(frozen=True)
class SbdRequest:
    """A depth ladder; ``exchange`` empty means every deep exchange."""

    account: str
    conid: int
    exchange: str = ""


@dataclass(frozen=True)
class OrdersConfig:
    enabled: bool = False


@dataclass(frozen=True)
class TradesConfig:
    enabled: bool = False
    days: int = 1
    realtime_only: bool = False


@dataclass(frozen=True)
class PnlConfig:
    enabled: bool = False


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig = GatewayConfig()
    output: OutputConfig = OutputConfig()
    session: SessionConfig = SessionConfig()
    smd: tuple[SmdGroup, ...] = ()
    smh: tuple[SmhRequest, ...] = ()
    sbd: tuple[SbdRequest, ...] = ()
    orders: OrdersConfig = OrdersConfig()
    trades: TradesConfig = TradesConfig()
    pnl: PnlConfig = PnlConfig()
    duration_seconds: float | None = None
    until: datetime.time | None = None
    quiet: bool = False


@dataclass(frozen=True)
class CliOverrides:
    """``record``'s options, as click gives them (None/empty/False: not given)."""

    gateway: str | None = None
    out: Path | None = None
    smd: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    smh: tuple[str, ...] = ()
    sbd: tuple[str, ...] = ()
    orders: bool = False
    trades: bool = False
    pnl: bool = False
    duration: str | None = None
    until: str | None = None
    cafile: str | None = None
    insecure: bool = False
    quiet: bool = False


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


_SECTIONS = ("gateway", "output", "session", "smd", "smh", "sbd", "orders", "trades", "pnl")


def load_config(path: Path | None, overrides: CliOverrides = CliOverrides()) -> Config:
    """Read ``path`` (None: defaults only), apply ``overrides``, check everything.

    Raises :class:`ConfigError` (one line, naming the key) and nothing else.
    """
    raw: dict[str, Any] = {} if path is None else _read_toml(path)
    config = _from_document(raw)
    return _apply_overrides(config, overrides)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError("", f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None


def _from_document(raw: dict[str, Any]) -> Config:
    Table(raw, "", _SECTIONS)
    gateway = _gateway(_table(raw, "gateway", GatewayConfig))
    output = _output(_table(raw, "output", OutputConfig))
    session = _session(_table(raw, "session", SessionConfig))
    smd = tuple(_smd(t) for t in _tables(raw, "smd", SmdGroup))
    smh = tuple(_smh(t) for t in _tables(raw, "smh", SmhRequest))
    sbd = tuple(_sbd(t) for t in _tables(raw, "sbd", SbdRequest))
    orders = OrdersConfig(_table(raw, "orders", OrdersConfig).boolean("enabled", False))
    tt = _table(raw, "trades", TradesConfig)
    days = tt.integer("days", 1)
    if not 1 <= days <= 7:
        raise ConfigError(tt.key("days"), f"must be 1..7 (IBKR sends at most 7 days), got {days}")
    trades = TradesConfig(tt.boolean("enabled", False), days, tt.boolean("realtime_only", False))
    pnl = PnlConfig(_table(raw, "pnl", PnlConfig).boolean("enabled", False))
    return Config(gateway, output, session, smd, smh, sbd, orders, trades, pnl)


def _gateway(t: Table) -> GatewayConfig:
    url = t.string("url", GatewayConfig.url)
    check_url(url, t.key("url"))
    return GatewayConfig(url, t.string("cafile", ""), t.boolean("insecure", False))


def _output(t: Table) -> OutputConfig:
    out_dir = t.string("dir", "data")
    if not out_dir.strip():
        raise ConfigError(t.key("dir"), "must not be empty")
    timezone = t.timezone("timezone", OutputConfig.timezone)
    rotate = t.positive("rotate_seconds", OutputConfig.rotate_seconds)
    flush = t.positive("flush_seconds", OutputConfig.flush_seconds)
    if flush > rotate:
        raise ConfigError(
            t.key("flush_seconds"),
            f"must not exceed output.rotate_seconds ({rotate:g}), got {flush:g}",
        )
    return OutputConfig(Path(out_dir), timezone, rotate, flush)


def _session(t: Table) -> SessionConfig:
    d = SessionConfig()
    tic = t.positive("tic_seconds", d.tic_seconds)
    if tic >= 60:
        raise ConfigError(
            t.key("tic_seconds"), f"must be below 60 (IBKR needs a tic every minute), got {tic:g}"
        )
    tickle = t.positive("tickle_seconds", d.tickle_seconds)
    heartbeat = t.positive("heartbeat_timeout_seconds", d.heartbeat_timeout_seconds)
    if heartbeat <= 10:
        raise ConfigError(
            t.key("heartbeat_timeout_seconds"),
            f"must be above 10 (the gateway's heartbeat period), got {heartbeat:g}",
        )
    refresh = t.positive("smd_refresh_seconds", d.smd_refresh_seconds)
    if refresh >= 900:
        raise ConfigError(
            t.key("smd_refresh_seconds"),
            f"must be below 900 (IBKR ends smd streams after 15 minutes), got {refresh:g}",
        )
    slots = t.integer("smh_max_concurrent", d.smh_max_concurrent)
    if not 1 <= slots <= 5:
        raise ConfigError(
            t.key("smh_max_concurrent"), f"must be 1..5 (IBKR allows at most 5), got {slots}"
        )
    smh_timeout = t.positive("smh_timeout_seconds", d.smh_timeout_seconds)
    rmin = t.positive("reconnect_min_seconds", d.reconnect_min_seconds)
    rmax = t.positive("reconnect_max_seconds", d.reconnect_max_seconds)
    if rmin > rmax:
        raise ConfigError(
            t.key("reconnect_min_seconds"),
            f"must not exceed session.reconnect_max_seconds ({rmax:g}), got {rmin:g}",
        )
    compete = t.boolean("compete", False)
    return SessionConfig(tic, tickle, heartbeat, refresh, slots, smh_timeout, rmin, rmax, compete)


def _smd(t: Table) -> SmdGroup:
    conids = t.array("conids", required=True)
    if not conids:
        raise ConfigError(t.key("conids"), "must name at least one conid")
    checked = tuple(check_smd_conid(c, f"{t.key('conids')}[{i}]") for i, c in enumerate(conids))
    raw_fields = t.array("fields", required=False)
    fields = DEFAULT_FIELDS if raw_fields is None else check_fields(raw_fields, t.key("fields"))
    return SmdGroup(checked, fields)


def _smh(t: Table) -> SmhRequest:
    conid = check_conid(t.require("conid"), t.key("conid"))
    period = t.period("period", "1d")
    bar = t.bar("bar", "1min")
    source = t.source("source", "trades")
    every = t.number("every_seconds", 0.0)
    if every < 0:
        raise ConfigError(t.key("every_seconds"), f"must be 0 (once) or positive, got {every:g}")
    return SmhRequest(conid, period, bar, source, t.boolean("outside_rth", False), every)


def _sbd(t: Table) -> SbdRequest:
    account = t.string("account")
    conid = check_conid(t.require("conid"), t.key("conid"))
    exchange = t.string("exchange", "")
    return _checked_sbd(account, conid, exchange, t.key("account"), t.key("exchange"))


def _checked_sbd(account: str, conid: int, exchange: str, akey: str, ekey: str) -> SbdRequest:
    if not account or not account.isalnum():
        raise ConfigError(akey, f"must be an account id such as DU1234567, got {account!r}")
    if exchange and not exchange.replace("_", "").isalnum():
        raise ConfigError(ekey, f"must be an exchange name such as NYSE, got {exchange!r}")
    return SbdRequest(account, conid, exchange)


# --- the command line ---------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """``"6.5h"``, ``"90m"``, ``"30s"`` or plain seconds ``"45"`` -> seconds (> 0)."""
    match = _DURATION.fullmatch(text.strip().lower())
    value = float(match[1]) * _DURATION_UNITS[match[2]] if match else 0.0
    if not (0 < value < math.inf):
        raise ConfigError("--duration", f"must look like 6.5h, 90m, 30s or 45, got {text!r}")
    return value


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([hms]?)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_until(text: str) -> datetime.time:
    """``"HH:MM"`` (24-hour, in ``output.timezone``) -> a time of day."""
    hours, sep, minutes = text.strip().partition(":")
    if (
        sep and len(minutes) == 2 and 1 <= len(hours) <= 2
        and hours.isdigit() and minutes.isdigit()
        and int(hours) < 24 and int(minutes) < 60
    ):
        return datetime.time(int(hours), int(minutes))
    raise ConfigError("--until", f"must be HH:MM (24-hour), got {text!r}")


def parse_smh_spec(text: str) -> SmhRequest:
    """``"CONID:PERIOD:BAR[:SOURCE]"`` -> an :class:`SmhRequest`, checked like the file's."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise ConfigError("--smh", f"must be CONID:PERIOD:BAR[:SOURCE], got {text!r}")
    t = Table(dict(zip(("period", "bar", "source"), parts[1:], strict=False)), "--smh")
    return SmhRequest(
        check_conid(parts[0], "--smh"),
        t.period("period", "1d"),
        t.bar("bar", "1min"),
        t.source("source", "trades"),
    )


def parse_sbd_spec(text: str) -> SbdRequest:
    """``"ACCT:CONID[:EXCH]"`` -> an :class:`SbdRequest`."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError("--sbd", f"must be ACCT:CONID[:EXCH], got {text!r}")
    exchange = parts[2] if len(parts) == 3 else ""
    return _checked_sbd(parts[0], check_conid(parts[1], "--sbd"), exchange, "--sbd", "--sbd")


def _apply_overrides(config: Config, o: CliOverrides) -> Config:
    gateway = config.gateway
    if o.gateway is not None:
        check_url(o.gateway, "--gateway")
        gateway = replace(gateway, url=o.gateway)
    if o.cafile is not None:
        gateway = replace(gateway, cafile=o.cafile)
    if o.insecure:
        gateway = replace(gateway, insecure=True)
    output = config.output
    if o.out is not None:
        output = replace(output, dir=Path(o.out))
    smd = config.smd
    conids = [c.strip() for arg in o.smd for c in arg.split(",") if c.strip()]
    if o.fields and not conids:
        raise ConfigError("--fields", "applies to the --smd conids; give --smd too")
    if conids:
        fields = DEFAULT_FIELDS
        if o.fields:
            items = [f.strip() for arg in o.fields for f in arg.split(",")]
            fields = check_fields(items, "--fields")
        smd += (SmdGroup(tuple(check_smd_conid(c, "--smd") for c in conids), fields),)
    return replace(
        config,
        gateway=gateway,
        output=output,
        smd=smd,
        smh=config.smh + tuple(parse_smh_spec(s) for s in o.smh),
        sbd=config.sbd + tuple(parse_sbd_spec(s) for s in o.sbd),
        orders=replace(config.orders, enabled=True) if o.orders else config.orders,
        trades=replace(config.trades, enabled=True) if o.trades else config.trades,
        pnl=replace(config.pnl, enabled=True) if o.pnl else config.pnl,
        duration_seconds=parse_duration(o.duration) if o.duration is not None else None,
        until=parse_until(o.until) if o.until is not None else None,
        quiet=o.quiet,
    )


# --- reading and checking values ----------------------------------------------------------

_BARS = frozenset(
    ["1min", "2min", "3min", "5min", "10min", "15min", "30min",
     "1h", "2h", "3h", "4h", "8h", "1d", "1w", "1m"]
)
#: Period unit -> the largest count IBKR's history endpoint accepts ("m" is months).
_PERIOD_MAX = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}
_PERIOD = re.compile(r"([1-9][0-9]{0,3})(min|h|d|w|m|y)")
_SOURCES = ("trades", "midpoint", "bid_ask", "bid", "ask")
_SMD_CONID = re.compile(r"[1-9][0-9]{0,11}(@[A-Za-z0-9_.]+)?")
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


def _table(raw: dict[str, Any], name: str, cls: Any) -> Table:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(name, f"must be a table ([{name}]), got {_kind(value)}")
    return Table(value, name, _names(cls))


def _tables(raw: dict[str, Any], name: str, cls: Any) -> list[Table]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(name, f"must be an array of tables ([[{name}]]), got {_kind(value)}")
    tables = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{name}[{i}]", f"must be a table, got {_kind(item)}")
        tables.append(Table(item, f"{name}[{i}]", _names(cls)))
    return tables


def check_url(url: str, key: str) -> None:
    """The gateway's base URL: http(s), with a host."""
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(key, f"must be an http(s) URL like https://localhost:5000, got {url!r}")


def check_conid(value: Any, key: str) -> int:
    """A contract id: a positive integer, or a string of digits."""
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, f"must be a numeric conid such as 265598, got {_kind(value)}")
    return value


def check_smd_conid(value: Any, key: str) -> str:
    """An smd conid: ``265598``, ``"265598"`` or ``"8314@NYSE"``, returned as a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(check_conid(value, key))
    if isinstance(value, str) and _SMD_CONID.fullmatch(value.strip()):
        return value.strip()
    raise ConfigError(key, f"must be a numeric conid or CONID@EXCHANGE, got {_kind(value)}")


def check_fields(values: Sequence[Any], key: str) -> tuple[str, ...]:
    """smd field ids (``"31"`` or ``31``): at least one, each a number."""
    if not values:
        raise ConfigError(key, "must name at least one field id (or leave it out for the default)")
    fields = []
    for i, value in enumerate(values):
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not _FIELD.fullmatch(text):
            where = key if key.startswith("--") else f"{key}[{i}]"
            raise ConfigError(where, f"must be a numeric field id like \"31\", got {_kind(value)}")
        fields.append(text)
    return tuple(dict.fromkeys(fields))
