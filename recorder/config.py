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
- Reading a table's values and checking single values (conids, field ids, bar sizes) is
  :mod:`recorder.config_values`; this module builds the sections out of them.
- The only I/O is reading the file, in :func:`load_config`.
"""

from __future__ import annotations

import datetime
import os
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from recorder.config_values import (
    ConfigError,
    Table,
    check_conid,
    check_fields,
    check_smd_conid,
    check_url,
    table,
    tables,
)

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


# The shortest timers storage takes: below them it spends a core on fsyncs (1e-9 s took 96%)
# or publishes a folder of tiny files (0.05 s: 718 files in 10 s).
ROTATE_LEAST = 0.5
FLUSH_LEAST = 0.05


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
    out: str | None = None
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
        return tomllib.loads(data.decode("utf-8-sig"))  # a BOM, as Windows editors save
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None


def _from_document(raw: dict[str, Any]) -> Config:
    Table(raw, "", _SECTIONS)
    gateway = _gateway(table(raw, "gateway", GatewayConfig))
    output = _output(table(raw, "output", OutputConfig))
    session = _session(table(raw, "session", SessionConfig))
    smd = tuple(_smd(t) for t in tables(raw, "smd", SmdGroup))
    smh = tuple(_smh(t) for t in tables(raw, "smh", SmhRequest))
    sbd = tuple(_sbd(t) for t in tables(raw, "sbd", SbdRequest))
    orders = OrdersConfig(table(raw, "orders", OrdersConfig).boolean("enabled", False))
    tt = table(raw, "trades", TradesConfig)
    days = tt.integer("days", 1)
    if not 1 <= days <= 7:
        raise ConfigError(tt.key("days"), f"must be 1..7 (IBKR sends at most 7 days), got {days}")
    trades = TradesConfig(tt.boolean("enabled", False), days, tt.boolean("realtime_only", False))
    pnl = PnlConfig(table(raw, "pnl", PnlConfig).boolean("enabled", False))
    return Config(gateway, output, session, smd, smh, sbd, orders, trades, pnl)


def _gateway(t: Table) -> GatewayConfig:
    url = check_url(t.string("url", GatewayConfig.url), t.key("url"))
    cafile = _path(t.string("cafile", ""), t.key("cafile"))
    return GatewayConfig(url, _home(cafile) if cafile else "", t.boolean("insecure", False))


def _home(path: str) -> str:
    """``~`` and ``~user`` at the start of a path, as a shell would have expanded them."""
    return os.path.expanduser(path)


def _path(text: str, key: str) -> str:
    """A path as given: no file name holds a NUL (the system would refuse it later, as a
    traceback)."""
    if "\0" in text:
        raise ConfigError(key, f"must not contain a NUL character, got {text!r}")
    return text


def _folder(text: str, key: str) -> Path:
    """The output folder: not empty (which would mean the current folder), ``~`` expanded."""
    if not _path(text, key).strip():
        raise ConfigError(key, "must not be empty")
    return Path(_home(text))


def _output(t: Table) -> OutputConfig:
    out_dir = _folder(t.string("dir", "data"), t.key("dir"))
    timezone = t.timezone("timezone", OutputConfig.timezone)
    rotate = t.positive("rotate_seconds", OutputConfig.rotate_seconds)
    _at_least(t, "rotate_seconds", rotate, ROTATE_LEAST,
              "each publishes a file per table: 46,800 per table in a 6.5 h session already")
    flush = t.positive("flush_seconds", OutputConfig.flush_seconds)
    _at_least(t, "flush_seconds", flush, FLUSH_LEAST,
              "each is a write and an fsync: 20 a second already")
    if flush > rotate:
        raise ConfigError(
            t.key("flush_seconds"),
            f"must not exceed output.rotate_seconds ({rotate:g}), got {flush:g}",
        )
    return OutputConfig(out_dir, timezone, rotate, flush)


def _session(t: Table) -> SessionConfig:
    d = SessionConfig()
    tic = t.positive("tic_seconds", d.tic_seconds)
    if tic >= 60:
        raise ConfigError(
            t.key("tic_seconds"), f"must be below 60 (IBKR needs a tic every minute), got {tic:g}"
        )
    _at_least(t, "tic_seconds", tic, 1, "a tic a second is already 60 times what IBKR needs")
    tickle = t.positive("tickle_seconds", d.tickle_seconds)
    _at_least(t, "tickle_seconds", tickle, 1, "IBKR needs a /tickle once a minute")
    if tickle > 60:
        raise ConfigError(
            t.key("tickle_seconds"),
            f"must be at most 60 (IBKR: /tickle about once a minute, or the session times "
            f"out), got {tickle:g}",
        )
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
    _at_least(t, "smd_refresh_seconds", refresh, 60,
              "each refresh subscribes every smd anew (umd, then smd)")
    slots = t.integer("smh_max_concurrent", d.smh_max_concurrent)
    if not 1 <= slots <= 5:
        raise ConfigError(
            t.key("smh_max_concurrent"), f"must be 1..5 (IBKR allows at most 5), got {slots}"
        )
    smh_timeout = t.positive("smh_timeout_seconds", d.smh_timeout_seconds)
    _at_least(t, "smh_timeout_seconds", smh_timeout, 1, "a historical answer takes a while")
    rmin = t.positive("reconnect_min_seconds", d.reconnect_min_seconds)
    rmax = t.positive("reconnect_max_seconds", d.reconnect_max_seconds)
    if rmin > rmax:
        raise ConfigError(
            t.key("reconnect_min_seconds"),
            f"must not exceed session.reconnect_max_seconds ({rmax:g}), got {rmin:g}",
        )
    compete = t.boolean("compete", False)
    return SessionConfig(tic, tickle, heartbeat, refresh, slots, smh_timeout, rmin, rmax, compete)


def _at_least(t: Table, name: str, value: float, least: float, why: str) -> None:
    """Refuse a timer so short it would flood the gateway."""
    if value < least:
        raise ConfigError(t.key(name), f"must be at least {least:g} ({why}), got {value:g}")


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
    if 0 < every < 1:
        raise ConfigError(t.key("every_seconds"), f"must be 0 (once) or at least 1 (each is a "
                          f"historical request to IBKR), got {every:g}")
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
    if not match:
        raise ConfigError("--duration", f"must look like 6.5h, 90m, 30s or 45, got {text!r}")
    value = float(match[1]) * _DURATION_UNITS[match[2]]
    if value <= 0:
        raise ConfigError("--duration", f"must be more than 0, got {text!r}")
    if value > MAX_DURATION_SECONDS:  # inf too
        raise ConfigError("--duration", f"must be at most 8784h (a year), got {text!r}")
    return value


MAX_DURATION_SECONDS: Final = 366 * 24 * 3600.0


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
        gateway = replace(gateway, url=check_url(o.gateway, "--gateway"))
    if o.cafile is not None:
        gateway = replace(gateway, cafile=_home(_path(o.cafile, "--cafile")))
    if o.insecure:
        gateway = replace(gateway, insecure=True)
    output = config.output
    if o.out is not None:
        output = replace(output, dir=_folder(o.out, "--out"))
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
