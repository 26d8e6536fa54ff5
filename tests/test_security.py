"""Security (issue 6): the session id stays secret, everything listens on loopback only, the TLS
rules of SPEC §5 hold both ways, and output folders never widen the user's umask."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
from pathlib import Path

import psutil
import pytest

from recorder.config import ConfigError, GatewayConfig
from recorder.faultmatrix import Fault, read_tables, run_fault
from recorder.runner import RunSummary
from recorder.session import tls_context
from recorder.sim import SimGateway, SimOptions
from recorder.sim.cert import write_self_signed
from tests.faults_support import (
    config_text,
    files_under,
    run_cli,
    spawn,
    spawn_record,
)
from tests.recording import timeout


def _listening(pid: int) -> list[str]:
    return [c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


# -- the session id ----------------------------------------------------------------------------


def test_the_session_id_is_in_no_log_line_and_no_stored_file(tmp_path: Path) -> None:
    out = tmp_path / "data"

    async def main() -> str:
        async with SimGateway(SimOptions(seed=8, hb_interval=0.5, update_interval=0.1)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw, flush_seconds=0.2))
            log = tmp_path / "log.txt"
            child = await spawn(["record", str(config), "--out", str(out)], log)
            try:
                await gw.wait_for(lambda: gw.stats.tics_received >= 2, timeout(20))
                await asyncio.sleep(0.5)  # tic replies (which carry the id) are journaled
            finally:
                await child.kill()  # kill -9: the journal stays on disk as it was
            secret = gw.session_id.encode()
            tic_replies = [f for f in gw.sent if f.topic == "tic"]
            assert tic_replies and all(secret in f.payload for f in tic_replies)
            journal = [p for p in files_under(out) if p.suffix == ".jnl"]
            assert journal, "the kill left journal segments to inspect"
            for path in files_under(out):
                assert secret not in path.read_bytes(), f"{path} holds the session id"
            result = await asyncio.to_thread(run_cli, "recover", str(out))
            assert result.returncode == 0, result.stderr
            assert secret.decode() not in result.stdout + result.stderr
            for path in files_under(out):
                assert secret not in path.read_bytes(), f"{path} holds the session id"
            text = log.read_text()
            assert "gateway session authenticated" in text, "INFO lines were logged"
            assert gw.session_id not in text
            return gw.session_id

    asyncio.run(main())
    tables = read_tables(out)
    assert any(b"<redacted>" in p for rows in tables.raw_in.values() for p in rows)


# -- loopback only -----------------------------------------------------------------------------


def test_the_simulator_listens_on_loopback_only() -> None:
    async def main() -> None:
        async with SimGateway(SimOptions(seed=1)) as gw:
            ips = _listening(os.getpid())
            assert ips and all(_loopback(ip) for ip in ips), ips
            assert gw.url.startswith("https://127.0.0.1:")

    asyncio.run(main())


def test_recorder_sim_and_record_processes_listen_on_loopback_only(tmp_path: Path) -> None:
    async def main() -> None:
        sim = await spawn(["sim", "--port", "0", "--seed", "2"], tmp_path / "sim.txt")
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout(15)
            while not _listening(sim.pid):
                assert loop.time() < deadline, sim.text()
                await asyncio.sleep(0.05)
            ips = _listening(sim.pid)
            assert all(_loopback(ip) for ip in ips), ips
        finally:
            await sim.kill()
        async with SimGateway(SimOptions(seed=3, hb_interval=0.5)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw))
            child = await spawn_record(config, tmp_path / "data", tmp_path / "rec.txt")
            try:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 1, timeout(20))
                assert _listening(child.pid) == [], "the recorder listens on nothing"
                remote = {c.raddr.ip for c in psutil.Process(child.pid).net_connections("inet")
                          if c.raddr}
                assert remote and all(_loopback(ip) for ip in remote), remote
            finally:
                await child.kill()

    asyncio.run(main())


# -- TLS (SPEC §5) -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.5"])
def test_loopback_without_cafile_is_accepted_unverified(host: str) -> None:
    context = tls_context(GatewayConfig(url=f"https://{host}:5000"))
    assert context is not None
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname


@pytest.mark.parametrize("host", ["gateway.example", "10.0.0.5", "[2001:db8::1]"])
def test_non_loopback_without_cafile_is_refused_unless_insecure(host: str,
                                                                tmp_path: Path) -> None:
    url = f"https://{host}:5000"
    with pytest.raises(ConfigError) as refused:
        tls_context(GatewayConfig(url=url))
    assert "gateway.cafile" in str(refused.value) and "--insecure" in str(refused.value)
    insecure = tls_context(GatewayConfig(url=url, insecure=True))
    assert insecure is not None and insecure.verify_mode is ssl.CERT_NONE
    pem = write_self_signed(tmp_path, "ca").certfile
    verified = tls_context(GatewayConfig(url=url, cafile=str(pem)))
    assert verified is not None
    assert verified.verify_mode is ssl.CERT_REQUIRED and verified.check_hostname


@pytest.mark.parametrize("host", ["gateway.example", "10.0.0.5", "[2001:db8::1]"])
def test_plain_http_is_for_loopback_unless_insecure(host: str) -> None:
    assert tls_context(GatewayConfig(url="http://127.0.0.1:5000")) is None
    assert tls_context(GatewayConfig(url="http://localhost:5000")) is None
    with pytest.raises(ConfigError, match="session cookie unencrypted") as refused:
        tls_context(GatewayConfig(url=f"http://{host}:5000"))
    assert refused.value.key == "gateway.url"
    assert tls_context(GatewayConfig(url=f"http://{host}:5000", insecure=True)) is None


def test_a_cafile_that_cannot_be_loaded_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="gateway.cafile"):
        tls_context(GatewayConfig(url="https://127.0.0.1:5000", cafile=str(bad)))


async def _nothing(ctx: object) -> None:
    await asyncio.sleep(0)


def test_loopback_records_without_cafile(tmp_path: Path) -> None:
    fault = Fault("no-cafile", "loopback, unverified", _nothing, False, pin_cafile=False)
    row = asyncio.run(run_fault(fault, tmp_path))
    assert row.ok and row.recorded > 20, row


def _pinned_refusal(tmp_path: Path, rotate: bool) -> tuple[RunSummary, list[tuple[str, object]]]:
    """Record with ``cafile`` pinned; either rotate the gateway's certificate mid-run, or pin
    a certificate the gateway never had. Returns the run's summary and its events."""
    out = tmp_path / "data"

    async def main() -> RunSummary:
        from recorder.faultmatrix import FAULTS, make_config
        from recorder.runner import Recorder

        async with SimGateway(SimOptions(seed=12, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(gw, out, FAULTS[0])
            if not rotate:
                stranger = write_self_signed(tmp_path, "stranger").certfile
                config = config.__class__(**{**config.__dict__, "gateway": GatewayConfig(
                    url=gw.url, cafile=str(stranger))})
            recorder = Recorder(config)
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop))
            if not rotate:  # refused at the first contact: the config's fault, the run ends
                summary = await asyncio.wait_for(task, timeout(15))
                assert gw.stats.ws_connects == 0 and gw.stats.rest_calls == 0
                return summary
            try:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 1, timeout(10))
                connects = gw.stats.ws_connects
                gw.rotate_certificate()
                await gw.drop_connections()
                # several refused attempts, backed off, each after a REST check of the
                # session (paced by IBKR's table: one /tickle a second)
                await asyncio.sleep(2.5)
                assert gw.stats.ws_connects == connects, "the new certificate was accepted"
                assert not task.done(), "a certificate refused mid-run never ends the recorder"
            finally:
                stop.set()
                summary = await asyncio.wait_for(task, timeout(15))
            return summary

    summary = asyncio.run(main())
    return summary, read_tables(out).events


