"""``recorder record`` as a user runs it: bad configs refused before any connection, and a
SIGTERM mid-recording that exits 0 with everything published."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.sim import SimGateway, SimOptions
from tests.faults_support import events
from tests.recording import logging_restored, timeout
from tests.storage_frames import rows

BAD_CONFIGS = {
    "unknown key": ("[session]\ntic_secs = 30\n", "session.tic_secs"),
    "wrong type": ('[session]\ntic_seconds = "often"\n', "session.tic_seconds"),
    "six smh slots": ("[session]\nsmh_max_concurrent = 6\n", "session.smh_max_concurrent"),
    "bad bar size": ('[[smh]]\nconid = 265598\nperiod = "1d"\nbar = "7min"\n', "smh[0].bar"),
    "unknown section": ("[gatway]\nurl = 'https://localhost:5000'\n", "gatway"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key_before_connecting(tmp_path: Path, case: str) -> None:
    text, key = BAD_CONFIGS[case]

    async def main() -> tuple[int, str, int]:
        async with SimGateway(SimOptions(seed=1)) as gw:
            path = tmp_path / "day.toml"
            path.write_text(text)
            result = await asyncio.to_thread(
                CliRunner().invoke, cli, ["record", str(path), "--gateway", gw.url,
                                          "--out", str(tmp_path / "data")])
            return result.exit_code, result.output, gw.stats.rest_calls + gw.stats.ws_connects

    code, output, contacts = asyncio.run(main())
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], output
    assert "Traceback" not in output
    assert contacts == 0, "nothing may connect before the config is valid"
    assert not (tmp_path / "data").exists()


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["record", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml" in result.output


def test_non_loopback_gateway_without_cafile_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["record", "--gateway", "https://gateway.example:5000",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "gateway.cafile" in result.output and "--insecure" in result.output


def test_plain_http_to_a_non_loopback_gateway_is_refused(tmp_path: Path) -> None:
    """https:// to another host is refused without a cafile, yet http:// to it, the session
    cookie in clear, was taken without a word."""
    # 192.0.2.1: a documentation address (RFC 5737), never routed, were the check to regress
    result = CliRunner().invoke(cli, ["record", "--gateway", "http://192.0.2.1:5000",
                                      "--out", str(tmp_path / "data"), "--duration", "1s"])
    assert (result.exit_code, result.output) == (2, (
        "recorder: bad config: gateway.url: http:// to 192.0.2.1, which is not a loopback host, "
        "would send the session cookie unencrypted: use https://, or --insecure to allow "
        "it\n"))
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("given", ["option", "file"])
def test_a_certificate_that_cannot_be_loaded_is_named_where_it_was_given(
        tmp_path: Path, given: str) -> None:
    pem = tmp_path / "missing.pem"
    args = ["record", "--out", str(tmp_path / "data")]
    if given == "option":
        args += ["--cafile", str(pem)]
    else:
        config = tmp_path / "day.toml"
        config.write_text(f"[gateway]\ncafile = '{pem}'\n")
        args.insert(1, str(config))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    key = "--cafile" if given == "option" else "gateway.cafile"
    assert result.output.startswith(f"recorder: bad config: {key}: cannot load {pem}: "), (
        result.output)
    assert "Traceback" not in result.output


def test_sigterm_exits_0_within_5_s_with_nothing_unflushed(tmp_path: Path) -> None:
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=2, hb_interval=0.5, update_interval=0.05)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(
                "[output]\nflush_seconds = 5.0\nrotate_seconds = 300\n"
                "[session]\ntic_seconds = 1\n"
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recorder", "record", str(config), "--gateway", gw.url,
                "--out", str(out), "--smd", "265598,8314", "--orders", "--pnl",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                await gw.wait_for(lambda: {"smd+265598", "smd+8314"} <= gw.subscriptions(),
                                  timeout(20))
                await asyncio.sleep(1.0)
                proc.send_signal(signal.SIGTERM)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                _, err = await asyncio.wait_for(proc.communicate(), timeout(10))
                elapsed = loop.time() - t0
            finally:
                if proc.returncode is None:
                    proc.kill()
            assert proc.returncode == 0, err.decode()
            assert elapsed < 5.0 * max(1.0, timeout(1)), elapsed
            secret = gw.session_id.encode()
            sent = [f.payload.replace(secret, b"<redacted>") for f in gw.sent]
            log = err.decode()
            assert "gateway session authenticated" in log, "INFO logs were captured"
            assert gw.session_id not in log, "the session id is a credential: never logged"

        received = [bytes(p) for (p,) in rows(
            f"SELECT payload FROM read_parquet('{out}/raw/**/*.parquet') WHERE direction='in'"
            " ORDER BY seq")]
        # flush_seconds is 5 s: only a clean stop can have published all of this
        assert len(received) > 20
        assert received == sent[: len(received)]
        assert not list(out.rglob("*.partial"))
        assert not list(out.rglob("*.jnl")), "a clean stop publishes and drops every segment"

    asyncio.run(main())


def test_duration_stops_on_time_with_exit_0(tmp_path: Path) -> None:
    async def main() -> tuple[int, str]:
        async with SimGateway(SimOptions(seed=4, hb_interval=0.5, update_interval=0.1)) as gw:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recorder", "record", "--gateway", gw.url,
                "--out", str(tmp_path / "data"), "--smd", "265598", "--duration", "2s",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), timeout(20))
            assert proc.returncode is not None
            return proc.returncode, err.decode()

    code, log = asyncio.run(main())
    assert code == 0, log
    assert "stopped by duration" in log
    [(count,)] = rows(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/data/market_data/**/*.parquet')"
    )
    assert count > 0


def _free_port() -> int:
    """A loopback port nobody listens on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dead_gateway_is_waited_for_not_fatal(tmp_path: Path) -> None:
    """Nothing listens on the port: the recorder retries with backoff, notes each failure,
    and still stops on time with exit 0."""
    port = _free_port()
    out = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "recorder", "record", "--gateway", f"https://127.0.0.1:{port}",
         "--out", str(out), "--smd", "265598", "--duration", "3s", "--quiet"],
        capture_output=True, text=True, timeout=timeout(30),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    events = rows(
        f"SELECT kind, detail FROM read_parquet('{out}/events/**/*.parquet') ORDER BY seq"
    )
    failures = [orjson.loads(detail) for kind, detail in events if kind == "rest_error"]
    assert len(failures) >= 2, events  # retried, not given up
    # what was refused, said plainly (aiohttp's own text shows the SSLContext's repr)
    assert {f["error"] for f in failures} == {
        f"/tickle: cannot connect to 127.0.0.1:{port}: Connection refused"}
    assert "ssl.SSLContext" not in proc.stderr
    assert [k for k, _ in events][-1] == "stop"


