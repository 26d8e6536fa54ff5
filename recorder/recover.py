"""Crash recovery: publish what a killed run left, exactly once.

What a kill -9 can leave in ``DIR``:
- journal segments (``_journal/<n>.jnl``) whose rows were never published, or only partly
  (the kill came in the middle of a rotation's renames);
- ``*.parquet.partial`` files, never globbed by readers, now useless;
- a compaction caught mid-swap (handled by :mod:`recorder.compact`).

Rules and invariants:
- A segment is re-normalized from its whole records (a torn tail is dropped: those frames
  never reached an fsync) and, for each (table, date), its file is published only if a file of
  that name does not exist yet; only then is the segment deleted. The file name is a function
  of the segment alone (see :mod:`recorder.writer`), so a row is never published twice.
- A segment with damage inside (bad bytes before whole records, see :mod:`recorder.journal`)
  is published all the same, from the records around the damage, and then moved to
  ``_journal/damaged/`` instead of deleted, with a warning: the bad bytes are unreadable, but
  whoever looks into it has them.
- Recovery holds the folder's writer lock (:class:`FolderLock`): it never runs beside a live
  recording of the same folder, whose segments and partial files are not leftovers.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import pyarrow as pa

from recorder.frames import Frame
from recorder.journal import (
    JOURNAL_DIR,
    Opener,
    SegmentReader,
    default_opener,
    fsync_dir,
    list_segments,
    segment_path,
)
from recorder.writer import (
    PARTIAL,
    WRITING,
    PartialFile,
    file_metadata,
    file_name,
    hhmmss,
    partition_dir,
    split_by_date,
)

Normalize = Callable[[Sequence[Frame]], dict[str, pa.Table]]
log = logging.getLogger(__name__)

#: Inside ``_journal/``: segments recovery found damaged, kept after publishing what they held.
DAMAGED_DIR: Final = "damaged"
REPLAY_CHUNK: Final = 10_000  # frames normalized at a time (see publish_segment)


def default_normalize() -> Normalize:
    from recorder.normalizer import normalize

    return normalize


class FolderBusy(RuntimeError):
    """Another process is recording into (or recovering) the same folder."""


class FolderLock:
    """An exclusive ``flock`` on ``DIR/_journal/lock``; released by the kernel on a kill."""

    def __init__(self, root: Path) -> None:
        self.path = root / JOURNAL_DIR / "lock"
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            raise FolderBusy(
                f"{self.path.parent.parent} is in use by another recorder process"
            ) from None
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def held_elsewhere(self) -> bool:
        """Whether a recorder (or recovery) holds the folder now; creates nothing."""
        try:
            with open(self.path, "rb") as file:
                fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False  # no lock file: nothing has recorded here
        return False


@dataclass(frozen=True)
class RecoveryReport:
    segments: int = 0  # journal segments found and published
    frames: int = 0  # frames read back from them
    files: int = 0  # parquet files published
    torn_bytes: int = 0  # bytes of torn tails dropped
    partials_removed: int = 0
    compactions: int = 0  # interrupted compactions finished or undone
    damaged_bytes: int = 0  # bad bytes skipped inside segments (not a torn tail)
    kept: int = 0  # damaged segments moved to _journal/damaged/ instead of deleted

    def __add__(self, other: RecoveryReport) -> RecoveryReport:
        return RecoveryReport(*(a + b for a, b in zip(_values(self), _values(other),
                                                      strict=True)))


def _values(report: RecoveryReport) -> tuple[int, ...]:
    return (report.segments, report.frames, report.files, report.torn_bytes,
            report.partials_removed, report.compactions, report.damaged_bytes, report.kept)


def publish_segment(root: Path, number: int, normalize: Normalize,
                    opener: Opener = default_opener) -> RecoveryReport:
    """Publish the missing files of segment ``number``, then delete the segment.

    ``REPLAY_CHUNK`` frames are read and normalized at a time, each one a row group of the
    files: a segment of 600,000 frames (122 MB, 300 s at 2,000 frames/s) peaked at 147 MB of
    memory in 6.1 s this way, 259 MB at 10,000 frames a chunk with the whole file read, and
    467 MB in 7.1 s at 50,000 with all its frames read first."""
    journal_dir = root / JOURNAL_DIR
    path = segment_path(journal_dir, number)
    contents = SegmentReader(path)
    files: dict[tuple[str, str], PartialFile | None] = {}
    metadata = file_metadata()
    published = 0
    try:
        for chunk in contents.batches(REPLAY_CHUNK):
            # known once a frame is read, if the header was damaged
            name_time = hhmmss(contents.created_ns, contents.timezone)
            for table, rows in normalize(chunk).items():
                for date, part_rows in split_by_date(rows, contents.timezone).items():
                    key = (table, date)
                    if key not in files:
                        final = partition_dir(root, table, date) / file_name(
                            table, name_time, number)
                        exists = final.exists()
                        files[key] = None if exists else PartialFile(
                            final, part_rows.schema, opener, metadata)
                    part = files[key]
                    if part is not None:
                        part.write(part_rows)
        finished = [p for p in files.values() if p is not None and p.finish()]
        for part in finished:
            part.publish()
            published += 1
        for folder in {p.final_path.parent for p in finished}:
            fsync_dir(folder)
            fsync_dir(folder.parent)
        if finished:  # DIR/<table> may be new: its entry must be durable before the segment goes
            fsync_dir(root)
    except BaseException:
        for part in files.values():
            if part is not None and not part.final_path.exists():
                part.abort()
        raise
    kept = 0
    if contents.damaged_bytes:  # what was skipped may matter to someone: keep it, out of the way
        damaged_dir = journal_dir / DAMAGED_DIR
        damaged_dir.mkdir(exist_ok=True)
        path.replace(damaged_dir / path.name)
        fsync_dir(damaged_dir)
        kept = 1
        log.warning("journal segment %s was damaged: %s bad bytes skipped (the frames in them "
                    "are lost), %s frames around them published; the segment is kept as %s",
                    number, f"{contents.damaged_bytes:,}", f"{contents.frames:,}",
                    damaged_dir / path.name)
    else:
        path.unlink()
    fsync_dir(journal_dir)
    return RecoveryReport(segments=1, frames=contents.frames, files=published,
                          torn_bytes=contents.torn_bytes, damaged_bytes=contents.damaged_bytes,
                          kept=kept)


def remove_partials(root: Path) -> int:
    """Delete every ``*.parquet.partial`` under the table folders (a killed run's leftovers:
    in ``.writing``, or in the day's folder, where earlier versions wrote them)."""
    removed = 0
    for pattern in (f"*/{WRITING}/*.parquet{PARTIAL}", f"*/date=*/*.parquet{PARTIAL}"):
        for path in root.glob(pattern):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


Progress = Callable[[str], None]
"""Told a line for a person as a long step starts (the CLI shows it on stderr)."""


def quiet(line: str) -> None:
    """A :data:`Progress` that tells no one."""


def recover_unlocked(root: Path, normalize: Normalize | None = None,
                     opener: Opener = default_opener,
                     progress: Progress = quiet) -> RecoveryReport:
    """:func:`recover_dir` for a caller that already holds the folder lock."""
    from recorder.compact import recover_compactions

    report = RecoveryReport(compactions=recover_compactions(root))
    segments = list_segments(root / JOURNAL_DIR)
    if segments:
        norm = normalize or default_normalize()
        for i, number in enumerate(segments, 1):
            size = segment_path(root / JOURNAL_DIR, number).stat().st_size
            progress(f"journal segment {number} ({i} of {len(segments)}, {size:,} bytes)")
            report = report + publish_segment(root, number, norm, opener)
    removed = remove_partials(root)
    return report + RecoveryReport(partials_removed=removed)


def recover_dir(root: Path, normalize: Normalize | None = None,
                opener: Opener = default_opener, progress: Progress = quiet) -> RecoveryReport:
    """Publish whatever a killed run left in ``root``, telling ``progress`` as each journal
    segment starts; raises :class:`FolderBusy` if a recording is running there."""
    root = Path(root)
    if not root.is_dir():
        return RecoveryReport()
    lock = FolderLock(root)
    lock.acquire()
    try:
        return recover_unlocked(root, normalize, opener, progress)
    finally:
        lock.release()


def describe(report: RecoveryReport) -> str:
    """One line for a person."""
    if not (report.segments or report.partials_removed or report.compactions):
        return "nothing to recover"
    parts = [f"recovered {report.frames:,} frames from {report.segments} journal segment(s)",
             f"published {report.files} file(s)"]
    if report.torn_bytes:
        parts.append(f"dropped a torn tail of {report.torn_bytes:,} bytes")
    if report.damaged_bytes:
        parts.append(f"skipped {report.damaged_bytes:,} damaged bytes and kept "
                     f"{report.kept} damaged segment(s) in {JOURNAL_DIR}/{DAMAGED_DIR}/")
    if report.partials_removed:
        parts.append(f"removed {report.partials_removed} partial file(s)")
    if report.compactions:
        parts.append(f"finished {report.compactions} interrupted compaction(s)")
    return ", ".join(parts)
