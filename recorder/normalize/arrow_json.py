"""What the normalizer's batch fast paths share: Arrow's JSON reader and the plain grammar.

A fast path (:mod:`recorder.normalize.smd_batch`, :mod:`recorder.normalize.sbd_batch`) parses
the frames of one topic in a batch together with ``pyarrow.json`` (C++, without the GIL) and
converts whole columns with Arrow compute kernels. The per-frame handlers in
:mod:`recorder.normalize.topics` stay the definition of the rows: a fast path takes only frames
whose every value is in the plain grammar below, where its result provably equals theirs, and
declines the rest, which the normalizer then runs frame by frame.

The plain grammar:
- frame bytes: ASCII, no backslash (so no string escapes that Arrow and orjson might read
  differently), no line break (the reader takes one frame a line), and whatever else a fast
  path bans: smd frames have no ``[`` (no arrays at all), sbd frames no ``null`` (pyarrow 26's
  reader builds a broken list array from ``[null,{…}]``);
- display numbers: ``-?digit[digits or commas][.digits][K|M|B]`` (``"1,965"``, ``"9.2M"``);
  exact blanks ``""``, ``N/A``, ``-``, ``n/a``, ``NA`` are null (or declined, where the
  per-frame path lists them: smd's ``cleared``); anything else is declined;
- JSON numbers must be finite (Arrow reads ``NaN``, which orjson refuses).

A batch Arrow cannot read at all (a type that changes between frames, a duplicate key, bad
JSON, more rows than frames) is split in halves :data:`SPLITS` times; the frames of a part that
still fails are declined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from recorder.schema import arrow_schema

Col: TypeAlias = pa.Array | pa.ChunkedArray

BLANKS: Final = pa.array(["", "N/A", "-", "n/a", "NA"])
PLAIN_NUMBER: Final = r"-?[0-9][0-9,]*(\.[0-9]+)?[KMB]?"  # the display-number grammar
NUMBER: Final = rf"^{PLAIN_NUMBER}$"
SPLITS: Final = 3
_SUFFIXES: Final = pa.array(["K", "M", "B"])
_EXPONENTS: Final = {"K": "e3", "M": "e6", "B": "e9"}
# Arrow scalars, never Python values, as compute arguments: pyarrow converts a Python value
# through a code path that tries to import python-dateutil on every call, which costs a
# sys.path search each time where it is not installed.
NO_STRING: Final = pa.scalar(None, pa.string())
TRUE: Final = pa.scalar(True)
FALSE: Final = pa.scalar(False)
NO_BOOL: Final = pa.scalar(None, pa.bool_())
_NO_INT: Final = pa.scalar(None, pa.int64())
_ONE: Final = pa.scalar(1, pa.int32())
_EMPTY: Final = pa.scalar("")
# One thread: a batch is a few 256 KiB blocks, and Arrow's pool cost more than it saved. The
# whole pipeline in 1,000-frame batches took 8.6 µs of CPU a frame instead of 9.6, and less
# wall time too (9.1 against 10.0 µs); the socket reader keeps the other core to itself.
_READ: Final = pj.ReadOptions(use_threads=False, block_size=1 << 18)
_PARSE: Final = pj.ParseOptions(newlines_in_values=False)


def is_plain(payload: bytes, banned: bytes = b"\\") -> bool:
    """Whether one payload's bytes are in the plain grammar (see the module rules); a fast
    path may ban one more byte string (``banned``)."""
    return (payload.isascii() and b"\\" not in payload and b"\n" not in payload
            and b"\r" not in payload and banned not in payload)


def joined_plain(joined: bytes, count: int, banned: bytes = b"\\") -> bool:
    """:func:`is_plain` for every one of ``count`` payloads at once, given them joined by line
    breaks (the bytes the reader will parse)."""
    return (joined.isascii() and b"\\" not in joined and b"\r" not in joined
            and banned not in joined and joined.count(b"\n") == count - 1)


def read_parts(payloads: Sequence[bytes], start: int = 0, end: int | None = None,
               splits: int = SPLITS, joined: bytes | None = None) -> list[tuple[int, pa.Table]]:
    """``(first position, table)`` for each part of ``payloads`` Arrow could read, one row a
    payload; positions of parts it could not read are in no part. ``joined``: the payloads
    from ``start`` to ``end`` already joined by line breaks, when the caller has them."""
    end = len(payloads) if end is None else end
    if start >= end:
        return []
    if joined is None:
        joined = b"\n".join(payloads[start:end])
    try:
        table = pj.read_json(pa.py_buffer(joined), read_options=_READ, parse_options=_PARSE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        table = None
    if table is not None and table.num_rows == end - start:
        return [(start, table)]
    if splits == 0 or end - start == 1:
        return []
    mid = (start + end) // 2
    return (read_parts(payloads, start, mid, splits - 1)
            + read_parts(payloads, mid, end, splits - 1))


def table_of(schema: pa.Schema, columns: Sequence[Col | None], n: int) -> pa.Table:
    """``n`` rows of exactly ``schema`` from its columns in order (None: all null)."""
    return pa.Table.from_arrays(
        [pa.nulls(n, field.type) if col is None else cast(col, field.type)
         for col, field in zip(columns, schema, strict=True)], schema=schema)


def array(col: Col) -> pa.Array:
    """One contiguous array."""
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def cast(col: Col, type_: pa.DataType) -> pa.Array:
    col = array(col)
    return col if col.type == type_ else col.cast(type_)


def is_number_type(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_))


def to_float(values: Col, good: Col) -> pa.Array:
    """Strings of the plain grammar to float64 (the others null), as ``values.number`` reads them.

    Commas go; ``"12.2M"`` becomes ``"12.2e6"`` before the cast. Both Arrow's cast and
    Python's ``float(Decimal(...))`` round the exact decimal correctly, so they agree."""
    clean = pc.if_else(good, pc.replace_substring(values, ",", ""), NO_STRING)
    last = pc.utf8_slice_codeunits(clean, -1)
    suffixed = pc.fill_null(pc.is_in(last, value_set=_SUFFIXES), FALSE)
    if not pc.any(suffixed).as_py():
        return array(pc.cast(clean, pa.float64()))
    plain = pc.cast(pc.if_else(suffixed, NO_STRING, clean), pa.float64())
    scaled = pc.filter(clean, suffixed)
    exponent = pc.utf8_slice_codeunits(scaled, -1)
    for letter, text in _EXPONENTS.items():
        exponent = pc.replace_substring(exponent, letter, text)
    scaled = pc.binary_join_element_wise(pc.utf8_slice_codeunits(scaled, 0, -1), exponent,
                                         _EMPTY)
    return array(pc.replace_with_mask(plain, suffixed, pc.cast(scaled, pa.float64())))