def test_https_to_a_gateway_without_tls_says_so(tmp_path: Path) -> None:
    """The gateway serves plain http (``listenSsl: false``) and the URL says https: the
    warning said "Operation not permitted", the text of the TLS error's errno (1)."""
    out = tmp_path / "data"

    async def main() -> tuple[int, subprocess.CompletedProcess[str]]:
        async with SimGateway(SimOptions(seed=1, tls=False)) as gw:
            proc = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "recorder", "record", "--gateway",
                gw.url.replace("http://", "https://"), "--out", str(out), "--smd", "265598",
                "--duration", "2s", "--quiet"],
                capture_output=True, text=True, timeout=timeout(30))
            return gw.port, proc

    port, proc = asyncio.run(main())
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    failures = {orjson.loads(detail)["error"] for kind, detail in rows(
        f"SELECT kind, detail FROM read_parquet('{out}/events/**/*.parquet')")
        if kind == "rest_error"}
    assert failures == {f"/tickle: cannot connect to 127.0.0.1:{port}: TLS handshake failed: "
                        "the gateway answered without TLS (use http://)"}
    assert "Operation not permitted" not in proc.stderr


def test_http_to_a_gateway_with_tls_says_so(tmp_path: Path) -> None:
    """The other way round: the gateway speaks TLS (its default) and the URL says http. The
    warning was only "ServerDisconnectedError: Server disconnected"."""
    out = tmp_path / "data"

    async def main() -> subprocess.CompletedProcess[str]:
        async with SimGateway(SimOptions(seed=1)) as gw:
            return await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "recorder", "record", "--gateway",
                gw.url.replace("https://", "http://"), "--out", str(out), "--smd", "265598",
                "--duration", "2s", "--quiet"],
                capture_output=True, text=True, timeout=timeout(30))

    proc = asyncio.run(main())
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    failures = {orjson.loads(detail)["error"] for kind, detail in rows(
        f"SELECT kind, detail FROM read_parquet('{out}/events/**/*.parquet')")
        if kind == "rest_error"}
    assert failures == {"/tickle: ServerDisconnectedError: Server disconnected without an "
                        "answer (if the gateway uses TLS, use https://)"}
    assert "use https://" in proc.stderr


