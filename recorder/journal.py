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
- A record is whole or it is not there: :class:`SegmentReader` takes the records whose CRC
  matches. Bad bytes with no whole record after them are a torn tail (what a kill -9 or a power
  cut leaves after the last fsync), reported and dropped. Bad bytes *followed* by whole records
  are damage (a flipped bit, a bad sector): the reader finds the next whole record and goes on,
  and reports the bytes it skipped, so one bad record costs that record, not the rest of the
  segment. It never raises for either.
- A failed append truncates the segment back to its last whole record, so later records are
  never hidden behind a torn one; if that truncate fails too, no later append writes anything
  until a truncate succeeds (each append tries again first, and raises while it cannot).
- Segment numbers only grow, across runs in the same folder: ``_journal/last`` remembers the
  highest number ever opened (written atomically before the segment is created).
- Payloads are stored as given; storage redacts them *before* they get here.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
Mapped = bytes | mmap.mmap  # a segment's bytes, read or mapped


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
        if entry.suffix == SUFFIX and entry.stem.isdigit() and entry.is_file():
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


def _decode_body(count: int, body: bytes) -> list[Frame] | None:
    """The frames of a record's body; None if its parts do not add up (a damaged ``count``,
    which the CRC does not cover)."""
    n8 = 8 * count
    pos = 3 * n8 + count
    if pos + 4 * count > len(body):
        return None
    lengths = _unarray("I", body[pos : pos + 4 * count])
    dirs = body[3 * n8 : 3 * n8 + count]
    if pos + 4 * count + sum(lengths) != len(body) or max(dirs, default=0) >= len(DIRECTIONS):
        return None
    ts = _unarray("q", body[0:n8])
    conn = _unarray("q", body[n8 : 2 * n8])
    seq = _unarray("q", body[2 * n8 : 3 * n8])
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
    damaged_bytes: int = 0  # bad bytes skipped *before* whole records (a bad header counts)


_RECORD_MAGIC_BYTES: Final = struct.pack("<I", RECORD_MAGIC)


def _record_at(data: Mapped, pos: int) -> tuple[list[Frame], int] | None:
    """``(frames, end)`` of the whole record at ``pos``, or None if there is none there."""
    if pos + _RECORD_HEAD.size > len(data):
        return None
    magic, count, body_len, crc = _RECORD_HEAD.unpack_from(data, pos)
    start = pos + _RECORD_HEAD.size
    end = start + body_len
    if magic != RECORD_MAGIC or end > len(data) or zlib.crc32(memoryview(data)[start:end]) != crc:
        return None
    frames = _decode_body(count, data[start:end])
    return None if frames is None else (frames, end)


def _next_record(data: Mapped, pos: int) -> int:
    """Where the next whole record after ``pos`` starts, or ``len(data)`` if none does."""
    while (pos := data.find(_RECORD_MAGIC_BYTES, pos + 1)) != -1:
        if _record_at(data, pos) is not None:
            return pos
    return len(data)


def _header(data: Mapped) -> tuple[int, str, int] | None:
    """``(created_ns, timezone, first record's offset)`` of a sound header, else None."""
    if len(data) < _FILE_HEAD.size or data[: len(FILE_MAGIC)] != FILE_MAGIC:
        return None
    _, _, created_ns, tz_len = _FILE_HEAD.unpack_from(data, 0)
    pos = _FILE_HEAD.size + tz_len
    try:
        timezone = data[_FILE_HEAD.size : pos].decode()
        ZoneInfo(timezone)  # a flipped bit in a zone's name makes a name of no zone
    except (UnicodeDecodeError, ValueError, ZoneInfoNotFoundError):
        return None
    return (created_ns, timezone, pos) if len(data) >= pos else None


def _torn_header(data: Mapped) -> bool:
    """Whether ``data`` is what a kill while the header was written can leave: its start."""
    if len(data) < _FILE_HEAD.size:
        return FILE_MAGIC.startswith(data[: len(FILE_MAGIC)])
    tz_len = _FILE_HEAD.unpack_from(data, 0)[3]
    return data[: len(FILE_MAGIC)] == FILE_MAGIC and len(data) < _FILE_HEAD.size + tz_len


def read_segment(path: Path) -> SegmentContents:
    """Every whole record of a segment at once (see :class:`SegmentReader`, which reads them
    a batch at a time)."""
    reader = SegmentReader(path)
    frames = [frame for batch in reader.batches(sys.maxsize) for frame in batch]
    return SegmentContents(reader.number, reader.created_ns, reader.timezone, frames,
                           reader.torn_bytes, reader.damaged_bytes)


class SegmentReader:
    """A segment's whole records, a batch of frames at a time (:meth:`batches`): a torn tail
    is measured and dropped, damage before whole records is measured and skipped (see the
    module's rules). The file is mapped, not read, and the pages of each batch handed out are
    dropped as the next is read, so a big segment costs about one batch of memory, not the
    whole segment and all its frames (1.8 GB for a segment of 608 MB, before).

    A segment whose header is damaged but which holds whole records has its records read as
    UTC, its creation time taken from its first frame (known once the first batch is out). One
    that holds no whole record is all torn tail if it is the start of a header (killed while it
    was being created), else all damage (not a journal segment at all). ``frames``,
    ``torn_bytes`` and ``damaged_bytes`` are whole once :meth:`batches` is exhausted."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            data: Mapped = (
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else b"")
        self._data = data
        self.number = int(path.stem)
        self.frames = 0
        self.torn_bytes = 0
        header = _header(data)
        if header is None:
            self._pos = _next_record(data, -1)
            self.created_ns, self.timezone, self.damaged_bytes = -1, "UTC", self._pos
            if self._pos == len(data):  # no whole record at all
                torn = _torn_header(data)
                self.created_ns = 0
                self.torn_bytes, self.damaged_bytes = (len(data), 0) if torn else (0, len(data))
        else:
            self.created_ns, self.timezone, self._pos = header
            self.damaged_bytes = 0

    def batches(self, size: int) -> Iterator[list[Frame]]:
        """The frames, in batches of at least ``size`` (the last may be smaller); once."""
        data, pos = self._data, self._pos
        batch: list[Frame] = []
        while pos < len(data):
            record = _record_at(data, pos)
            if record is None:
                after = _next_record(data, pos)
                if after == len(data):
                    self.torn_bytes = len(data) - pos  # nothing whole after it: a torn tail
                    break
                self.damaged_bytes += after - pos
                pos = after
                continue
            frames, pos = record
            if self.created_ns == -1:
                self.created_ns = frames[0].recv_ts_ns if frames else -1
            self.frames += len(frames)
            batch.extend(frames)
            if len(batch) >= size:
                yield batch
                batch = []
                _drop_pages(data, pos)
        if self.created_ns == -1:
            self.created_ns = 0
        if isinstance(data, mmap.mmap):
            data.close()
        self._data = b""
        if batch:
            yield batch


def _drop_pages(data: Mapped, end: int) -> None:
    """Let the kernel drop the mapped pages before ``end``: read, and not needed again."""
    if isinstance(data, mmap.mmap) and end >= mmap.PAGESIZE:
        data.madvise(mmap.MADV_DONTNEED, 0, end - end % mmap.PAGESIZE)


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
        with open(marker_tmp, "w") as marker:
            marker.write(str(number))
            marker.flush()
            os.fsync(marker.fileno())  # else a power cut can leave an empty `last`
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
