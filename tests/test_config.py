"""Config: the TOML file and the options, merged and checked before anything connects."""

from __future__ import annotations

import datetime
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.config import (
    DEFAULT_FIELDS,
    CliOverrides,
    Config,
    ConfigError,
    SbdRequest,
    SmdGroup,
    SmhRequest,
    load_config,
    parse_duration,
    parse_sbd_spec,
    parse_smh_spec,
    parse_until,
)

FULL = """
[gateway]
url = "https://gw.example:5000"
cafile = "gw.pem"

[output]
dir = "out"
timezone = "Europe/Berlin"
rotate_seconds = 120
flush_seconds = 0.5

[session]
tic_seconds = 20
smh_max_concurrent = 3
reconnect_min_seconds = 2
compete = true

[[smd]]
conids = [265598, "8314@NYSE"]

[[smd]]
conids = ["756733"]
fields = ["31", 84]

[[smh]]
conid = 265598
period = "2d"
bar = "5min"
source = "midpoint"
outside_rth = true
every_seconds = 300

[[sbd]]
account = "DU1234567"
conid = 265598

[trades]
enabled = true
days = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "day.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    if info.value.key:
        assert message.startswith(f"{info.value.key}: ")
    return message


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.gateway.url == "https://localhost:5000"
    assert config.session.smh_max_concurrent == 5
    assert config.output.dir == Path("data")


def test_full_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.gateway.url == "https://gw.example:5000"
    assert config.gateway.cafile == "gw.pem"
    assert config.output.dir == Path("out")
    assert config.output.timezone == "Europe/Berlin"
    assert config.output.rotate_seconds == 120.0
    assert isinstance(config.output.rotate_seconds, float)
    assert config.session.tic_seconds == 20.0
    assert config.session.smh_max_concurrent == 3
    assert config.session.compete is True
    assert config.session.tickle_seconds == 60.0
    assert config.smd == (
        SmdGroup(("265598", "8314@NYSE"), DEFAULT_FIELDS),
        SmdGroup(("756733",), ("31", "84")),
    )
    assert config.smh == (SmhRequest(265598, "2d", "5min", "midpoint", True, 300.0),)
    assert config.sbd == (SbdRequest("DU1234567", 265598, ""),)
    assert config.trades.enabled and config.trades.days == 3
    assert not config.orders.enabled and not config.pnl.enabled


def test_options_win_and_append(tmp_path: Path) -> None:
    overrides = CliOverrides(
        gateway="http://127.0.0.1:5001", out="elsewhere", smd=("1,2", "3@ARCA"),
        fields=("31,84", "86"), smh=("4:1w:1d:bid",), sbd=("U7:5:ISLAND",), orders=True,
        pnl=True, duration="90m", until="15:59", cafile="x.pem", insecure=True, quiet=True,
    )
    config = load_config(write(tmp_path, FULL), overrides)
    assert config.gateway.url == "http://127.0.0.1:5001"
    assert config.gateway.cafile == "x.pem" and config.gateway.insecure
    assert config.output.dir == Path("elsewhere")
    assert config.smd[-1] == SmdGroup(("1", "2", "3@ARCA"), ("31", "84", "86"))
    assert len(config.smd) == 3
    assert config.smh[-1] == SmhRequest(4, "1w", "1d", "bid")
    assert config.sbd == (SbdRequest("DU1234567", 265598), SbdRequest("U7", 5, "ISLAND"))
    assert config.orders.enabled and config.pnl.enabled and config.trades.enabled
    assert config.duration_seconds == 5400.0
    assert config.until == datetime.time(15, 59)
    assert config.quiet


def test_field_ids_are_sent_as_ibkr_writes_them(tmp_path: Path) -> None:
    """``"000084"`` used to be sent to the gateway as written: it knows only ``"84"``, so the
    column stayed empty all day, with no word of why."""
    config = load_config(write(tmp_path, '[[smd]]\nconids = [1]\nfields = ["000084", 84, "31"]\n'),
                         CliOverrides(smd=("2",), fields=("031,86",)))
    assert [group.fields for group in config.smd] == [("84", "31"), ("31", "86")]


def test_smd_option_without_fields_uses_defaults() -> None:
    config = load_config(None, CliOverrides(smd=("265598",)))
    assert config.smd == (SmdGroup(("265598",), DEFAULT_FIELDS),)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6.5h", 23400.0), ("90m", 5400.0), ("30s", 30.0), ("45", 45.0), (" 2H ", 7200.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "0", "-5m", "1d", "nan", "infs", "5 m", "1e400",
                                  "8785h", "999999999999h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="^--duration: "):
        parse_duration(text)


@pytest.mark.parametrize(("text", "why"), [
    ("0s", "must be more than 0"), ("0", "must be more than 0"),
    ("1d", "must look like 6.5h, 90m, 30s or 45"),
    ("9" * 400, "must be at most 8784h (a year)")])
def test_a_refused_duration_says_why(text: str, why: str) -> None:
    """``0s`` looks just like ``30s``: being told it must look like that was no help."""
    with pytest.raises(ConfigError) as refused:
        parse_duration(text)
    assert str(refused.value) == f"--duration: {why}, got {text!r}"


def test_a_year_is_the_longest_duration() -> None:
    """Longer used to pass, then fail as a traceback when the stop time was shown."""
    assert parse_duration("8784h") == 366 * 24 * 3600


def test_parse_until() -> None:
    assert parse_until("09:30") == datetime.time(9, 30)
    assert parse_until("0:05") == datetime.time(0, 5)
    for bad in ("24:00", "12:60", "1230", "12:3", "ab:cd", "", "-1:30"):
        with pytest.raises(ConfigError, match="^--until: "):
            parse_until(bad)


def test_parse_specs() -> None:
    assert parse_smh_spec("265598:1d:1min") == SmhRequest(265598, "1d", "1min", "trades")
    assert parse_smh_spec("1:30min:1min:bid_ask").source == "bid_ask"
    assert parse_sbd_spec("DU1:265598") == SbdRequest("DU1", 265598, "")
    assert parse_sbd_spec("DU1:265598:NYSE") == SbdRequest("DU1", 265598, "NYSE")
    for bad in ("265598", "265598:1d", "x:1d:1min", "1:1d:7min", "1:31min:1min", "1:1d:1min:last",
                "1:1d:1min:trades:extra"):
        with pytest.raises(ConfigError, match="^--smh: "):
            parse_smh_spec(bad)
    for bad in ("DU1", "DU1:abc", ":1", "D U:1", "DU1:1:N+Y", "a:1:b:c"):
        with pytest.raises(ConfigError, match="^--sbd: "):
            parse_sbd_spec(bad)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("[session]\nsmh_max_concurrent = 6\n", "session.smh_max_concurrent", "at most 5"),
        ("[session]\nsmh_max_concurrent = 0\n", "session.smh_max_concurrent", "1..5"),
        ("[session]\ntic_seconds = 60\n", "session.tic_seconds", "below 60"),
        ("[session]\ntic_seconds = 0\n", "session.tic_seconds", "above 0"),
        ("[session]\ntic_seconds = true\n", "session.tic_seconds", "must be a number"),
        ("[session]\ntic_seconds = \"30\"\n", "session.tic_seconds", "must be a number"),
        ("[session]\ntic_seconds = nan\n", "session.tic_seconds", "finite"),
        ("[session]\nheartbeat_timeout_seconds = 10\n", "session.heartbeat_timeout_seconds",
         "above 10"),
        ("[session]\nsmd_refresh_seconds = 900\n", "session.smd_refresh_seconds", "15 minutes"),
        ("[session]\ntickle_seconds = -1\n", "session.tickle_seconds", "above 0"),
        ("[session]\ntickle_seconds = 61\n", "session.tickle_seconds", "at most 60"),
        ("[session]\nreconnect_min_seconds = 90\n", "session.reconnect_min_seconds", "exceed"),
        ("[session]\nsmh_max_concurrent = 2.0\n", "session.smh_max_concurrent", "integer"),
        ("[session]\ncompete = 1\n", "session.compete", "true or false"),
        ("[session]\ntic_secnds = 5\n", "session.tic_secnds", "did you mean 'tic_seconds'"),
        ("[sesion]\n", "sesion", "did you mean 'session'"),
        ("session = 3\n", "session", "must be a table"),
        ("[output]\ntimezone = \"Mars/Base\"\n", "output.timezone", "unknown time zone"),
        ("[output]\ntimezone = \"../etc\"\n", "output.timezone", "unknown time zone"),
        ("[output]\nflush_seconds = 400\n", "output.flush_seconds", "rotate_seconds"),
        ("[output]\nflush_seconds = 1e-9\n", "output.flush_seconds", "at least 0.05"),
        ("[output]\nrotate_seconds = 0.05\n", "output.rotate_seconds", "at least 0.5"),
        ("[output]\ndir = \"\"\n", "output.dir", "empty"),
        ("[gateway]\nurl = \"ws://localhost:5000\"\n", "gateway.url", "http(s)"),
        ("[gateway]\nurl = \"https://\"\n", "gateway.url", "http(s)"),
        ("[gateway]\nurl = \"https://h:port\"\n", "gateway.url", "http(s)"),
        ("[gateway]\nurl = \"https://h:5000/v1/api/tickle\"\n", "gateway.url", "without a path"),
        ("[gateway]\nurl = \"https://h:5000/?x=1\"\n", "gateway.url", "without a path"),
        ("[[smd]]\nconids = [1, \"abc\"]\n", "smd[0].conids[1]", "numeric conid"),
        ("[[smd]]\nconids = [1]\n[[smd]]\nconids = [\"x@\"]\n", "smd[1].conids[0]", "conid"),
        ("[[smd]]\nconids = []\n", "smd[0].conids", "at least one"),
        ("[[smd]]\nfields = [\"31\"]\n", "smd[0].conids", "required"),
        ("[[smd]]\nconids = [1]\nfields = []\n", "smd[0].fields", "at least one"),
        ("[[smd]]\nconids = [1]\nfields = [\"31\", \"bid\"]\n", "smd[0].fields[1]", "field id"),
        ("[[smd]]\nconids = [true]\n", "smd[0].conids[0]", "conid"),
        ("[smd]\nconids = [1]\n", "smd", "array of tables"),
        ("smd = [1]\n", "smd[0]", "must be a table"),
        ("[[smh]]\nconid = 1\nbar = \"7min\"\n", "smh[0].bar", "bar size"),
        ("[[smh]]\nconid = 1\nperiod = \"31min\"\n", "smh[0].period", "period"),
        ("[[smh]]\nconid = 1\nperiod = \"16y\"\n", "smh[0].period", "period"),
        ("[[smh]]\nconid = 1\nperiod = \"0d\"\n", "smh[0].period", "period"),
        ("[[smh]]\nconid = 1\nsource = \"last\"\n", "smh[0].source", "trades|midpoint"),
        ("[[smh]]\nconid = 1\nevery_seconds = -1\n", "smh[0].every_seconds", "positive"),
        ("[[smh]]\nconid = -4\n", "smh[0].conid", "numeric conid"),
        ("[[smh]]\nperiod = \"1d\"\n", "smh[0].conid", "required"),
        ("[[smh]]\nconid = 1\nouside_rth = true\n", "smh[0].ouside_rth", "outside_rth"),
        ("[[sbd]]\nconid = 1\n", "sbd[0].account", "required"),
        ("[[sbd]]\naccount = \"\"\nconid = 1\n", "sbd[0].account", "account id"),
        ("[[sbd]]\naccount = \"DU1\"\nconid = 1\nexchange = \"a+b\"\n", "sbd[0].exchange",
         "exchange"),
        ("[trades]\ndays = 0\n", "trades.days", "1..7"),
        ("[orders]\nenabled = \"yes\"\n", "orders.enabled", "true or false"),
        ("[pnl]\nenable = true\n", "pnl.enable", "did you mean 'enabled'"),
        # values of the wrong kind, and paths and URLs no system call would take
        ("[output]\ndir = 1\n", "output.dir", "must be a string, got number 1"),
        ("[trades]\ndays = true\n", "trades.days", "must be an integer, got boolean true"),
        ("[session]\nsmh_max_concurrent = true\n", "session.smh_max_concurrent",
         "must be an integer"),
        ("[[smd]]\nconids = 265598\n", "smd[0].conids", "must be an array, got number"),
        ("[[smh]]\nconid = 0\n", "smh[0].conid", "numeric conid"),
        ("[[smh]]\nconid = true\n", "smh[0].conid", "numeric conid"),
        ("[[smh]]\nconid = \"２６５５９８\"\n", "smh[0].conid", "numeric conid"),
        ("[[smd]]\nconids = [\"２６５５９８\"]\n", "smd[0].conids[0]", "numeric conid"),
        ("[[sbd]]\naccount = \"DU1\"\n", "sbd[0].conid", "required"),
        ("[gateway]\nurl = \"https://h:5000/#x\"\n", "gateway.url", "without a path"),
        ("[gateway]\nurl = \"https:// localhost:5000\"\n", "gateway.url", "http(s) URL"),
        ("[gateway]\nurl = \"https://local host:5000\"\n", "gateway.url", "http(s) URL"),
        ("[output]\ndir = \"a\\u0000b\"\n", "output.dir", "NUL character"),
        ("[gateway]\ncafile = \"a\\u0000b\"\n", "gateway.cafile", "NUL character"),
        # timers so short they would flood the gateway
        ("[session]\ntic_seconds = 0.0001\n", "session.tic_seconds", "at least 1"),
        ("[session]\ntickle_seconds = 0.5\n", "session.tickle_seconds", "at least 1"),
        ("[session]\nsmd_refresh_seconds = 0.0001\n", "session.smd_refresh_seconds",
         "at least 60"),
        ("[session]\nsmh_timeout_seconds = 0.01\n", "session.smh_timeout_seconds", "at least 1"),
        ("[[smh]]\nconid = 1\nevery_seconds = 0.001\n", "smh[0].every_seconds", "at least 1"),
        ("[[smd]]\nconids = [99999999999999999999]\n", "smd[0].conids[0]", "at most 12 digits"),
        ("[[smd]]\nconids = [1000000000000]\n", "smd[0].conids[0]", "at most 12 digits"),
        ('[[smh]]\nconid = "1000000000000"\n', "smh[0].conid", "at most 12 digits"),
        ('[[sbd]]\naccount = "DU1"\nconid = 99999999999999999999\n', "sbd[0].conid",
         "at most 12 digits"),
    ],
)
def test_refusals_name_the_key(tmp_path: Path, text: str, key: str, words: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{key}: "), message
    assert words in message, message


# The history endpoint's table in the IBKR docs (shared/seeds/001): every bar size, and each
# period unit's largest count.
IBKR_BARS = ["1min", "2min", "3min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "4h",
             "8h", "1d", "1w", "1m"]
IBKR_PERIOD_MAX = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}


def test_every_bar_size_and_period_ibkr_offers_is_accepted_and_nothing_beyond(
        tmp_path: Path) -> None:
    def smh(line: str) -> str:
        return f"[[smh]]\nconid = 1\n{line}\n"

    for bar in IBKR_BARS:
        path = tmp_path / "day.toml"
        path.write_text(smh(f'bar = "{bar}"'))
        assert load_config(path).smh[0].bar == bar
    for bar in ("1sec", "4min", "6h", "2d", "2w", "2m", "1y", "1H", "1 min", "01min"):
        assert error_of(tmp_path, smh(f'bar = "{bar}"')).startswith("smh[0].bar: "), bar
    for unit, most in IBKR_PERIOD_MAX.items():
        for count in (1, most):
            path = tmp_path / "day.toml"
            path.write_text(smh(f'period = "{count}{unit}"'))
            assert load_config(path).smh[0].period == f"{count}{unit}"
        for bad in (f"{most + 1}{unit}", f"0{unit}", f"01{unit}", f"1{unit.upper()}"):
            message = error_of(tmp_path, smh(f'period = "{bad}"'))
            assert message.startswith("smh[0].period: must be a period IBKR offers"), message
            assert f"1-{most}{unit}" in message
    assert parse_smh_spec("1:8h:1h").period == "8h"
    with pytest.raises(ConfigError, match="^--smh: "):
        parse_smh_spec("1:9h:1h")


@pytest.mark.parametrize("url", ["https://h:5000", "https://h:5000/", "https://h:5000/v1/api",
                                 "https://h:5000/v1/api/"])
def test_the_gateway_url_may_end_in_v1_api(tmp_path: Path, url: str) -> None:
    """SPEC §4's comment says REST is under /v1/api, so a user may paste that: it is dropped,
    not doubled into /v1/api/v1/api/tickle."""
    path = tmp_path / "day.toml"
    path.write_text(f'[gateway]\nurl = "{url}"\n')
    assert load_config(path).gateway.url == "https://h:5000"
    assert load_config(None, CliOverrides(gateway=url)).gateway.url == "https://h:5000"


def test_paths_starting_with_a_tilde_are_in_the_home_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "day.toml"
    path.write_text('[gateway]\ncafile = "~/gw.pem"\n[output]\ndir = "~/recdata"\n')
    config = load_config(path)
    assert config.output.dir == tmp_path / "home" / "recdata"
    assert config.gateway.cafile == str(tmp_path / "home" / "gw.pem")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config file not found: {path}"


def test_invalid_toml_names_its_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[session]\ntic_seconds = \n")
    assert "invalid TOML" in message and "line 2" in message


def test_a_directory_or_binary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    path = tmp_path / "bin.toml"
    path.write_bytes(b"a = \"\x99\"\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_a_file_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    """Windows editors start UTF-8 files with a BOM, which TOML refused as 'Invalid
    statement (at line 1, column 1)'."""
    path = tmp_path / "day.toml"
    path.write_bytes(b"\xef\xbb\xbf[[smd]]\nconids = [265598]\n")
    assert load_config(path).smd[0].conids == ("265598",)


