"""Bad input (issue 6): fuzzed config files give a valid config or one clear error, never a
traceback; CLI argument errors exit 2 with a message; fuzzed frames go through the whole
pipeline (simulator, websocket, recorder, journal, Parquet) byte for byte, never fatal."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.cli import cli
from recorder.config import Config, ConfigError, load_config
from recorder.faultmatrix import Context, Fault, read_tables, run_fault
from recorder.session import tls_context

# -- config fuzzing ----------------------------------------------------------------------------

KEYS = {
    "gateway": ["url", "cafile", "insecure"],
    "output": ["dir", "timezone", "rotate_seconds", "flush_seconds"],
    "session": ["tic_seconds", "tickle_seconds", "heartbeat_timeout_seconds",
                "smd_refresh_seconds", "smh_max_concurrent", "smh_timeout_seconds",
                "reconnect_min_seconds", "reconnect_max_seconds", "compete"],
    "smd": ["conids", "fields"],
    "smh": ["conid", "period", "bar", "source", "outside_rth", "every_seconds"],
    "sbd": ["account", "conid", "exchange"],
    "orders": ["enabled"], "trades": ["enabled", "days", "realtime_only"], "pnl": ["enabled"],
}
ARRAYS = {"smd", "smh", "sbd"}

scalars = st.one_of(
    st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["1d", "1min", "7min", "trades", "bid_ask", "NYSE",
                                           "265598", "8314@NYSE", "https://127.0.0.1:5000",
                                           "http://[::1]:1", "ftp://x", "America/New_York",
                                           "Mars/Olympus", "31", "", "DU1234567"]),
    st.dates(), st.times(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = []
    for section in draw(st.lists(st.sampled_from([*KEYS, "gatway", "extra"]), max_size=5)):
        keys = KEYS.get(section, ["x"])
        header = f"[[{section}]]" if section in ARRAYS else f"[{section}]"
        if header in lines and section not in ARRAYS:
            continue
        lines.append(header)
        for key in draw(st.lists(st.sampled_from([*keys, "bogus"]), max_size=4, unique=True)):
            lines.append(f"{key} = {_toml_value(draw(values))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(documents(), st.text(max_size=80)))
def test_any_config_is_valid_or_one_clear_error(tmp_path_factory: pytest.TempPathFactory,
                                                text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "day.toml"
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path)
        tls_context(config.gateway)  # what `record` checks before connecting
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return
    assert isinstance(config, Config)


# -- CLI argument errors -----------------------------------------------------------------------

BAD_ARGS = {
    "duration unit": (["record", "--duration", "5x"], "duration"),
    "until hour": (["record", "--until", "25:00"], "until"),
    "smh spec": (["record", "--smh", "265598"], "smh"),
    "smh bar": (["record", "--smh", "265598:1d:7min"], "smh"),
    "sbd spec": (["record", "--sbd", "DU1"], "sbd"),
    "smd conid": (["record", "--smd", "abc"], "smd"),
    "gateway url": (["record", "--gateway", "ftp://127.0.0.1"], "gateway"),
    "unknown option": (["record", "--bogus"], "--bogus"),
    # a folder that is not there is a usage error the commands report themselves (exit 1)
    "query no folder": (["query", "/nonexistent/recorder-data", "SELECT 1"], "recorder-data"),
    "recover no folder": (["recover", "/nonexistent/recorder-data"], "recorder-data"),
    "compact no date": (["compact", "/tmp"], "--date"),
    "unknown command": (["recrod"], "recrod"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_cli_argument_error_exits_2_with_a_message(tmp_path: Path, case: str) -> None:
    args, named = BAD_ARGS[case]
    if args[0] == "record":
        args = [*args, "--out", str(tmp_path / "data")]
    result = CliRunner().invoke(cli, args)
    expected = 1 if named == "recorder-data" else 2
    assert result.exit_code == expected, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert named.lower() in result.output.lower(), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "data").exists(), "nothing is created before the arguments are valid"


# -- frame fuzzing through the whole pipeline ---------------------------------------------------

real_topics = st.sampled_from([b"smd+265598", b"sor", b"spl", b"sts", b"smh+265598", b"tic",
                               b"sbd+DU1234567+265598", b"str", b"act", b"blt", b"ntf"])
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        import orjson

        body = {"topic": draw(real_topics).decode(), "args": draw(json_like)}
        return orjson.dumps(body)
    topic = draw(real_topics)
    return b'{"topic":"' + topic + b'",' + draw(st.binary(max_size=60)) + b"}"


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames(), min_size=5, max_size=60))
def test_fuzzed_frames_are_recorded_byte_for_byte(tmp_path_factory: pytest.TempPathFactory,
                                                  batch: list[bytes]) -> None:
    async def inject(ctx: Context) -> None:
        for payload in batch:
            ctx.gw.send_raw(payload)
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)

    out = tmp_path_factory.mktemp("fuzz")
    # a fuzzed sts may say "authenticated: false": the recorder re-checks REST and resubscribes
    fault = Fault("fuzz", "fuzzed frames", inject, False)
    row = asyncio.run(run_fault(fault, out))
    assert row.unaccounted == 0 and row.unexpected == 0, row
    assert [p for p in row.problems if "reconnect" in p or "crash" in p or "failed" in p] == []
    recorded = [p for rows in read_tables(out).raw_in.values() for p in rows]
    for payload in batch:
        assert payload in recorded
