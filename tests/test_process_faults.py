"""Process faults (issue 6): kill -9 at random moments, SIGTERM, a full disk.

The recorder runs as ``python -m recorder record`` in a child process against the simulated
gateway, which runs in this test's event loop and says exactly what it sent and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import os
import pty
import random
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from recorder.faultmatrix import compare, read_tables
from recorder.sim import SimGateway, SimOptions
from recorder.summary import summarize
from tests.faults_support import (
    RECORDER,
    Child,
    MountRefused,
    RawRow,
    config_text,
    count_all,
    raw_rows,
    run_cli,
    small_tmpfs,
    spawn,
    spawn_record,
)
from tests.recording import timeout
from tests.storage_frames import rows

FLUSH = 0.2
KILL_DIRS = 4
KILLS_PER_DIR = 5


@dataclass(frozen=True)
class Run:
    started_ns: int
    killed_ns: int


def _sim_conns_of(gw: SimGateway, run: Run) -> list[int]:
    first: dict[int, int] = {}
    for f in gw.sent:
        first.setdefault(f.conn_id, f.ts_ns)
    return sorted(c for c, t in first.items() if run.started_ns <= t <= run.killed_ns)


def _check_run(gw: SimGateway, rows: list[RawRow], run: Run) -> int:
    """Frames of one killed run: each once, in order, and all but the last FLUSH seconds."""
    mine = [r for r in rows if run.started_ns <= r.recv_ts <= run.killed_ns]
    keys = [(r.conn_id, r.seq) for r in mine]
    assert len(keys) == len(set(keys)), "a frame was published twice"
    got = [r.payload for r in sorted(mine, key=lambda r: r.seq) if r.direction == "in"]
    secret = gw.session_id.encode()
    conns = _sim_conns_of(gw, run)
    sent = [f for c in conns for f in gw.sent if f.conn_id == c]
    want = [f.payload.replace(secret, b"<redacted>") for f in sent]
    assert got == want[: len(got)], "recorded frames are not the sent ones, in order, once"
    durable = sum(1 for f in sent if f.ts_ns <= run.killed_ns - FLUSH * 1e9)
    assert len(got) >= durable, (
        f"kill -9 lost {durable - len(got)} frames sent more than {FLUSH} s before it")
    return len(got)


def test_twenty_kill_9_lose_at_most_flush_seconds_and_publish_once(tmp_path: Path) -> None:
    rng = random.Random(6_2026)

    async def main() -> None:
        async with SimGateway(SimOptions(seed=9, hb_interval=0.5, update_interval=0.05)) as gw:
            gw.set_rate(300.0)
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw, flush_seconds=FLUSH, rotate_seconds=0.5))
            loop = asyncio.get_running_loop()
            kills, recorded, queries = 0, [], 0
            for d in range(KILL_DIRS):
                out = tmp_path / f"run{d}"
                runs = []
                for k in range(KILLS_PER_DIR):
                    started = time.time_ns()
                    child = await spawn_record(config, out, tmp_path / f"log{d}-{k}.txt")
                    deadline = loop.time() + rng.uniform(0.2, 2.2)
                    while loop.time() < deadline:  # a reader never meets a half-written file
                        if list(out.glob("*/date=*/*.parquet")):
                            await asyncio.to_thread(count_all, out)
                            queries += 1
                        await asyncio.sleep(0.05)
                    killed = time.time_ns()
                    await child.kill()
                    assert child.proc.returncode == -signal.SIGKILL, child.text()
                    runs.append(Run(started, killed))
                    kills += 1
                result = await asyncio.to_thread(run_cli, "recover", str(out))
                assert result.returncode == 0, result.stderr
                assert not list(out.rglob("*.partial")) and not list(out.rglob("*.jnl"))
                rows = raw_rows(out)
                recorded += [_check_run(gw, rows, run) for run in runs]
            gw.set_rate(0)
        assert kills == 20
        assert queries > 20
        assert sum(1 for n in recorded if n > 100) >= 8, (
            f"too few kills landed mid-stream: {recorded}")

    asyncio.run(main())


def test_the_next_record_publishes_what_a_kill_9_left(tmp_path: Path) -> None:
    """``recorder record`` replays what a killed run left in its folder before it records:
    starting again after kill -9 publishes the killed run's frames, no ``recorder recover``."""
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=12, hb_interval=0.5, update_interval=0.05)) as gw:
            config, started, child = await _record_streaming(gw, tmp_path, out, 300)
            try:
                killed = time.time_ns()
                await child.kill()
                assert child.proc.returncode == -signal.SIGKILL, child.text()
            finally:
                await child.kill()
            assert list((out / "_journal").glob("*.jnl")), "the killed run left no journal"
            connects = gw.stats.ws_connects
            child = await spawn_record(config, out, tmp_path / "log2.txt")
            try:
                await gw.wait_for(lambda: gw.stats.ws_connects > connects, timeout(20))
                await _streaming(gw)
                await _term(child)
            finally:
                await child.kill()
            gw.set_rate(0)
        recorded = raw_rows(out)
        assert _check_run(gw, recorded, Run(started, killed)) >= 100
        assert not list(out.rglob("*.partial")) and not list(out.rglob("*.jnl"))
        # the second run's ids follow the recovered ones: a seq names one frame of the folder
        assert len({r.seq for r in recorded}) == len(recorded)
        first = [r.conn_id for r in recorded if r.recv_ts <= killed]
        second = [r.conn_id for r in recorded if r.recv_ts > killed]
        assert second and min(second) > max(first)
        # summary shows the hole: from the killed run's last frame to the next run's connect
        [gap] = summarize(out, silence_seconds=3600).gaps
        reconnected = min(ts for ts, kind, conn in rows(
            f"SELECT epoch_ns(recv_ts), kind, conn_id FROM read_parquet('{out}/events/**/*"
            ".parquet')") if kind == "connect" and conn == min(second))
        last_in = max(r.recv_ts for r in recorded
                      if r.conn_id == max(first) and r.direction == "in")
        assert gap.kind == "crash" and gap.end is not None
        # the views read times to the microsecond
        assert abs(_epoch_ns(gap.start) - last_in) < 1000
        assert abs(_epoch_ns(gap.end) - reconnected) < 1000

    asyncio.run(main())