def test_the_lowest_timers_allowed_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "day.toml"
    path.write_text("[session]\ntic_seconds = 1\ntickle_seconds = 1\nsmd_refresh_seconds = 60\n"
                    "smh_timeout_seconds = 1\n"
                    "[[smh]]\nconid = 1\nevery_seconds = 1\n")
    config = load_config(path)
    assert (config.session.tic_seconds, config.session.smd_refresh_seconds,
            config.smh[0].every_seconds) == (1, 60, 1)


def test_option_errors_name_the_option(tmp_path: Path) -> None:
    cases = {
        "--gateway": CliOverrides(gateway="localhost:5000"),
        "--smd": CliOverrides(smd=("1,abc",)),
        "--fields": CliOverrides(smd=("1",), fields=("31,x",)),
        "--smh": CliOverrides(smh=("1:1d:1sec",)),
        "--sbd": CliOverrides(sbd=("DU1",)),
        "--duration": CliOverrides(duration="soon"),
        "--out": CliOverrides(out=""),
        "--cafile": CliOverrides(cafile="a\0b"),
        "--until": CliOverrides(until="4pm"),
    }
    for option, overrides in cases.items():
        with pytest.raises(ConfigError) as info:
            load_config(None, overrides)
        assert str(info.value).startswith(f"{option}: "), (option, str(info.value))


