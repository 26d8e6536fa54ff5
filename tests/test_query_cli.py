"""recorder query / summary / compact / recover through the real click commands."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from recorder.cli import cli
from recorder.storage import Pipeline
from tests.storage_frames import T0, real_frames, rows


def recording(root: Path, frames_per_segment: int = 100) -> list:
    frames = real_frames(300)
    pipe = Pipeline(root, timezone="America/New_York", clock=lambda: T0)
    for i in range(0, len(frames), frames_per_segment):
        pipe.write(frames[i : i + frames_per_segment])
        pipe.rotate()
    pipe.close()
    return frames


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def run_apart(*args: str) -> tuple[int, str, str]:
    """exit code, stdout, stderr"""
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_query_formats(tmp_path: Path) -> None:
    frames = recording(tmp_path)
    sql = "SELECT seq, recv_ts, direction FROM raw ORDER BY seq LIMIT 2"
    code, out = run("query", str(tmp_path), sql, "--format", "csv")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["seq", "recv_ts", "direction"], ["1", "2026-04-30 14:00:00+00:00", "in"],
        ["2", "2026-04-30 14:00:00.001000+00:00", "in"]]
    code, out = run("query", str(tmp_path), "SELECT seq, payload FROM raw WHERE seq = 1",
                    "--format", "json")
    assert code == 0 and json.loads(out) == [{"seq": 1, "payload": frames[0].payload.decode()}]
    code, out = run("query", str(tmp_path), "SELECT count(*) AS n FROM raw")
    assert code == 0 and "300" in out
    target = tmp_path / "out.parquet"
    code, _ = run("query", str(tmp_path), "SELECT seq FROM raw", "--format", "parquet",
                  "--output", str(target))
    assert code == 0 and rows(f"SELECT count(*), max(seq) FROM '{target}'") == [(300, 300)]
    code, out = run("query", str(tmp_path), "SELECT 1", "--format", "parquet")
    assert code == 2 and "--output" in out
    code, out = run("query", str(tmp_path), "SELECT nope FROM raw")
    assert code == 1 and "nope" in out and "Traceback" not in out


def test_summary_text_json_and_empty(tmp_path: Path) -> None:
    recording(tmp_path / "data")
    code, out = run("summary", str(tmp_path / "data"), "--json")
    assert code == 0
    data = json.loads(out)
    raw = next(t for t in data["tables"] if t["table"] == "raw")
    assert (raw["rows"], raw["files"]) == (300, 3)
    code, out = run("summary", str(tmp_path / "data"))
    assert code == 0 and "market_data" in out
    (tmp_path / "empty").mkdir()
    code, out = run("summary", str(tmp_path / "empty"))
    assert code == 1 and "no recording here" in out and len(out.strip().splitlines()) == 1


def test_compact_and_recover_commands(tmp_path: Path) -> None:
    recording(tmp_path)
    sizes = sum(p.stat().st_size for p in (tmp_path / "raw").glob("*/*.parquet"))
    code, out, err = run_apart("compact", str(tmp_path), "--date", "2026-04-30")
    assert code == 0 and "raw: 3 files -> 1 (300 rows)" in out
    assert "... raw: merging 3 files" not in out  # progress goes to stderr, results to stdout
    assert f"... raw: merging 3 files ({sizes:,} bytes)" in err.splitlines()
    assert len(list((tmp_path / "raw").glob("*/*.parquet"))) == 1
    code, out = run("recover", str(tmp_path))
    assert code == 0 and out.strip() == "nothing to recover"
    live = tmp_path / "live"
    pipe = Pipeline(live, timezone="UTC")
    pipe.write(real_frames(10))
    pipe.flush()
    shutil.copytree(live, tmp_path / "killed")
    pipe.close()
    code, out, err = run_apart("recover", str(tmp_path / "killed"))
    assert code == 0 and "recovered 10 frames from 1 journal segment(s)" in out
    assert err.startswith("... journal segment 1 (1 of 1, ") and err.endswith(" bytes)\n")
    assert rows(f"SELECT count(*) FROM '{tmp_path}/killed/raw/*/*.parquet'") == [(10,)]
