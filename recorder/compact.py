"""Compaction: one sorted file per table per day, swapped in without a visible seam.

For each table, the day's published files (``DIR/<table>/date=D/*.parquet``) are merged,
sorted by ``recv_ts`` (then ``seq``) and written into a staging folder beside the partition
(a group of files whose times overlap at a time, so a day never has to fit in memory),
``DIR/<table>/.compact-D/``; then the two folders are exchanged in one atomic
``renameat2(RENAME_EXCHANGE)`` (Linux), so a reader of the views sees either all the old
files or the one new file, never both, never neither.

Crash safety, whatever moment a kill comes at:
- Before the swap an *intent* (``DIR/_compact/<table>-<D>.json``: output name, input names)
  is written atomically. Recovery (at ``record`` start, in ``recover``, at ``compact`` start)
  rolls an intent forward: if the partition does not hold the output yet, the complete staging
  folder is swapped in; then files that are not inputs (published during the compaction) are
  moved back into the partition, the old files are deleted, and the intent goes last.
- A staging folder without an intent was cut short before the swap: it is deleted.
- Files whose journal segment still exists are never inputs: their segment may be replayed by
  recovery, which must find them where it published them.
- Files of the partition that are not inputs are hard-linked into the staging folder just
  before the swap, so the swap brings them along: a reader never misses them, and a kill right
  after the swap does not leave them out of the partition until recovery. Only a file published
  in the instant between those links and the swap is out of sight until the intent is rolled
  forward (moments later, or at the next recovery).
- Without ``renameat2`` the swap is two renames through ``.compact-old-D``; recovery completes
  it too, but a reader may meet the partition missing for an instant.

A file that cannot be merged (not Parquet, cut short, columns that do not fit its table) stops
the compaction with :class:`UnreadableFile`, naming it. Every table's inputs are checked
(footer and columns) before the first table is touched, so such a file changes nothing; one
whose footer reads but whose rows do not is found during its table's merge, and that table's
staging folder is deleted, its partition untouched.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.journal import JOURNAL_DIR, Opener, default_opener, fsync_dir, list_segments
from recorder.messages import first_line
from recorder.recover import Progress, quiet
from recorder.schema import arrow_schema
from recorder.writer import (
    PartialFile,
    file_metadata,
    partition_dir,
    segment_of,
    segment_span,
)

INTENT_DIR: Final = "_compact"
DAMAGED_INTENTS: Final = "damaged"  # in INTENT_DIR: intents that could not be read
ROW_GROUP_ROWS: Final = 500_000  # the output's row groups; also what one write holds
_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2

log = logging.getLogger(__name__)


class UnreadableFile(RuntimeError):
    """A file of the day cannot be merged: move it out of the partition (or repair it) and
    compact again."""


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Name ``path`` in an error reading it: pyarrow's messages do not."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFile(f"cannot read {path}: {first_line(exc)}") from None


@dataclass(frozen=True)
class CompactReport:
    date: str
    tables: dict[str, tuple[int, int]]  # table: (files merged, rows)


def stage_dir(root: Path, table: str, date: str) -> Path:
    return root / table / f".compact-{date}"


def _old_dir(root: Path, table: str, date: str) -> Path:
    return root / table / f".compact-old-{date}"


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two folders. False if the system cannot (then nothing changed)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def _swap(root: Path, table: str, date: str) -> None:
    live, stage, old = partition_dir(root, table, date), stage_dir(root, table, date), \
        _old_dir(root, table, date)
    if not exchange(live, stage):
        os.rename(live, old)
        os.rename(stage, live)
        os.rename(old, stage)
    fsync_dir(root / table)


def _write_json_atomically(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as file:
        file.write(json.dumps(data).encode())
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _finish(root: Path, intent_path: Path, intent: dict[str, object]) -> None:
    """Roll an intent forward from whatever point a kill left it at."""
    table, date = str(intent["table"]), str(intent["date"])
    output = str(intent["output"])
    inputs = {str(name) for name in intent["inputs"]}  # type: ignore[attr-defined]
    live, stage, old = partition_dir(root, table, date), stage_dir(root, table, date), \
        _old_dir(root, table, date)
    if not live.exists() and old.exists():  # fallback swap cut between its renames
        os.rename(stage, live)
    if old.exists() and not stage.exists():
        os.rename(old, stage)
    if not (live / output).exists():
        if (stage / output).exists():
            _swap(root, table, date)
        else:  # never swapped and the staging is not whole: undo
            shutil.rmtree(stage, ignore_errors=True)
            intent_path.unlink()
            fsync_dir(intent_path.parent)
            return
    if stage.exists():
        for path in sorted(stage.glob("*.parquet")):
            if path.name not in inputs and path.name != output:
                # published while we compacted; a rename onto its own hard link (see
                # _link_others) changes nothing, and the staging copy goes with the folder
                os.rename(path, live / path.name)
        fsync_dir(live)
        shutil.rmtree(stage)
        fsync_dir(root / table)
    intent_path.unlink()
    fsync_dir(intent_path.parent)


def _link_others(live: Path, stage: Path, inputs: set[str]) -> None:
    """Hard-link the partition's files that are not ``inputs`` into ``stage``, so the swap
    takes them along. Where the file system has no hard links, :func:`_finish` moves them back
    after the swap instead (they are out of sight in between)."""
    for path in sorted(live.glob("*.parquet")):
        if path.name in inputs:
            continue
        try:
            os.link(path, stage / path.name)
        except FileExistsError:
            pass
        except FileNotFoundError:
            pass  # gone since the glob (only compaction removes files, and it holds the lock)
        except OSError:
            return
    fsync_dir(stage)


class _CompactLock:
    def __init__(self, root: Path) -> None:
        self.path = root / INTENT_DIR / "lock"
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return False
        self._file = file
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _intent_name(table: str, date: str) -> str:
    return f"{table}-{date}.json"


def _read_intent(path: Path) -> dict[str, object] | None:
    """An intent as :func:`_compact` wrote it; None if it is not one (damaged on disk)."""
    try:
        intent = json.loads(path.read_bytes())
    except ValueError:  # not JSON, not UTF-8
        return None
    if not isinstance(intent, dict) or not all(
            isinstance(intent.get(key), str) for key in ("table", "date", "output")):
        return None
    inputs = intent.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(name, str) for name in inputs):
        return None
    return intent


def _recover_locked(root: Path) -> int:
    done = 0
    intent_dir = root / INTENT_DIR
    damaged = intent_dir / DAMAGED_INTENTS
    for path in sorted(intent_dir.glob("*.json")):
        intent = _read_intent(path)
        if intent is None:
            # Without its list of inputs nothing can be rolled either way safely: set it aside
            # and leave that compaction's folders alone (the views read the partition, whole
            # before or after the swap). The next record must not stop at it.
            damaged.mkdir(exist_ok=True)
            os.replace(path, damaged / path.name)
            fsync_dir(intent_dir)
            table_dir = root / path.stem.rsplit("-", 3)[0]
            date = path.stem.removeprefix(f"{table_dir.name}-")
            log.warning("%s: a damaged compaction intent, set aside in %s; nothing of that "
                        "compaction was changed: compare %s/date=%s and its .compact-%s "
                        "folders by hand, then delete the intent", path, damaged, table_dir,
                        date, date)
            continue
        _finish(root, path, intent)
        done += 1
    kept = {p.name for p in damaged.glob("*.json")}
    for stray in sorted(root.glob("*/.compact-*")):
        date = stray.name.removeprefix(".compact-").removeprefix("old-")
        if _intent_name(stray.parent.name, date) in kept:
            continue
        shutil.rmtree(stray, ignore_errors=True)  # cut short before its intent existed
        done += 1
    return done


def recover_compactions(root: Path) -> int:
    """Finish or undo compactions a kill interrupted; the number handled. Skips (0) while
    another process is compacting this folder."""
    if not (root / INTENT_DIR).is_dir():
        return 0
    lock = _CompactLock(root)
    if not lock.try_acquire():
        return 0
    try:
        return _recover_locked(root)
    finally:
        lock.release()


def overlapping_groups(spans: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Files (as indices of ``spans``, each file's lowest and highest ``recv_ts``) in groups
    whose spans overlap or touch, the groups in time order: every row of a group sorts before
    every row of the next, so groups can be sorted one at a time and written one after the
    other. Consecutive journal segments do not overlap, so a group is nearly always one file."""
    groups: list[list[int]] = []
    end = 0
    for i in sorted(range(len(spans)), key=lambda i: spans[i]):
        low, high = spans[i]
        if groups and low <= end:  # equal recv_ts across files: seq decides, merge them
            groups[-1].append(i)
            end = max(end, high)
        else:
            groups.append([i])
            end = high
    return groups