def _epoch_ns(iso: str) -> int:
    when = dt.datetime.fromisoformat(iso)
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


async def _streaming(gw: SimGateway) -> None:
    await gw.wait_for(lambda: {"smd+265598", "sor", "spl"} <= gw.subscriptions(), timeout(20))


async def _record_streaming(gw: SimGateway, tmp_path: Path, out: Path, frames: int, *,
                            quiet: bool = True) -> tuple[Path, int, Child]:
    """``recorder record`` into ``out`` with the gateway at 300 frames/s, once ``frames`` more
    have streamed: its config file, its start time (ns) and the child."""
    gw.set_rate(300.0)
    config = tmp_path / "day.toml"
    config.write_text(config_text(gw, flush_seconds=FLUSH))
    started = time.time_ns()
    log = tmp_path / "log1.txt"
    child = await (spawn_record(config, out, log) if quiet else
                   spawn(["record", str(config), "--out", str(out)], log))
    try:
        await _streaming(gw)
        sent = len(gw.sent)
        await gw.wait_for(lambda: len(gw.sent) >= sent + frames, timeout(10))
    except BaseException:
        await child.kill()
        raise
    return config, started, child


async def _term(child: Child, within: float = 5.0) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    child.proc.send_signal(signal.SIGTERM)
    code = await child.wait(15)
    assert code == 0, child.text()
    elapsed = loop.time() - t0
    assert elapsed < timeout(within), elapsed
    return elapsed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_second_signal_while_stopping_exits_at_once_and_recovery_loses_nothing_journaled(
        tmp_path: Path, sig: signal.Signals) -> None:
    """The gateway never answers the recorder's close, so a clean stop would wait seconds for
    it; a second signal ends the process at once, and what it journaled is published by
    ``recorder recover``, as after a kill -9."""
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=13, hb_interval=0.5, update_interval=0.05)) as gw:
            _, started, child = await _record_streaming(gw, tmp_path, out, 200, quiet=False)
            try:
                gw.ignore_closes()
                child.proc.send_signal(sig)
                await gw.wait_for(lambda: any(r.payload.startswith(b"umd+")
                                              for r in gw.received), timeout(5))
                second = time.time_ns()
                child.proc.send_signal(sig)
                code = await child.wait(2)
            finally:
                await child.kill()
            gw.set_rate(0)
            assert code == 128 + sig.value, child.text()
            assert f"{sig.name}: stopping; publishing can take a while" in child.text()
            assert f"second {sig.name} while stopping: exiting now" in child.text()
            assert f"`recorder recover {out}`" in child.text()
            result = await asyncio.to_thread(run_cli, "recover", str(out))
            assert result.returncode == 0, result.stderr
            assert _check_run(gw, raw_rows(out), Run(started, second)) >= 100

    asyncio.run(main())