# --- any TOML document: a Config or a ConfigError, never anything else --------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_string(text: str) -> str:
    escaped = (
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in text
    )
    return '"' + "".join(escaped) + '"'


def toml_document(doc: dict[str, Any]) -> str:
    return "\n".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items()) + "\n"


KNOWN_KEYS = [
    "url", "cafile", "insecure", "dir", "timezone", "rotate_seconds", "flush_seconds",
    "tic_seconds", "tickle_seconds", "heartbeat_timeout_seconds", "smd_refresh_seconds",
    "smh_max_concurrent", "smh_timeout_seconds", "reconnect_min_seconds",
    "reconnect_max_seconds", "compete", "conids", "fields", "conid", "period", "bar", "source",
    "outside_rth", "every_seconds", "account", "exchange", "enabled", "days", "realtime_only",
]
SECTIONS = ["gateway", "output", "session", "smd", "smh", "sbd", "orders", "trades", "pnl"]
scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=12),
    st.sampled_from(["1d", "1min", "5min", "trades", "265598", "8314@NYSE", "UTC", "DU1",
                     "https://localhost:5000", "31", "Europe/Paris", "http://[::1"]),
    st.times().map(lambda t: t.replace(microsecond=0, fold=0)),
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=5)
values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(keys, scalars, max_size=2)
tables = st.dictionaries(keys, values, max_size=6)
documents = st.dictionaries(
    st.sampled_from(SECTIONS) | st.text(max_size=6),
    tables | st.lists(tables, max_size=3) | scalars,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(doc=documents)
def test_any_document_gives_a_config_or_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any]
) -> None:
    text = toml_document(doc)
    assert repr(tomllib.loads(text)) == repr(doc)  # the writer is right (nan != nan)
    path = write(tmp_path_factory.getbasetemp(), text)
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(config, Config)
