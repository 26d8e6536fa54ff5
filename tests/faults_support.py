"""Shared harness of the reliability and security tests: ``recorder`` as a child process
against the simulated gateway (which runs in the test's own event loop), configs, readers of
what was published, and a size-limited file system for the full-disk tests.

Children write their stderr to a file, never to a pipe nobody reads (a full pipe would stall
the recorder's logging and look like a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from recorder.sim import SimGateway
from tests.recording import timeout
from tests.storage_frames import rows

RECORDER = (sys.executable, "-m", "recorder")


def config_text(gw: SimGateway, *, flush_seconds: float = 0.2, rotate_seconds: float = 300.0,
                cafile: str | None = None, heartbeat_timeout_seconds: float = 11.0) -> str:
    """A day.toml for a fast run against ``gw`` (quotes for one conid, orders, P&L)."""
    ca = gw.cafile if cafile is None else cafile
    return (
        f'[gateway]\nurl = "{gw.url}"\ncafile = "{ca or ""}"\n'
        f"[output]\nflush_seconds = {flush_seconds}\nrotate_seconds = {rotate_seconds}\n"
        "[session]\ntic_seconds = 1\ntickle_seconds = 1\n"
        f"heartbeat_timeout_seconds = {heartbeat_timeout_seconds}\n"
        "reconnect_min_seconds = 0.05\nreconnect_max_seconds = 0.3\n"
        "[[smd]]\nconids = [265598]\n[orders]\nenabled = true\n[pnl]\nenabled = true\n"
    )


@dataclass
class Child:
    """A ``recorder`` child process; ``log`` is its stderr file."""

    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait(self, seconds: float) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout(seconds))

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def spawn(args: Sequence[str], log: Path, *, umask: int | None = None,
                stdout: Path | None = None) -> Child:
    """Start ``recorder ARGS`` with stderr (and stdout, unless given a file) to ``log``."""
    # the child holds its own copy of the descriptors; opening a local file is instant
    err = open(log, "ab")  # noqa: ASYNC230
    out = open(stdout, "ab") if stdout is not None else err  # noqa: ASYNC230
    try:
        preexec = (lambda: os.umask(umask)) if umask is not None else None
        proc = await asyncio.create_subprocess_exec(
            *RECORDER, *args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            preexec_fn=preexec)  # noqa: PLW1509 - only sets the umask
    finally:
        err.close()
        if out is not err:
            out.close()
    return Child(proc, log)


async def spawn_record(config: Path, out: Path, log: Path, *extra: str,
                       umask: int | None = None) -> Child:
    return await spawn(["record", str(config), "--out", str(out), "--quiet", *extra], log,
                       umask=umask)


def run_cli(*args: str, seconds: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``recorder ARGS`` to completion (for recover, query… after the recording)."""
    return subprocess.run([*RECORDER, *args], capture_output=True, text=True,
                          timeout=timeout(seconds), check=False)


@dataclass(frozen=True)
class RawRow:
    recv_ts: int
    conn_id: int
    seq: int
    direction: str
    payload: bytes


def raw_rows(out: Path) -> list[RawRow]:
    """Every published ``raw`` row (all directions), in ``recv_ts`` then ``seq`` order."""
    if not list((out / "raw").rglob("*.parquet")):
        return []
    return [RawRow(int(ts), int(c), int(s), d, bytes(p)) for ts, c, s, d, p in rows(
        "SELECT epoch_ns(recv_ts), conn_id, seq, direction, payload"
        f" FROM read_parquet('{out}/raw/**/*.parquet') ORDER BY recv_ts, seq")]


def events(out: Path) -> list[tuple[str, Any]]:
    if not list((out / "events").rglob("*.parquet")):
        return []
    return [(k, orjson.loads(d) if d else None) for k, d in rows(
        f"SELECT kind, detail FROM read_parquet('{out}/events/**/*.parquet')"
        " ORDER BY recv_ts, seq")]


def count_all(out: Path) -> int:
    """What a user's notebook runs while recording: every published file, every table."""
    [(n,)] = rows(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')")
    return int(n)


def files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path


def sent_payloads(gw: SimGateway, since_ns: int = 0, until_ns: int | None = None) -> list[bytes]:
    """What the simulator sent in a time window, redacted as the recorder stores it."""
    secret = gw.session_id.encode()
    return [f.payload.replace(secret, b"<redacted>") for f in gw.sent
            if f.ts_ns >= since_ns and (until_ns is None or f.ts_ns <= until_ns)]


class MountRefused(RuntimeError):
    pass


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the test (needs root); unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                             str(path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MountRefused(result.stderr.strip() or f"mount exited {result.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