def test_sighup_from_a_terminal_that_is_gone_stops_cleanly(tmp_path: Path) -> None:
    """A recording started over ssh: the link drops, the terminal goes (writes to it fail
    with EIO) and SIGHUP comes. The recorder stops as for SIGTERM and publishes everything;
    it used to die at once, leaving the day to ``recorder recover``."""
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, update_interval=0.05)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw, flush_seconds=5.0))  # only a clean stop saves it
            leader, follower = pty.openpty()
            proc = await asyncio.create_subprocess_exec(
                *RECORDER, "record", str(config), "--out", str(out), stdin=follower,
                stdout=follower, stderr=follower, start_new_session=True)
            os.close(follower)
            try:
                await _streaming(gw)
                sent = len(gw.sent)
                await gw.wait_for(lambda: len(gw.sent) >= sent + 100, timeout(10))
                os.close(leader)  # the terminal is gone: the status line's writes now fail
                leader = -1
                proc.send_signal(signal.SIGHUP)
                code = await asyncio.wait_for(proc.wait(), timeout(15))
            finally:
                if leader >= 0:
                    os.close(leader)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert code == 0
            stop_ns = min(r.ts_ns for r in gw.received if r.payload.startswith(b"umd+"))
            sent_frames, peers, sid = list(gw.sent), dict(gw.peers), gw.session_id
        row = compare("sighup", sent_frames, peers, sid, read_tables(out))
        assert row.unexpected == 0 and not row.problems, row
        assert row.missing <= sum(1 for f in sent_frames if f.ts_ns >= stop_ns)
        assert row.recorded > 100
        assert not list(out.rglob("*.partial")) and not list(out.rglob("*.jnl"))

    asyncio.run(main())


def test_sigterm_under_load_publishes_everything_received(tmp_path: Path) -> None:
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=3, hb_interval=0.5, update_interval=0.05)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw, flush_seconds=5.0))  # only a clean stop saves it
            child = await spawn_record(config, out, tmp_path / "log.txt")
            try:
                await _streaming(gw)
                gw.set_rate(3000.0)
                await asyncio.sleep(1.5)
                await _term(child)
            finally:
                await child.kill()
            stop_ns = min(r.ts_ns for r in gw.received if r.payload.startswith(b"umd+"))
            sent, peers, sid = list(gw.sent), dict(gw.peers), gw.session_id
        row = compare("sigterm", sent, peers, sid, read_tables(out))
        assert row.unexpected == 0 and not row.problems, row
        late = sum(1 for f in sent if f.ts_ns >= stop_ns)
        assert row.missing <= late, "only frames sent after the recorder began to stop may miss"
        assert row.recorded > 3000
        assert not list(out.rglob("*.partial")) and not list(out.rglob("*.jnl"))

    asyncio.run(main())


def test_sigterm_while_the_gateway_is_down_exits_0_and_closes_the_gap(tmp_path: Path) -> None:
    out = tmp_path / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=4, hb_interval=0.5, update_interval=0.1)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw))
            child = await spawn_record(config, out, tmp_path / "log.txt")
            try:
                await _streaming(gw)
                gw.expire_session()  # sockets closed 1000, new ones too: the recorder waits
                await asyncio.sleep(1.5)
                assert child.proc.returncode is None, "a lost session never ends the recorder"
                await _term(child)
            finally:
                await child.kill()
            sent, peers, sid = list(gw.sent), dict(gw.peers), gw.session_id
        tables = read_tables(out)
        row = compare("sigterm-down", sent, peers, sid, tables)
        assert row.ok, row
        assert any(g.next_conn_id is None for g in tables.gaps.values()), (
            "the gap open at the stop ends with the run")

    asyncio.run(main())


# -- a full disk --------------------------------------------------------------------------------


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a ballast file, leaving about ``leave`` bytes free."""
    import os

    ballast = disk / "ballast"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return ballast


async def _until_log(child: Child, text: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(within)
    while text not in child.text():
        assert loop.time() < deadline, f"never logged {text!r}:\n{child.text()}"
        assert child.proc.returncode is None, f"the recorder exited:\n{child.text()}"
        await asyncio.sleep(0.05)


def _published_readable(out: Path) -> None:
    assert not [p for p in out.rglob("*.parquet") if p.stat().st_size == 0]
    count_all(out)  # every published file opens: none is half-written


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs for the full-disk tests (skipped where it cannot be mounted)."""
    with contextlib.ExitStack() as mounted:
        try:
            path = mounted.enter_context(small_tmpfs(tmp_path / "disk", "8m"))
        except MountRefused as exc:
            pytest.skip(f"cannot mount a small tmpfs for the full-disk test: {exc}")
        yield path