@pytest.mark.parametrize("given", ["option", "file"])
def test_a_certificate_that_does_not_verify_at_the_first_contact_is_a_bad_config(
        tmp_path: Path, given: str) -> None:
    """A cafile that loads but is not the gateway's (another gateway's, an old one): waiting
    does not mend it, and it used to be retried, warning every few seconds, until the
    --duration ran out. It now stops the run at once: exit 2, one line naming the key."""
    out = tmp_path / "data"

    async def main() -> tuple[int, str, str, str]:
        async with SimGateway(SimOptions(seed=1)) as gw, SimGateway(SimOptions(seed=2)) as other:
            assert other.cafile
            args = ["record", "--gateway", gw.url, "--out", str(out), "--smd", "265598",
                    "--duration", "60s", "--quiet"]
            if given == "option":
                args += ["--cafile", other.cafile]
            else:
                (tmp_path / "day.toml").write_text(f"[gateway]\ncafile = '{other.cafile}'\n")
                args.insert(1, str(tmp_path / "day.toml"))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recorder", *args,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), timeout(30))
            assert proc.returncode is not None and gw.stats.ws_connects == 0
            return proc.returncode, err.decode(), gw.url, other.cafile

    code, err, url, cafile = asyncio.run(main())
    assert code == 2, err
    assert err.splitlines()[-1] == (
        f"recorder: bad config: gateway.cafile: the certificate of {url} does not verify "
        f"against {cafile} (self-signed certificate): give the gateway's own certificate, or "
        "no cafile for a gateway on this machine")
    assert "Traceback" not in err and "stopped by untrusted certificate" in err
    recorded = [(k, d) for k, d in events(out) if k in ("rest_error", "stop")]
    assert recorded == [
        ("rest_error", {"path": "/tickle", "status": None,
                        "error": "/tickle: TLS certificate not trusted: self-signed certificate"}),
        ("stop", {"reason": "untrusted certificate"})]


def test_the_summary_says_when_storage_fell_behind() -> None:
    from recorder.commands.record import _summary_text
    from recorder.runner import RunSummary
    from recorder.storage import StorageStats

    run = RunSummary(seconds=60.0, frames_in=3, frames_by_topic={"smd": 3}, connects=1,
                     stopped_by="duration", storage=StorageStats(3, {"raw": 3}, 2))
    text = _summary_text(run, Path("day"))
    assert text.splitlines() == [
        "recorded 60.0 s, stopped by duration",
        "  frames received: 3 (smd 3)",
        "  rows written: raw 3",
        "  files published: 2 in day",
        "  connections: 1, reconnects: 0",
    ]
    run.storage = StorageStats(3, {"raw": 3}, 2, full_waits=1234)
    assert _summary_text(run, Path("day")).splitlines()[-1] == (
        "  storage fell behind: 1,234 time(s) a frame waited for room in its queue and reading"
        " paused; none was lost")
    # a stop without storage (a full disk) lost what it never journaled: the summary says so
    run.abandoned, run.not_journaled = True, 10_158
    assert _summary_text(run, Path("day")).splitlines()[-3:] == [
        "  connections: 1, reconnects: 0",
        "  storage fell behind: 1,234 time(s) a frame waited for room in its queue and reading"
        " paused",
        "  lost: 10,158 frames received, never journaled: storage failed before it could write"
        " them",
    ]


def _dead_port() -> int:
    import socket

    with socket.socket() as probe:  # a free loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _record(*args: str) -> tuple[int, str]:
    """``recorder record`` in this process against a dead gateway: exit code and stderr. The
    command sets up the root logger as for a process of its own; it is put back after."""
    with logging_restored():
        result = CliRunner().invoke(
            cli, ["record", "--gateway", f"http://127.0.0.1:{_dead_port()}", *args])
    return result.exit_code, result.stderr


def test_a_folder_in_use_by_another_recorder_is_one_line_not_a_traceback(
        tmp_path: Path) -> None:
    from recorder.recover import FolderLock

    lock = FolderLock(tmp_path / "data")
    lock.acquire()  # as a recorder in another process would hold it
    try:
        code, err = _record("--out", str(tmp_path / "data"), "--smd", "1", "--duration", "1s",
                            "--quiet")
    finally:
        lock.release()
    assert code == 1, err
    assert err.strip().splitlines() == [
        f"recorder: {tmp_path / 'data'} is in use by another recorder process"]


def test_an_output_path_that_is_a_file_is_a_bad_config(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    code, err = _record("--out", str(tmp_path / "afile" / "data"), "--smd", "1")
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"recorder: bad config: --out: {tmp_path / 'afile'} is a file, not a folder"]