def test_a_pinned_cafile_refuses_a_rotated_certificate_and_keeps_trying(tmp_path: Path) -> None:
    summary, events = _pinned_refusal(tmp_path, rotate=True)
    failures = [d for k, d in events if k in ("connect_failed", "rest_error")
                and "CERTIFICATE_VERIFY_FAILED" in str(d)]
    assert len(failures) >= 2, events
    assert (summary.stopped_by, summary.config_error) == ("signal", None)
    assert [k for k, _ in events][-1] == "stop"


def test_a_pinned_cafile_the_gateway_never_had_ends_the_run_as_a_bad_config(
        tmp_path: Path) -> None:
    summary, events = _pinned_refusal(tmp_path, rotate=False)
    assert summary.stopped_by == "untrusted certificate"
    assert summary.config_error is not None and summary.config_error.key == "gateway.cafile"
    assert [(k, d) for k, d in events if k in ("rest_error", "stop")] == [
        ("rest_error", {"path": "/tickle", "status": None,
                        "error": "/tickle: TLS certificate not trusted: self-signed certificate"}),
        ("stop", {"reason": "untrusted certificate"})]


# -- permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o077, 0o027])
def test_output_folders_and_files_never_widen_the_umask(tmp_path: Path, umask: int) -> None:
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, update_interval=0.1)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw, rotate_seconds=0.5))
            child = await spawn_record(config, out, tmp_path / "log.txt", umask=umask)
            try:
                await gw.wait_for(lambda: gw.stats.smd_subscribes >= 1, timeout(20))
                modes: dict[Path, int] = {}

                def seen_both() -> bool:
                    """Read the modes of what is there now; a live journal segment comes and
                    goes with every rotation (0.5 s), so look until one was caught."""
                    for path in [out, *out.rglob("*")]:
                        with contextlib.suppress(FileNotFoundError):  # gone since the listing
                            modes[path] = stat.S_IMODE(path.stat().st_mode)
                    suffixes = {path.suffix for path in modes}
                    return {".parquet", ".jnl"} <= suffixes

                await gw.wait_for(seen_both, timeout(10))
                for path, mode in modes.items():
                    assert mode & umask == 0, f"{path} is {oct(mode)} under umask {oct(umask)}"
            finally:
                await child.kill()

    asyncio.run(main())
