"""Recovery: what a killed run left is published exactly once, including after a real kill -9."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder import recover
from recorder.frames import Frame
from recorder.journal import list_segments, segment_path
from recorder.normalizer import normalize
from recorder.recover import FolderBusy, recover_dir
from recorder.storage import Pipeline
from tests.storage_frames import real_frames, rows

TZ = "America/New_York"
CHILD = Path(__file__).parent / "storage_child.py"


def raw_seqs(root: Path) -> list[int]:
    return [r[0] for r in rows(f"SELECT seq FROM '{root}/raw/*/*.parquet' ORDER BY seq")]


def counts(root: Path, tables: list[str]) -> dict[str, int]:
    return {t: rows(f"SELECT count(*) FROM '{root}/{t}/*/*.parquet'")[0][0] for t in tables}


def test_unpublished_segment_is_published_once(tmp_path: Path) -> None:
    frames = real_frames(500)
    pipe = Pipeline(tmp_path / "live", timezone=TZ)
    pipe.write(frames[:250])
    pipe.rotate()
    pipe.write(frames[250:])
    pipe.flush()
    # what a kill -9 would leave now: segment 2 journaled, its rows only in memory
    shutil.copytree(tmp_path / "live", tmp_path / "killed")
    pipe.close()
    killed = tmp_path / "killed"
    assert list_segments(killed / "_journal") == [2]
    report = recover_dir(killed)
    assert (report.segments, report.frames, report.torn_bytes) == (1, 250, 0)
    assert raw_seqs(killed) == [f.seq for f in frames]
    want = {t: v.num_rows for t, v in normalize(frames).items()}
    assert counts(killed, list(want)) == want
    assert recover_dir(killed).segments == 0  # a second recovery finds nothing
    assert counts(killed, list(want)) == want


def test_recovery_makes_new_folders_durable_before_it_deletes_the_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run killed before its first rotation leaves no table folder: recovery creates them,
    and the output folder's entries must be on disk (fsynced) before the journal segment that
    could rebuild them is deleted, or a power cut could leave neither."""
    pipe = Pipeline(tmp_path / "live", timezone=TZ)
    pipe.write(real_frames(100))
    pipe.flush()
    shutil.copytree(tmp_path / "live", tmp_path / "killed")
    pipe.close()
    killed = tmp_path / "killed"
    done: list[str] = []
    fsync_dir, unlink = recover.fsync_dir, Path.unlink

    def traced_fsync(folder: Path) -> None:
        done.append(f"fsync {folder.relative_to(tmp_path)}")
        fsync_dir(folder)

    def traced_unlink(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".jnl":
            done.append("delete segment")
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(recover, "fsync_dir", traced_fsync)
    monkeypatch.setattr(Path, "unlink", traced_unlink)
    assert recover_dir(killed).segments == 1
    assert "fsync killed" in done[: done.index("delete segment")]


def test_kill_in_the_middle_of_a_rotation(tmp_path: Path) -> None:
    frames = real_frames(300)
    pipe = Pipeline(tmp_path, timezone=TZ)
    pipe.write(frames)
    pipe.flush()
    segment = segment_path(tmp_path / "_journal", 1)
    saved = segment.read_bytes()
    pipe.close()
    # as if killed after some renames: the segment is still there, one file is missing,
    # and a stray partial lies around
    segment.write_bytes(saved)
    lost = next((tmp_path / "market_data").glob("*/*.parquet"))
    lost.unlink()
    (tmp_path / "raw" / ".writing").mkdir(exist_ok=True)
    (tmp_path / "raw" / ".writing" / "date=2026-04-30~raw-100000-1.parquet.partial").write_bytes(
        b"x")
    # and one where earlier versions wrote them
    (tmp_path / "raw" / "date=2026-04-30" / "raw-100000-1.parquet.partial").write_bytes(b"x")
    report = recover_dir(tmp_path)
    assert (report.files, report.partials_removed) == (1, 2)
    assert lost.exists()
    want = {t: v.num_rows for t, v in normalize(frames).items()}
    assert counts(tmp_path, list(want)) == want
    assert list(tmp_path.glob("**/*.partial")) == []


def test_torn_tail_is_dropped(tmp_path: Path) -> None:
    frames = real_frames(100)
    pipe = Pipeline(tmp_path / "live", timezone=TZ)
    pipe.write(frames[:60])
    pipe.write(frames[60:])
    pipe.flush()
    shutil.copytree(tmp_path / "live", tmp_path / "killed")
    pipe.close()
    seg = segment_path(tmp_path / "killed" / "_journal", 1)
    seg.write_bytes(seg.read_bytes()[:-7])  # the kill tore the last record
    report = recover_dir(tmp_path / "killed")
    assert report.frames == 60 and report.torn_bytes > 0
    assert raw_seqs(tmp_path / "killed") == [f.seq for f in frames[:60]]


def test_a_damaged_segment_publishes_what_is_whole_and_is_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One flipped byte in the first of three records: the other two are published, and the
    segment is moved to ``_journal/damaged/`` with a warning. It used to be read as a torn tail
    from there on: nothing published, and the segment deleted."""
    frames = real_frames(90)
    pipe = Pipeline(tmp_path / "live", timezone=TZ)
    for i in range(0, 90, 30):
        pipe.write(frames[i : i + 30])
    pipe.flush()
    shutil.copytree(tmp_path / "live", tmp_path / "killed")
    pipe.close()
    killed = tmp_path / "killed"
    seg = segment_path(killed / "_journal", 1)
    data = bytearray(seg.read_bytes())
    data[len(data) // 6] ^= 0x01  # inside the first record's body
    seg.write_bytes(bytes(data))
    report = recover_dir(killed)
    assert (report.segments, report.frames, report.torn_bytes, report.kept) == (1, 60, 0, 1)
    assert report.damaged_bytes > 0
    assert raw_seqs(killed) == [f.seq for f in frames[30:]]
    kept = killed / "_journal" / "damaged" / seg.name
    assert kept.read_bytes() == bytes(data) and not seg.exists()
    assert recover.describe(report) == (
        f"recovered 60 frames from 1 journal segment(s), published {report.files} file(s), "
        f"skipped {report.damaged_bytes:,} damaged bytes and kept 1 damaged segment(s) in "
        "_journal/damaged/")
    assert f"journal segment 1 was damaged: {report.damaged_bytes:,} bad bytes skipped" in (
        caplog.text)
    assert recover_dir(killed).segments == 0  # kept aside, not recovered again
    assert raw_seqs(killed) == [f.seq for f in frames[30:]]


def test_recover_refuses_a_folder_being_recorded(tmp_path: Path) -> None:
    pipe = Pipeline(tmp_path, timezone=TZ)
    pipe.write(real_frames(5))
    try:
        recover_dir(tmp_path)
    except FolderBusy as exc:
        assert "in use by another recorder" in str(exc)
    else:
        raise AssertionError("recover should refuse a live folder")
    pipe.close()
    assert recover_dir(tmp_path).segments == 0


def fed(side: Path) -> list[tuple[int, int]]:
    """(seq, recv_ts) of every frame handed to ``put``."""
    out = []
    for line in side.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            out.append((int(parts[0]), int(parts[1])))
    return out


def accepted_before(side: Path, deadline_ns: int) -> int:
    """The highest seq whose ``put`` had returned by ``deadline_ns``."""
    last = 0
    for line in side.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "accepted" and int(parts[2]) <= deadline_ns:
            last = max(last, int(parts[1]))
    return last


def test_sigkill_at_random_moments_loses_only_the_last_flush(tmp_path: Path) -> None:
    flush, rotate = 0.2, 0.3
    rng = random.Random(20260430)
    root = tmp_path / "data"
    first_seq = 0
    every_sent: set[int] = set()
    for run in range(4):
        side = tmp_path / f"fed{run}.txt"  # one per run: each kill has its own deadline
        proc = subprocess.Popen([sys.executable, str(CHILD), str(root), str(side),
                                 str(first_seq), str(flush), str(rotate)])
        deadline = time.monotonic() + 30
        while not (side.exists() and "ready" in side.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        stop_at = time.monotonic() + rng.uniform(0.3, 1.2)
        while time.monotonic() < stop_at:
            if any(root.glob("**/*.parquet")):  # once a file exists, the glob always reads
                rows(f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')")
            time.sleep(0.05)
        killed_at = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        recover_dir(root)
        got = raw_seqs(root)
        assert len(got) == len(set(got)), "a frame was published twice"
        sent = fed(side)
        last = accepted_before(side, killed_at - int(flush * 1e9))
        must_have = {s for s, _ in sent if s <= last}
        assert must_have  # the kill came well after recording started
        assert must_have <= set(got), f"lost {len(must_have - set(got))} frames"
        every_sent |= {s for s, _ in sent}
        assert set(got) <= every_sent
        first_seq = max(s for s, _ in sent) + 1
    # every table holds exactly the rows of the frames in raw, once
    payloads = {r[0]: r[1] for r in rows(f"SELECT seq, payload FROM '{root}/raw/*/*.parquet'")}
    frames = [Frame(0, 1, s, "in", p) for s, p in sorted(payloads.items())]
    want = {t: v.num_rows for t, v in normalize(frames).items()}
    assert counts(root, list(want)) == want
    assert list_segments(root / "_journal") == []
    assert list(root.glob("**/*.partial")) == []