def time_span(path: Path) -> tuple[int, int]:
    """A file's lowest and highest ``recv_ts`` (ns): from its row groups' statistics, which the
    recorder always writes, else (another writer's file) from the column itself."""
    file = pq.ParquetFile(path)
    meta = file.metadata
    column = meta.schema.names.index("recv_ts")
    stats = [meta.row_group(i).column(column).statistics for i in range(meta.num_row_groups)]
    exact = getattr(file.schema_arrow.field("recv_ts").type, "unit", None) == "ns"
    if exact and stats and all(s is not None and s.has_min_max for s in stats):
        return int(min(s.min_raw for s in stats)), int(max(s.max_raw for s in stats))
    stamps = file.read(columns=["recv_ts"]).column("recv_ts").cast(pa.timestamp("ns", "UTC"))
    low, high = pc.min_max(stamps).values()
    return low.value, high.value


def merged_schema(table: str, paths: Sequence[Path]) -> pa.Schema:
    """The schema ``paths`` merge into. The table's schema first: its columns and descriptions
    win over an older file's (a column added since reads null in that file's rows); a column
    only old files have stays. Each file is added in turn, so one that is not Parquet, has no
    ``recv_ts`` or has a column of another type raises :class:`UnreadableFile` naming it."""
    schema = arrow_schema(table).remove_metadata()
    for path in paths:
        with _reading(path):
            theirs = pq.read_schema(path).remove_metadata()
        if "recv_ts" not in theirs.names:
            raise UnreadableFile(f"cannot merge {path}: no recv_ts column, not a file of {table}")
        try:
            schema = pa.unify_schemas([schema, theirs], promote_options="permissive")
        except pa.ArrowException as exc:
            raise UnreadableFile(f"cannot merge {path}: {first_line(exc)}") from None
    return schema