def test_an_output_folder_that_cannot_be_written_is_one_line_not_a_traceback(
        tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "_journal").write_text("")  # where the journal's folder must go
    code, err = _record("--out", str(tmp_path / "data"), "--smd", "1", "--duration", "1s",
                        "--quiet")
    assert code == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"recorder: cannot record into {tmp_path}")


def test_a_run_says_when_it_will_stop_and_warns_when_it_subscribes_to_nothing(
        tmp_path: Path) -> None:
    """A forgotten config file records a day of nothing: say so at once. And the stop time is
    logged, so an --until that has passed today (it then means tomorrow) shows."""
    code, err = _record("--out", str(tmp_path / "data"), "--duration", "1s")
    assert code == 0, err
    assert err.startswith("recorder: warning: nothing to subscribe to")
    assert "INFO recording until " in err and "(in 1 s), by --duration" in err
    code, err = _record("--out", str(tmp_path / "data"), "--duration", "1s", "--pnl")
    assert code == 0 and "nothing to subscribe" not in err


@pytest.mark.parametrize(("now", "level", "message"), [
    ((10, 0), logging.WARNING,
     "--until 09:30 has passed today: recording until 2026-11-21 09:30 EST (in 23 h 30 min)"),
    ((9, 0), logging.INFO, "recording until 2026-11-20 09:30 EST (in 30 min), by --until"),
])
def test_an_until_that_has_passed_today_is_a_warning(
        tmp_path: Path, now: tuple[int, int], level: int, message: str) -> None:
    """09:30 typed at 10:00 records until tomorrow: a warning, which --quiet shows (it
    hides the info line that used to be the only sign)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from recorder.config import Config, GatewayConfig, OutputConfig
    from recorder.runner import Recorder

    wall = dt.datetime(2026, 11, 20, *now, tzinfo=ZoneInfo("America/New_York")).timestamp()
    config = Config(gateway=GatewayConfig(url=f"http://127.0.0.1:{_free_port()}"),
                    output=OutputConfig(dir=tmp_path / "data"), until=dt.time(9, 30))
    said: list[logging.LogRecord] = []

    class StopWhenSaid(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "recording until" in record.getMessage():
                said.append(record)
                stop.set()

    async def main() -> None:
        await asyncio.wait_for(Recorder(config, wall=lambda: wall).run(stop), timeout(15))

    stop = asyncio.Event()
    logger = logging.getLogger("recorder.runner")
    handler, old_level = StopWhenSaid(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert [(r.levelno, r.getMessage()) for r in said] == [(level, message)]


def test_stop_time_reads_as_a_clock_time_and_a_span() -> None:
    from recorder.runner import stop_time

    noon = 1_795_280_400.0  # 2026-11-21 12:00 in New York (EST)
    assert stop_time(30.0, "America/New_York", noon) == "2026-11-21 12:00:30 EST (in 30 s)"
    assert stop_time(90.4, "America/New_York", noon) == "2026-11-21 12:01:30 EST (in 90 s)"
    assert stop_time(45 * 60, "America/New_York", noon) == "2026-11-21 12:45 EST (in 45 min)"
    assert stop_time(23.5 * 3600, "America/New_York", noon) == (
        "2026-11-22 11:30 EST (in 23 h 30 min)")


def test_a_stop_that_leaves_frames_to_recover_exits_1_and_says_so(tmp_path: Path) -> None:
    """Storage that cannot publish (``events`` is a file where its folder must go) makes the
    stop give up after ``STORAGE_STUCK_SECONDS``: the run used to exit 0 with "rows written"
    for rows only the journal holds."""
    out = tmp_path / "data"
    out.mkdir()
    (out / "events").write_text("")
    code, err = _record("--out", str(out), "--duration", "1s", "--quiet")
    assert code == 1, err
    assert "  rows normalized, not all published: events " in err
    assert "rows written" not in err
    assert err.strip().splitlines()[-1] == (
        "recorder: storage failed: what was received is in the journal, not the tables; once "
        f"the disk is fixed, run `recorder recover {out}`")


def test_an_empty_out_or_a_duration_past_a_year_is_a_bad_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out ''`` used to record into the current folder, and ``--duration 999999999999h``
    to pass the check and end in a traceback."""
    monkeypatch.chdir(tmp_path)  # where a regression would record
    code, err = _record("--out", "", "--duration", "1s")
    assert (code, err.strip()) == (2, "recorder: bad config: --out: must not be empty")
    assert list(tmp_path.iterdir()) == []
    code, err = _record("--out", str(tmp_path / "data"), "--duration", "999999999999h")
    assert code == 2, err
    assert err.strip() == ("recorder: bad config: --duration: must be at most 8784h (a year), "
                           "got '999999999999h'")
    assert not (tmp_path / "data").exists()