@pytest.mark.parametrize("space_returns", [True, False], ids=["space-returns", "stays-full"])
def test_full_disk(tmp_path: Path, disk: Path, space_returns: bool) -> None:
    out = disk / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=5, hb_interval=0.5, update_interval=0.1)) as gw:
            config = tmp_path / "day.toml"
            config.write_text(config_text(gw, rotate_seconds=1.0))
            child = await spawn_record(config, out, tmp_path / "log.txt")
            try:
                await _streaming(gw)
                await asyncio.sleep(1.2)  # a rotation has published files
                ballast = _fill(disk, 64 * 1024)
                gw.set_rate(1000.0)
                await _until_log(child, "No space left on device", 10)
                _published_readable(out)
                if space_returns:
                    ballast.unlink()
                    await _until_log(child, "storage recovered", 15)
                    gw.set_rate(0)
                    await asyncio.sleep(0.5)
                    gw.stall(600.0)
                    await asyncio.sleep(0.3)
                    await _term(child)
                else:
                    await asyncio.sleep(1.0)
                    gw.set_rate(0)
                    child.proc.send_signal(signal.SIGTERM)
                    code = await child.wait(30)
                    assert code == 1, child.text()  # it stopped with frames left to recover
                    said = child.text()
                    lost = re.search(r"stopping without it; (\d+) frames received were not "
                                     r"journaled", said)
                    assert lost, said
                    n = int(lost[1])
                    kept = (f"{n:,} frame{'' if n == 1 else 's'} received could not be "
                            "journaled and are lost; the rest is in the journal" if n else
                            "what was received is in the journal")
                    assert said.strip().splitlines()[-1] == (
                        f"recorder: storage failed: {kept}, not the tables; once the disk is "
                        f"fixed, run `recorder recover {out}`")
                    if n:
                        assert "none was lost" not in said
                        assert f"\n  lost: {n:,} frame" in said
                    ballast.unlink()
            finally:
                await child.kill()
            sent, peers, sid = list(gw.sent), dict(gw.peers), gw.session_id
        log = child.text()
        assert "Traceback" not in log, log
        _published_readable(out)
        if space_returns:
            assert not list(out.rglob("*.partial"))
            row = compare("full-disk", sent, peers, sid, read_tables(out))
            assert row.ok, (row, log)
        else:
            result = await asyncio.to_thread(run_cli, "recover", str(out))
            assert result.returncode == 0, result.stderr
            _published_readable(out)
            row = compare("full-disk-stop", sent, peers, sid, read_tables(out))
            assert row.unexpected == 0 and row.recorded > 50, (row, log)

    asyncio.run(main())


def test_a_disk_full_for_longer_than_the_heartbeat_timeout_costs_no_frame(
        tmp_path: Path, disk: Path) -> None:
    """While storage cannot write, the reader waits (backpressure) and the socket's buffers
    fill; the dead-socket watchdog must not take that wait for a silent socket."""
    from recorder.runner import Recorder
    from tests.recording import make_config, record_while

    out = disk / "data"

    async def main() -> None:
        async with SimGateway(SimOptions(seed=6, hb_interval=0.5, update_interval=0.1)) as gw:
            # tic_seconds above the timeout, as in the defaults (30 > 25): a tic sent into the
            # full queue would otherwise block the watchdog's own task and hide the bug
            config = make_config(gw, out, smd=("265598",), orders=True, pnl=True,
                                 rotate_seconds=1.0, tic_seconds=10.0)

            async def scenario(rec: Recorder) -> None:
                await _streaming(gw)
                await asyncio.sleep(1.2)
                ballast = _fill(disk, 64 * 1024)
                gw.set_rate(500.0)
                await asyncio.sleep(4.0)  # twice heartbeat_timeout_seconds, disk full
                stats = rec.storage_stats
                assert stats is not None and stats.failing
                assert "No space left on device" in stats.failing
                _published_readable(out)
                ballast.unlink()
                gw.set_rate(0)
                before = gw.stats.frames_sent
                await gw.wait_for(lambda: gw.stats.frames_sent > before + 10, timeout(10))
                gw.stall(600.0)
                await asyncio.sleep(0.5)

            await record_while(config, scenario, queue_max=200)
            sent, peers, sid = list(gw.sent), dict(gw.peers), gw.session_id
        tables = read_tables(out)
        row = compare("full-disk-in-process", sent, peers, sid, tables)
        assert "heartbeat_timeout" not in tables.kinds()
        assert row.ok and row.gaps == 0, row
        assert row.recorded > 1000

    asyncio.run(main())



