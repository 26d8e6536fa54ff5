"""``recorder sim`` from the command line: help, one-line refusals, start and clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from recorder.cli import cli
from recorder.commands.sim import _faults
from recorder.sim import SimGateway, SimOptions
from tests.test_sim_support import T, login, open_ws, recv_json

FLAGS = [
    "--host",
    "--port",
    "--seed",
    "--no-tls",
    "--hb-interval",
    "--update-interval",
    "--smd-expiry",
    "--smh-over-limit",
    "--session-id",
    "--rate",
    "--burst",
    "--grid",
    "--drop-every",
    "--stall-every",
    "--expire-after",
    "--maintenance-every",
    "--bad-utf8-every",
    "--malformed-every",
    "--log-level",
]


def test_help_documents_every_flag() -> None:
    result = CliRunner().invoke(cli, ["sim", "--help"])
    assert result.exit_code == 0
    for flag in FLAGS:
        assert flag in result.output


def test_bad_values_get_one_line_errors_and_exit_2() -> None:
    for args in (
        ["--hb-interval", "0"],
        ["--stall-every", "5"],
        ["--smh-over-limit", "loud"],
        ["--port", "70000"],
        ["--session-id", "a-b"],
        ["--grid", "0.5"],  # paces --rate: nothing to pace
        ["--rate", "100", "--burst", "--grid", "0.5"],
        ["--rate", "100", "--grid", "0"],
        # nan passed every "> 0" check: --expire-after nan expired the session at once
        ["--expire-after", "nan"], ["--drop-every", "inf"], ["--bad-utf8-every", "nan"],
        ["--malformed-every", "inf"], ["--stall-every", "nan:1"], ["--stall-every", "5:inf"],
        ["--maintenance-every", "60:nan"], ["--rate", "nan"], ["--rate", "inf"],
        ["--rate", "5", "--grid", "nan"], ["--hb-interval", "nan"],
        ["--burst"],  # bursts of --rate frames: nothing to burst
    ):
        result = CliRunner().invoke(cli, ["sim", *args])
        assert result.exit_code == 2, args
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in result.output


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["sim", "--port", str(port), "--no-tls"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.output


def test_runs_prints_url_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder", "sim", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert re.match(r"simulated gateway: https://127\.0\.0\.1:\d+ ", first), first
        assert re.fullmatch(r"session id: [0-9a-f]{32}\n", proc.stdout.readline())
        assert proc.stdout.readline().startswith("cafile: /")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5 * T) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_rate_with_grid_sends_a_batch_per_grid_line() -> None:
    """``--rate 0.01 --grid 1000``: the 10 frames of the first 1,000 s at once, then quiet."""
    flags = dict.fromkeys(("drop_every", "bad_utf8_every", "malformed_every", "stall_every",
                           "maintenance_every", "expire_after", "compete_after"))
    kw = {**flags, "rate": 0.01, "burst": False, "grid": 1000.0}

    async def main() -> None:
        opts = SimOptions(seed=1, hb_interval=50.0, update_interval=50.0, record_traffic=False)
        async with SimGateway(opts) as gw, open_ws(gw) as ws:
            await login(ws)
            stop = asyncio.Event()
            faults = asyncio.create_task(_faults(gw, kw, stop))
            topics = []
            with pytest.raises(TimeoutError):
                while True:  # until the socket is quiet for 0.3 s
                    topics.append((await recv_json(ws, wait=0.3)).get("topic"))
            stop.set()
            await faults
            assert len([t for t in topics if t != "system"]) == 10, topics  # no heartbeat

    asyncio.run(main())