def _time_span(path: Path) -> tuple[int, int]:
    with _reading(path):
        return time_span(path)


def _read(path: Path) -> pa.Table:
    with _reading(path):
        return pq.read_table(path).replace_schema_metadata(None)


def _sorted_rows(paths: list[Path], schema: pa.Schema) -> pa.Table:
    tables = [_read(p) for p in paths]
    rows = pa.concat_tables([schema.empty_table(), *tables], promote_options="permissive")
    rows = rows.select(schema.names).cast(schema)
    keys = [("recv_ts", "ascending")] + [(c, "ascending") for c in ("seq", "frame_seq", "row")
                                          if c in rows.column_names]
    return rows.sort_by(keys)


def _write_merged(paths: list[Path], schema: pa.Schema, final: Path, opener: Opener) -> int:
    """Merge ``paths`` into ``final`` (of ``schema``: :func:`merged_schema`) sorted by
    ``recv_ts`` (then ``seq``), holding one group of overlapping files
    (:func:`overlapping_groups`) in memory at a time, not the whole day; rows written."""
    part = PartialFile(final, schema, opener, file_metadata())
    total = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        for group in overlapping_groups([_time_span(p) for p in paths]):
            rows = _sorted_rows([paths[i] for i in group], schema)
            pending.append(rows)
            pending_rows += rows.num_rows
            total += rows.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                pending = _write_groups(part, pending, whole_only=True)
                pending_rows = sum(t.num_rows for t in pending)
        _write_groups(part, pending, whole_only=False)
        if part.finish():
            part.publish()
            fsync_dir(final.parent)
    except BaseException:
        part.abort()
        raise
    return total


