"""``recorder demo``: it replaces only an earlier demo's folder, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from click.testing import CliRunner

from recorder.cli import cli
from recorder.commands.demo import DEMO_MARK
from recorder.recover import FolderLock
from tests.recording import timeout
from tests.storage_frames import rows
from tests.test_record_cli import _record


def demo_folder(out: Path) -> None:
    """A folder as an earlier ``recorder demo`` left it."""
    out.mkdir(parents=True)
    (out / DEMO_MARK).write_text("made by recorder demo; safe to delete\n")
    (out / "raw").mkdir()


def demo(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["demo", *args])
    return result.exit_code, result.output


def test_a_folder_a_real_recording_went_into_is_no_longer_replaced(tmp_path: Path) -> None:
    """`recorder record` into a demo folder makes it a real recording: the next demo used to
    delete it, marker and all."""
    out = tmp_path / "demo-data"
    demo_folder(out)
    code, err = _record("--out", str(out), "--duration", "1s", "--quiet")
    assert code == 0, err
    assert not (out / DEMO_MARK).exists()
    code, text = demo("--out", str(out), "--seconds", "1")
    assert code == 1
    assert text.strip() == (f"Error: {out} already holds files that are not a demo recording; "
                            "choose --out DIR")
    assert (out / "raw").is_dir() and (out / "_journal").is_dir()


def test_a_demo_folder_a_recorder_is_using_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "demo-data"
    demo_folder(out)
    lock = FolderLock(out)
    lock.acquire()  # as a recorder in another process would hold it
    try:
        code, text = demo("--out", str(out), "--seconds", "1")
    finally:
        lock.release()
    assert code == 1
    assert text.strip() == f"Error: {out} is in use by a recorder process; choose --out DIR"
    assert (out / DEMO_MARK).exists() and (out / "raw").is_dir()


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    code, text = demo("--out", str(afile), "--seconds", "1")
    assert code == 1 and text.strip() == f"Error: {afile} is a file, not a folder; choose --out DIR"
    code, text = demo("--out", str(afile / "demo"), "--seconds", "1")
    assert code == 1 and text.strip() == f"Error: cannot write {afile / 'demo'}: Not a directory"


def test_ctrl_c_stops_the_demo_cleanly_with_its_summary(tmp_path: Path) -> None:
    """Ctrl-C used to abort the demo ("Aborted!", exit 1) and leave its journal unpublished."""
    out = tmp_path / "demo-data"

    async def main() -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "recorder", "demo", "--out", str(out), "--seconds", "120",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stderr is not None
            line = await asyncio.wait_for(proc.stderr.readline(), timeout(30))
            assert b"simulated gateway on" in line, line
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout(30)
            while not list(out.glob("_journal/*.jnl")):  # the recording has begun
                assert loop.time() < deadline, "the demo never started recording"
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout(30))
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, stdout.decode(), stderr.decode()

    code, stdout, stderr = asyncio.run(main())
    assert code == 0, stderr
    assert "stopped by signal" in stdout
    assert "Spread per conid" in stdout
    assert not list(out.rglob("*.jnl")) and not list(out.rglob("*.partial"))
    assert rows(f"SELECT count(*) > 0 FROM '{out}/raw/*/*.parquet'") == [(True,)]


def test_seconds_that_are_not_a_number_of_seconds_are_refused(tmp_path: Path) -> None:
    for bad in ("nan", "inf", "0.5", "3601"):
        code, text = demo("--out", str(tmp_path / "demo"), "--seconds", bad)
        assert code == 2 and "Invalid value for '--seconds'" in text, (bad, text)
    assert not (tmp_path / "demo").exists()
