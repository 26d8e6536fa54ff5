"""Real captured frames as :class:`Frame` lists, and small readers, for the storage tests."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import IO, cast

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.frames import Frame
from recorder.journal import default_opener

FRAMES_DIR = Path(__file__).resolve().parent / "fixtures" / "frames"
# 2026-04-30 14:00:00 UTC = 10:00 New York
T0 = 1_777_557_600_000_000_000


def real_payloads() -> list[bytes]:
    """Every captured frame's exact wire text, in a stable order."""
    out = []
    for path in sorted(FRAMES_DIR.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line)["frame"].encode())
    return out


def real_frames(count: int | None = None, start_ns: int = T0, step_ns: int = 1_000_000,
                first_seq: int = 1) -> list[Frame]:
    """``count`` frames cycling through the real ones, ``step_ns`` apart, seq rising."""
    payloads = real_payloads()
    n = len(payloads) if count is None else count
    return [Frame(start_ns + i * step_ns, 1, first_seq + i, "in", payloads[i % len(payloads)])
            for i in range(n)]


def rows(sql: str) -> list[tuple]:
    with duckdb.connect() as con:
        con.execute("SET TimeZone='UTC'")
        return con.execute(sql).fetchall()


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.glob("**/*.parquet"))


class FullDisk:
    """A file-system seam: files opened by it raise ENOSPC once ``budget`` bytes are spent
    (across all files), until ``budget`` is raised again, or, with ``space_after``, until that
    many writes have failed (space comes back then, without a clock). The next
    ``truncates_failing`` truncates raise EIO (a disk that fails more than one way)."""

    def __init__(self, budget: int, space_after: int | None = None) -> None:
        self.budget = budget
        self.failures = 0
        self.space_after = space_after
        self.truncates_failing = 0

    def __call__(self, path: Path, mode: str) -> IO[bytes]:
        return cast(IO[bytes], _LimitedFile(default_opener(path, mode), self))  # duck-typed


class _LimitedFile:
    def __init__(self, inner: IO[bytes], disk: FullDisk) -> None:
        self._inner = inner
        self._disk = disk

    def write(self, data: bytes | memoryview) -> int:
        n = len(data)
        if n > self._disk.budget:
            self._disk.failures += 1
            # like a real full disk: part of the data may land before the error
            part = max(0, self._disk.budget)
            if part:
                self._inner.write(bytes(data[:part]))
                self._disk.budget = 0
            if self._disk.space_after is not None and self._disk.failures >= self._disk.space_after:
                self._disk.budget = 10**12
            raise OSError(errno.ENOSPC, "No space left on device")
        self._disk.budget -= n
        written = self._inner.write(data)
        return n if written is None else written

    def truncate(self, size: int) -> int:
        if self._disk.truncates_failing > 0:
            self._disk.truncates_failing -= 1
            raise OSError(errno.EIO, "Input/output error")
        return self._inner.truncate(size)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


# -- files that are not what a table's partition should hold (bad-input tests) ------------------


def garbage_file(path: Path) -> None:
    path.write_bytes(b"garbage\n")


def empty_file(path: Path) -> None:
    path.write_bytes(b"")


def times_as_text_file(path: Path) -> None:
    """Parquet, but ``recv_ts`` as text: DuckDB's own error does not name the file."""
    pq.write_table(pa.table({"recv_ts": ["yesterday"], "seq": [1]}), path)