def test_a_stop_on_a_full_disk_with_a_full_queue_ends_and_loses_nothing_journaled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM while storage cannot write and its queue is full: unsubscribing waits for room
    that never comes, and so would storage. The stop gives up on both in bounded time and says
    what to run; ``recorder recover`` then publishes every frame the journal took."""
    from recorder.recover import recover_dir
    from recorder.redact import Redactor
    from recorder.runner import Recorder, RunSummary
    from recorder.storage import Storage, StorageOptions, StorageStats
    from tests.recording import make_config, record_while
    from tests.storage_frames import FullDisk

    out = tmp_path / "data"
    disk = FullDisk(budget=10**12)

    def storage(options: StorageOptions, redactor: Redactor) -> Storage:
        return Storage(options, redactor, opener=disk)

    async def main() -> RunSummary:
        async with SimGateway(SimOptions(seed=7, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(gw, out, smd=("265598",), orders=True, pnl=True,
                                 tic_seconds=10.0)

            async def scenario(rec: Recorder) -> None:
                await _streaming(gw)
                await gw.wait_for(lambda: (rec.storage_stats or StorageStats()).frames > 0,
                                  timeout(10))
                disk.budget = 0
                gw.set_rate(500.0)

                def stuck() -> bool:
                    stats = rec.storage_stats
                    return stats is not None and stats.full_waits > 0 and bool(stats.failing)

                await gw.wait_for(stuck, timeout(10))  # the reader waits for room: queue full

            summary = await record_while(config, scenario, queue_max=50, storage=storage)
        assert summary.abandoned
        return summary

    summary = asyncio.run(main())
    assert "made no progress in 5 s of retrying: stopping without it; " \
        f"{summary.not_journaled} frames received were not journaled" in caplog.text
    assert f"run `recorder recover {out}`" in caplog.text
    disk.budget = 10**12
    recover_dir(out)
    published = [seq for (seq,) in rows(
        f"SELECT seq FROM read_parquet('{out}/raw/**/*.parquet') UNION "
        f"SELECT seq FROM read_parquet('{out}/events/**/*.parquet') ORDER BY seq")]
    journaled = summary.storage.frames
    assert journaled > 0 and published == list(range(1, journaled + 1))
    # what was read from the socket is either in raw now or counted as lost, never both
    [(in_raw,)] = rows(f"SELECT count(*) FROM read_parquet('{out}/raw/**/*.parquet') "
                       "WHERE direction = 'in'")
    assert summary.not_journaled > 0
    assert summary.frames_in == in_raw + summary.not_journaled


def test_the_status_line_shows_a_storage_error_while_it_lasts(tmp_path: Path) -> None:
    """A disk that fills and frees again: the status line says ERROR while storage is
    retrying, and stops saying it once storage has recovered."""
    from recorder.redact import Redactor
    from recorder.runner import Recorder
    from recorder.status import StatusReporter
    from recorder.storage import Storage, StorageOptions, StorageStats
    from tests.recording import make_config, record_while
    from tests.storage_frames import FullDisk

    out, screen = tmp_path / "data", io.StringIO()
    status = StatusReporter(screen, tty=True, columns=lambda: 1000)
    status.interval = 0.05
    disk = FullDisk(budget=10**12)

    def storage(options: StorageOptions, redactor: Redactor) -> Storage:
        return Storage(replace(options, retry_min_seconds=0.05, retry_max_seconds=0.1),
                       redactor, opener=disk)

    def lines() -> list[str]:
        return [line.strip() for line in screen.getvalue().split("\r") if line.strip()]

    async def main() -> None:
        async with SimGateway(SimOptions(seed=8, hb_interval=0.5, update_interval=0.1)) as gw:
            config = make_config(gw, out, smd=("265598",), orders=True, pnl=True)

            async def scenario(rec: Recorder) -> None:
                def stats() -> StorageStats:
                    return rec.storage_stats or StorageStats()

                await _streaming(gw)
                await gw.wait_for(lambda: stats().frames > 0, timeout(10))
                disk.budget = 0
                await gw.wait_for(lambda: any("ERROR" in line for line in lines()), timeout(10))
                disk.budget = 10**12
                await gw.wait_for(lambda: stats().failing is None, timeout(10))
                shown = len(lines())
                await gw.wait_for(lambda: len(lines()) > shown + 2, timeout(10))

            await record_while(config, scenario, storage=storage, status=status)

    asyncio.run(main())
    shown = lines()
    failing = [line for line in shown if "ERROR" in line]
    assert failing and (
        " | ERROR journal write: OSError: [Errno 28] No space left on device | " in failing[0])
    assert "ERROR" not in shown[-1], shown[-1]