class Columns:
    """Typed columns out of one parsed table, and the rows that must be declined."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.n = table.num_rows
        self.bad: Col | None = None  # boolean mask, None while no row is declined

    def any_bad(self) -> bool:
        return self.bad is not None and bool(pc.any(self.bad).as_py())

    def column(self, key: str) -> pa.Array | None:
        """The column of ``key``, or None when no row has a non-null value."""
        index = self.table.schema.get_field_index(key)
        if index < 0:
            return None
        col = self.table.column(index)
        return None if col.type == pa.null() else array(col)

    def decline(self, mask: Col) -> None:
        mask = pc.fill_null(mask, TRUE)
        self.bad = mask if self.bad is None else pc.or_(self.bad, mask)

    def decline_rows(self, rows: Col) -> None:
        """Decline the rows at these positions (rare: built in Python)."""
        marks = [False] * self.n
        for row in rows.to_pylist():
            marks[row] = True
        self.decline(pa.array(marks, pa.bool_()))

    def text(self, key: str) -> pa.Array | None:
        """A string column verbatim; any other type declines its non-null rows."""
        col = self.column(key)
        if col is not None and col.type != pa.string():
            self.decline(pc.is_valid(col))
            return None
        return col

    def integer(self, key: str, low: int, high: int) -> pa.Array | None:
        """An int column within ``[low, high]``; anything else declines its row."""
        col = self.column(key)
        if col is None:
            return None
        if col.type != pa.int64():
            self.decline(pc.is_valid(col))
            return None
        outside = pc.fill_null(pc.or_(pc.less(col, pa.scalar(low, pa.int64())),
                                      pc.greater(col, pa.scalar(high, pa.int64()))), FALSE)
        if pc.any(outside).as_py():  # declined; nulled so the column still casts
            self.decline(outside)
            return array(pc.if_else(outside, _NO_INT, col))
        return col

    def numbers(self, columns: dict[str, pa.Array],
                decline_blanks: bool = False) -> dict[str, pa.Array]:
        """Each numeric column as float64; the strings of all of them converted in one pass.
        ``decline_blanks``: a row with a blank value goes the per-frame way (which lists it)."""
        result: dict[str, pa.Array] = {}
        strings: list[tuple[str, pa.Array, pa.Array]] = []  # key, validity, non-null values
        for key, col in columns.items():
            if is_number_type(col.type):
                values = array(pc.cast(col, pa.float64()))
                finite = pc.is_finite(values)
                if not pc.all(finite).as_py():
                    self.decline(pc.fill_null(pc.invert(finite), FALSE))
                result[key] = values
            elif col.type == pa.string():
                strings.append((key, pc.is_valid(col), array(pc.drop_null(col))))
            else:
                self.decline(pc.is_valid(col))
        if not strings:
            return result
        values = pa.concat_arrays([s[2] for s in strings])
        good = pc.match_substring_regex(values, NUMBER)
        floats = to_float(values, good)
        finite = pc.is_finite(floats)
        if not pc.all(finite).as_py():  # past a float's range, "1" and 400 zeros: not a number
            good = pc.and_(good, pc.fill_null(finite, FALSE))
        if not pc.all(good).as_py():  # blanks, or odd values the per-frame path must see
            odd = pc.invert(good) if decline_blanks else pc.invert(
                pc.or_(good, pc.is_in(values, value_set=BLANKS)))
            if pc.any(odd).as_py():
                rows = pa.concat_arrays([pc.indices_nonzero(s[1]) for s in strings])
                self.decline_rows(pc.filter(rows, odd))
        offset = 0
        for key, valid, present in strings:
            part = floats.slice(offset, len(present))
            offset += len(present)
            result[key] = array(pc.replace_with_mask(pa.nulls(self.n, pa.float64()), valid,
                                                     part))
        return result

    def extra(self, known: frozenset[str], map_type: pa.DataType,
              decline_blanks: bool = False) -> pa.Array | None:
        """Keys outside ``known`` as an ``extra`` map, at most one entry a row (a row with more
        is declined: the per-frame path keeps the frame's key order, which columns lose).
        A blank value is left out, or with ``decline_blanks`` its row is declined."""
        names: Col | None = None
        values: Col | None = None
        count: Col | None = None
        for key in self.table.column_names:
            if key in known:
                continue
            col = self.column(key)
            if col is None:
                continue
            if col.type != pa.string():
                self.decline(pc.is_valid(col))
                continue
            blank = pc.is_in(col, value_set=BLANKS)  # false for a null
            if decline_blanks and pc.any(blank).as_py():
                self.decline(blank)
            keep = pc.and_(pc.is_valid(col), pc.invert(blank))
            if not pc.any(keep).as_py():
                continue
            name = pc.if_else(keep, pa.array([key], pa.string())[0], NO_STRING)
            value = pc.if_else(keep, col, NO_STRING)
            if names is None or values is None or count is None:
                names, values, count = name, value, pc.cast(keep, pa.int32())
            else:
                names, values = pc.coalesce(names, name), pc.coalesce(values, value)
                count = pc.add(count, pc.cast(keep, pa.int32()))
        if names is None or values is None or count is None:
            return None
        self.decline(pc.greater(count, _ONE))
        has = pc.is_valid(names)
        offsets = pa.concat_arrays([pa.array([0], pa.int32()),
                                    array(pc.cumulative_sum(pc.cast(has, pa.int32())))])
        return pa.MapArray.from_arrays(offsets, array(pc.filter(names, has)),
                                       array(pc.filter(values, has)), type=map_type,
                                       mask=array(pc.invert(has)))


class FastRows:
    """What a fast path made of a batch.

    ``table``: rows of the frames it took, in input order; ``row_frames``: the input position
    of each row's frame; ``positions``: the taken frames' positions (the caller normalizes
    the others frame by frame); ``topics``: their ``topic`` values, in the same order."""

    __slots__ = ("positions", "row_frames", "table", "topics")

    def __init__(self, table: pa.Table, row_frames: list[int], topics: list[str],
                 taken: list[bool]) -> None:
        self.table = table
        self.row_frames = row_frames
        self.topics = topics
        self.positions = [i for i, ok in enumerate(taken) if ok]

    def rebase(self, positions: Sequence[int]) -> None:
        """Make positions refer to a larger batch: ``positions[i]`` is input ``i``'s place."""
        self.positions = [positions[i] for i in self.positions]
        self.row_frames = [positions[i] for i in self.row_frames]


Part: TypeAlias = tuple[pa.Table, Sequence[int], list[str], list[bool] | None]
"""What a fast path makes of one parsed part: ``(rows of its taken frames, each row's frame
index in the part, every frame's topic, per frame whether it is taken (None: all are))``."""


def fast_rows(schema: pa.Schema, payloads: Sequence[bytes], recv_ts_ns: Sequence[int],
              seqs: Sequence[int],
              build: Callable[[pa.Table, Sequence[int], Sequence[int]], Part | None],
              joined: bytes | None = None) -> FastRows:
    """Read ``payloads`` in parts (:func:`read_parts`; ``joined``: them joined by line breaks,
    if at hand), ``build`` each part's rows (None: the part is declined whole), and put the
    parts together."""
    tables: list[pa.Table] = []
    row_frames: list[int] = []
    topics: list[str] = []
    taken = [False] * len(payloads)
    for start, parsed in read_parts(payloads, joined=joined):
        end = start + parsed.num_rows
        part = build(parsed, recv_ts_ns[start:end], seqs[start:end])
        if part is None:
            continue
        table, rows_at, part_topics, ok = part
        tables.append(table)
        row_frames.extend(start + i for i in rows_at)
        if ok is None:
            taken[start:end] = [True] * (end - start)
            topics.extend(part_topics)
        else:
            taken[start:end] = ok
            topics.extend(t for t, keep in zip(part_topics, ok, strict=True) if keep)
    if not tables:
        return FastRows(schema.empty_table(), [], [], taken)
    return FastRows(tables[0] if len(tables) == 1 else pa.concat_tables(tables), row_frames,
                    topics, taken)


@dataclass(frozen=True)
class FastPath:
    """One topic's fast path: which frames it may take and how it builds their rows."""

    table: str  # the table its rows go to
    prefix: bytes  # the topic's first bytes, ``smd+``
    banned: bytes  # bytes no candidate may hold besides the plain grammar's
    build: Callable[[pa.Table, Sequence[int], Sequence[int]], Part | None]

    @property
    def mark(self) -> bytes:
        """Bytes every candidate holds."""
        return b'"topic":"' + self.prefix

    def is_candidate(self, payload: bytes) -> bool:
        """Whether this path may take this ``in`` payload."""
        return self.mark in payload and is_plain(payload, self.banned)

    def joined_candidates(self, joined: bytes, count: int) -> bool:
        """:meth:`is_candidate` at once for ``count`` payloads that all hold :attr:`mark`,
        given them joined by line breaks."""
        return joined_plain(joined, count, self.banned)

    def rows(self, payloads: Sequence[bytes], recv_ts_ns: Sequence[int], seqs: Sequence[int],
             joined: bytes | None = None) -> FastRows:
        """The rows of candidate ``payloads`` (``joined``: them joined by line breaks, if at
        hand: the reader parses those bytes), and which frames were taken."""
        return fast_rows(arrow_schema(self.table), payloads, recv_ts_ns, seqs, self.build,
                         joined)