def _write_groups(part: PartialFile, tables: list[pa.Table], whole_only: bool) -> list[pa.Table]:
    """Write ``tables`` as row groups of ``ROW_GROUP_ROWS`` rows, whatever the sizes of the
    input files; with ``whole_only`` a short tail is returned for the next call instead."""
    if not tables:
        return []
    rows = pa.concat_tables(tables).combine_chunks()
    start = 0
    while rows.num_rows - start >= ROW_GROUP_ROWS or (not whole_only and start < rows.num_rows):
        part.write(rows.slice(start, ROW_GROUP_ROWS))
        start += ROW_GROUP_ROWS
    return [rows.slice(start)] if start < rows.num_rows else []


@dataclass(frozen=True)
class _Plan:
    """What one table's compaction merges, checked before anything is written."""

    table: str
    inputs: list[Path]
    schema: pa.Schema


def _plan(root: Path, table: str, date: str) -> _Plan | None:
    """The day's settled files of ``table`` and the schema they merge into; None if there are
    fewer than two. Raises :class:`UnreadableFile` for a file that cannot be merged."""
    live = partition_dir(root, table, date)
    if not live.is_dir():
        return None
    # The files first, then the live segments: a file found here whose segment is gone by the
    # listing below is settled (its segment is deleted only after it was published), and one
    # published after the glob is not an input. Listed first, a rotation between the two made
    # a file of a still-listed segment an input, which recovery then published a second time.
    found = sorted(live.glob("*.parquet"))
    busy = set(list_segments(root / JOURNAL_DIR))
    inputs = [p for p in found if segment_of(p.name) not in busy]
    if len(inputs) < 2:
        return None
    return _Plan(table, inputs, merged_schema(table, inputs))


def compact_table(root: Path, table: str, date: str, opener: Opener = default_opener,
                  progress: Progress = quiet) -> tuple[int, int]:
    """Compact one table's day; (files merged, rows). Nothing to do: (0, 0). ``progress``
    is told before the merge starts, the long part. Raises :class:`UnreadableFile` for a file
    that cannot be merged, leaving the partition as it was."""
    plan = _plan(root, table, date)
    return _compact(root, date, plan, opener, progress) if plan else (0, 0)


def _compact(root: Path, date: str, plan: _Plan, opener: Opener,
             progress: Progress) -> tuple[int, int]:
    table, inputs = plan.table, plan.inputs
    progress(f"{table}: merging {len(inputs)} files ({sum(p.stat().st_size for p in inputs):,} "
             "bytes)")
    spans = [s for s in (segment_span(p.name) for p in inputs) if s is not None]
    first_time = inputs[0].name.removeprefix(f"{table}-").split("-")[0]
    first = min((s[0] for s in spans), default=0)
    output = f"{table}-{first_time}-{first}-{max((s[1] for s in spans), default=0)}.parquet"
    stage = stage_dir(root, table, date)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        written = _write_merged(inputs, plan.schema, stage / output, opener)
    except BaseException:  # no intent yet: the partition is as it was, the staging is waste
        shutil.rmtree(stage, ignore_errors=True)
        raise
    fsync_dir(root / table)
    intent_path = root / INTENT_DIR / _intent_name(table, date)
    _write_json_atomically(intent_path, {"table": table, "date": date, "output": output,
                                         "inputs": [p.name for p in inputs]})
    _link_others(partition_dir(root, table, date), stage, {p.name for p in inputs})
    _swap(root, table, date)
    _finish(root, intent_path, json.loads(intent_path.read_text()))
    return len(inputs), written


def compact_day(root: Path, date: str, opener: Opener = default_opener,
                progress: Progress = quiet) -> CompactReport:
    """Compact every table of ``date`` (``YYYY-MM-DD``), after finishing any interrupted
    compaction; ``progress`` gets a line as each table's merge starts. Raises
    ``RuntimeError`` if another compaction of the folder is running, and
    :class:`UnreadableFile` for a file that cannot be merged: every table's files are checked
    before the first table is compacted, so nothing has changed then."""
    from recorder.schema import TABLES

    lock = _CompactLock(root)
    if not lock.try_acquire():
        raise RuntimeError(f"{root} is being compacted by another process")
    try:
        _recover_locked(root)
        plans = [plan for table in TABLES if (plan := _plan(root, table, date))]
        done = {p.table: _compact(root, date, p, opener, progress) for p in plans}
        return CompactReport(date, done)
    finally:
        lock.release()
