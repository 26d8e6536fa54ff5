"""The append-only journal: every frame, in order, on disk before it becomes a row.

The journal lives in ``DIR/_journal/`` and is cut into numbered segments
(``<n:012d>.jnl``). A segment starts with a header (magic, its number, when it was created,
the output timezone) and then holds *batch records*: one record per :meth:`Segment.append`,
written with a single ``write()`` so a batch of thousands of frames costs one system call.

Record layout (little-endian)::

    u32 MAGIC | u32 count | u32 body_len | u32 crc32(body) | body
    body = i64 recv_ts[count] | i64 conn_id[count] | i64 seq[count] | u8 direction[count]
           | u32 payload_len[count] | payloads

Rules and invariants:
- A record is whole or it is not there: :func:`read_segment` stops at the first record whose
  header or body is short or whose CRC does not match (the torn tail a kill -9 leaves) and
  reports it; it never raises for a torn tail.
- A failed append truncates the segment back to its last whole record, so later records are
  never hidden behind a torn one; if that truncate fails too, no later append writes anything
  until a truncate succeeds (each append tries again first, and raises while it cannot).
- Segment numbers only grow, across runs in the same folder: ``_journal/last`` remembers the
  highest number ever opened (written atomically before the segment is created).
- Payloads are stored as given; storage redacts them *before* they get here.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from recorder.frames import DIRECTIONS, Frame

JOURNAL_DIR: Final = "_journal"
SUFFIX: Final = ".jnl"
FILE_MAGIC: Final = b"IBKRJNL1"
RECORD_MAGIC: Final = 0x4A524543
_FILE_HEAD = struct.Struct("<8sQqH")
_RECORD_HEAD = struct.Struct("<IIII")
_DIRECTION_CODE: Final = {d: i for i, d in enumerate(DIRECTIONS)}
_LITTLE: Final = sys.byteorder == "little"

Opener = Callable[[Path, str], IO[bytes]]


def default_opener(path: Path, mode: str) -> IO[bytes]:
    """Open ``path`` unbuffered in binary ``mode``: every ``write()`` is one system call."""
    return open(path, mode, buffering=0)  # noqa: SIM115 - the caller owns the file


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_path(journal_dir: Path, number: int) -> Path:
    return journal_dir / f"{number:012d}{SUFFIX}"


def list_segments(journal_dir: Path) -> list[int]:
    """Numbers of the segments on disk, oldest first."""
    if not journal_dir.is_dir():
        return []
    found = []
    for entry in journal_dir.iterdir():
        if entry.suffix == SUFFIX and entry.stem.isdigit():
            found.append(int(entry.stem))
    return sorted(found)


def next_segment_number(journal_dir: Path) -> int:
    """One more than any segment number this folder has ever used."""
    last = 0
    marker = journal_dir / "last"
    if marker.is_file():
        text = marker.read_text().strip()
        last = int(text) if text.isdigit() else 0
    return max([last, *list_segments(journal_dir)]) + 1


def _array(typecode: str, values: Sequence[int]) -> bytes:
    arr = array(typecode, values)
    if not _LITTLE:
        arr.byteswap()
    return arr.tobytes()


def _unarray(typecode: str, data: bytes) -> list[int]:
    arr = array(typecode)
    arr.frombytes(data)
    if not _LITTLE:
        arr.byteswap()
    return arr.tolist()


def encode_batch(frames: Sequence[Frame]) -> bytes:
    """One journal record holding ``frames``."""
    payloads = [f.payload for f in frames]
    body = b"".join(
        (
            _array("q", [f.recv_ts_ns for f in frames]),
            _array("q", [f.conn_id for f in frames]),
            _array("q", [f.seq for f in frames]),
            bytes([_DIRECTION_CODE[f.direction] for f in frames]),
            _array("I", [len(p) for p in payloads]),
            *payloads,
        )
    )
    head = _RECORD_HEAD.pack(RECORD_MAGIC, len(frames), len(body), zlib.crc32(body))
    return head + body


def _decode_body(count: int, body: bytes) -> list[Frame]:
    n8 = 8 * count
    ts = _unarray("q", body[0:n8])
    conn = _unarray("q", body[n8 : 2 * n8])
    seq = _unarray("q", body[2 * n8 : 3 * n8])
    dirs = body[3 * n8 : 3 * n8 + count]
    pos = 3 * n8 + count
    lengths = _unarray("I", body[pos : pos + 4 * count])
    pos += 4 * count
    frames = []
    for i in range(count):
        end = pos + lengths[i]
        frames.append(Frame(ts[i], conn[i], seq[i], DIRECTIONS[dirs[i]], body[pos:end]))
        pos = end
    return frames


@dataclass(frozen=True)
class SegmentContents:
    number: int
    created_ns: int
    timezone: str
    frames: list[Frame]
    torn_bytes: int  # bytes after the last whole record (a kill's torn tail), dropped


def read_segment(path: Path) -> SegmentContents:
    """Every whole record of a segment; a torn or corrupt tail is measured and dropped."""
    data = path.read_bytes()
    number = int(path.stem)
    if len(data) < _FILE_HEAD.size or not data.startswith(FILE_MAGIC):
        return SegmentContents(number, 0, "UTC", [], len(data))  # killed while creating it
    _, _, created_ns, tz_len = _FILE_HEAD.unpack_from(data, 0)
    pos = _FILE_HEAD.size + tz_len
    if len(data) < pos:
        return SegmentContents(number, created_ns, "UTC", [], len(data))
    timezone = data[_FILE_HEAD.size : pos].decode()
    frames: list[Frame] = []
    while pos + _RECORD_HEAD.size <= len(data):
        magic, count, body_len, crc = _RECORD_HEAD.unpack_from(data, pos)
        start = pos + _RECORD_HEAD.size
        body = data[start : start + body_len]
        if magic != RECORD_MAGIC or len(body) != body_len or zlib.crc32(body) != crc:
            break
        frames.extend(_decode_body(count, body))
        pos = start + body_len
    return SegmentContents(number, created_ns, timezone, frames, len(data) - pos)


class Segment:
    """One open journal segment. Create with :meth:`create`; append, sync, close."""

    def __init__(self, path: Path, number: int, created_ns: int, timezone: str,
                 file: IO[bytes], size: int) -> None:
        self.path = path
        self.number = number
        self.created_ns = created_ns
        self.timezone = timezone
        self._file = file
        self._size = size
        self._dirty = False
        self._torn = False  # bytes of a failed append are still after the last whole record
        self.frames = 0

    @classmethod
    def create(cls, journal_dir: Path, number: int, created_ns: int, timezone: str,
               opener: Opener = default_opener) -> Segment:
        """Record ``number`` in ``_journal/last``, then create the segment file durably."""
        journal_dir.mkdir(parents=True, exist_ok=True)
        marker_tmp = journal_dir / "last.tmp"
        marker_tmp.write_text(str(number))
        os.replace(marker_tmp, journal_dir / "last")
        path = segment_path(journal_dir, number)
        file = opener(path, "xb")
        tz = timezone.encode()
        head = _FILE_HEAD.pack(FILE_MAGIC, number, created_ns, len(tz)) + tz
        try:
            file.write(head)
            os.fsync(file.fileno())
            fsync_dir(journal_dir)
        except BaseException:
            file.close()
            path.unlink(missing_ok=True)
            raise
        return cls(path, number, created_ns, timezone, file, len(head))

    def append(self, frames: Sequence[Frame]) -> int:
        """Write ``frames`` as one record; on error the segment is cut back and it raises."""
        if not frames:
            return 0
        if self._torn:
            self._truncate()  # raises while the torn bytes cannot be cut off: nothing is written
        blob = encode_batch(frames)
        try:
            written = self._file.write(blob)
            if written is not None and written != len(blob):  # a raw file may write short
                view = memoryview(blob)[written:]
                while view:
                    n = self._file.write(view)
                    if not n:
                        raise OSError("short write to the journal")
                    view = view[n:]
        except BaseException:
            self._torn = True
            try:
                self._truncate()
            except OSError:
                pass  # the next append tries again before it writes
            raise
        self._size += len(blob)
        self._dirty = True
        self.frames += len(frames)
        return len(blob)

    def _truncate(self) -> None:
        """Cut the segment back to its last whole record (raises ``OSError`` if it cannot)."""
        self._file.truncate(self._size)
        self._file.seek(self._size)
        self._torn = False

    @property
    def size(self) -> int:
        return self._size

    def sync(self) -> None:
        """fsync what was appended since the last sync (cheap when nothing was)."""
        if self._dirty:
            os.fsync(self._file.fileno())
            self._dirty = False

    def close(self) -> None:
        """Sync and close; safe to call twice."""
        if self._file.closed:
            return
        try:
            self.sync()
        finally:
            self._file.close()
