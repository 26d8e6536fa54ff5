"""smd frames to ``market_data`` rows a whole batch at a time: the normalizer's fast path.

smd frames are most of a recording (quotes tick for every instrument), and normalizing them one
by one in Python costs several bare ``orjson.loads`` each. Here a batch of them is parsed by
Arrow's JSON reader (C++, on the machine's cores, without the GIL, so the socket keeps reading
meanwhile) into one column per key, and the display strings of every numeric column become
numbers together, in one pass of Arrow compute kernels over all of them.

The per-frame handler (:func:`recorder.normalize.market_data.smd_rows`) stays the definition of
the rows. This module only takes the frames whose every value is in the plain grammar below,
where its result provably equals that handler's, and *declines* every other frame; the
normalizer runs those frame by frame, so the rows are the same whichever path a frame took
(``tests/test_smd_batch.py`` holds the two paths against each other on real and generated
frames).

A frame is a candidate (:func:`is_candidate`) when its bytes are ASCII and hold
``"topic":"smd+``, no backslash (so no string escapes), no line break, and it is one ``{…}``.
After parsing, a row is declined when any of these holds:
- its ``topic`` is not a string starting ``smd+``; the batch has an ``error`` key;
- an envelope value is not the plain type (``_updated`` an int within years 0..9999, ``conid``
  an int, ``conidEx``/``server_id``/``6119`` strings, ``6119`` equal to ``server_id``);
- a numeric field (prices, sizes, 31 after its ``C``/``H`` prefix, the volume sources) is a
  string outside ``-?digit[digits or commas][.digits][K|M|B]`` and not an exact blank (``""``,
  ``N/A``, ``-``, ``n/a``, ``NA``; a prefixed 31 must be a number), a JSON number that is not
  finite, or any other JSON type;
- ``55``, ``6509`` or a key without a typed column holds a value that is not a string;
- it would carry more than one ``extra`` entry (the per-frame path keeps the frame's key order,
  which columns do not know).
A batch Arrow cannot read at all (a type that changes between frames, a duplicate key, bad
JSON) is split in halves a few times; the frames of a part that still fails are declined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from recorder.normalize.market_data import NUMERIC_FIELDS, WIDTH
from recorder.schema import arrow_schema

__all__ = ["MARK", "SmdBatch", "is_candidate", "normalize_smd"]

MARK: Final = b'"topic":"smd+'
"""Bytes every candidate holds (the normalizer's cheap first test)."""

Col: TypeAlias = pa.Array | pa.ChunkedArray

_BLANKS: Final = pa.array(["", "N/A", "-", "n/a", "NA"])
_SUFFIXES: Final = pa.array(["K", "M", "B"])
_EXPONENTS: Final = {"K": "e3", "M": "e6", "B": "e9"}
_NUMBER: Final = r"^-?[0-9][0-9,]*(\.[0-9]+)?[KMB]?$"
_MS_MAX: Final = 253_402_300_799_999
_SPLITS: Final = 3  # halvings of a batch Arrow refuses, before its frames are declined
_VOLUME: Final = ("7762", "87_raw", "87")  # by preference
_TEXT: Final = {"55": 6, "6509": 24}
_KNOWN: Final = frozenset({"topic", "_updated", "conid", "conidEx", "server_id", "6119",
                           "31", "error", *NUMERIC_FIELDS, *_VOLUME, *_TEXT})
_READ: Final = pj.ReadOptions(use_threads=True, block_size=1 << 18)
_PARSE: Final = pj.ParseOptions(newlines_in_values=False)


def is_candidate(payload: bytes) -> bool:
    """Whether the fast path may take this ``in`` payload (see the module rules)."""
    return (
        MARK in payload
        and payload.isascii()
        and payload[:1] == b"{"
        and payload[-1:] == b"}"
        and b"\\" not in payload
        and b"\n" not in payload
        and b"\r" not in payload
    )


def all_candidates(payloads: Sequence[bytes]) -> bool:
    """:func:`is_candidate` for a whole list of payloads that hold :data:`MARK`, at once.

    The per-frame shape test (``{…}``) is left out: a payload that is not one object either
    fails to parse or parses to more rows than frames, and both decline its part."""
    buffer = b"\n".join(payloads)
    return (buffer.isascii() and b"\\" not in buffer and b"\r" not in buffer
            and buffer.count(b"\n") == len(payloads) - 1)


class SmdBatch:
    """What the fast path made of a batch.

    ``table``: the market_data rows of the frames it took, in input order; ``topics``: their
    ``topic`` values, in the same order; ``taken``: per input frame, whether its row is in
    ``table`` (the caller normalizes the others frame by frame); ``positions``: the positions
    of the taken frames (the caller may re-base both on a larger batch)."""

    __slots__ = ("positions", "table", "taken", "topics")

    def __init__(self, table: pa.Table, topics: list[str], taken: list[bool]) -> None:
        self.table = table
        self.topics = topics
        self.taken = taken
        self.positions = [i for i, ok in enumerate(taken) if ok]


def normalize_smd(
    payloads: Sequence[bytes], recv_ts_ns: Sequence[int], seqs: Sequence[int]
) -> SmdBatch:
    """market_data rows of candidate smd ``payloads`` (see the module rules)."""
    tables: list[pa.Table] = []
    topics: list[str] = []
    taken = [False] * len(payloads)
    for start, parsed in _parse(payloads, 0, len(payloads), _SPLITS):
        end = start + parsed.num_rows
        table, topic, ok = _Rows(parsed).build(recv_ts_ns[start:end], seqs[start:end])
        if ok is None:
            taken[start:end] = [True] * (end - start)
        else:
            table = table.filter(pa.array(ok, pa.bool_()))
            topic = [t for t, keep in zip(topic, ok, strict=True) if keep]
            taken[start:end] = ok
        tables.append(table)
        topics.extend(topic)
    if not tables:
        return SmdBatch(arrow_schema("market_data").empty_table(), [], taken)
    return SmdBatch(tables[0] if len(tables) == 1 else pa.concat_tables(tables), topics, taken)


def _parse(payloads: Sequence[bytes], start: int, end: int,
           splits: int) -> list[tuple[int, pa.Table]]:
    """``(first position, parsed table)`` for each part of the batch Arrow could read."""
    if start >= end:
        return []
    try:
        table = pj.read_json(pa.py_buffer(b"\n".join(payloads[start:end])),
                             read_options=_READ, parse_options=_PARSE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        table = None
    if table is not None and table.num_rows == end - start:
        return [(start, table)]
    if splits == 0 or end - start == 1:
        return []
    mid = (start + end) // 2
    return _parse(payloads, start, mid, splits - 1) + _parse(payloads, mid, end, splits - 1)


def _array(col: Col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _is_number_type(type_: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type_) or pa.types.is_floating(type_))


class _Rows:
    """The market_data columns of one parsed part, and the rows it must decline."""

    def __init__(self, parsed: pa.Table) -> None:
        self.parsed = parsed
        self.n = parsed.num_rows
        self.bad: Col | None = None  # boolean mask, None while no row is declined
        self.out: list[Col | None] = [None] * WIDTH

    def column(self, key: str) -> pa.Array | None:
        index = self.parsed.schema.get_field_index(key)
        if index < 0:
            return None
        col = self.parsed.column(index)
        return None if col.type == pa.null() else _array(col)

    def decline(self, mask: Col) -> None:
        mask = pc.fill_null(mask, True)
        self.bad = mask if self.bad is None else pc.or_(self.bad, mask)

    def decline_rows(self, rows: Col) -> None:
        """Decline the rows at these positions (rare: built in Python)."""
        marks = [False] * self.n
        for row in rows.to_pylist():
            marks[row] = True
        self.decline(pa.array(marks, pa.bool_()))

    # -- columns ---------------------------------------------------------------------------

    def text(self, key: str) -> pa.Array | None:
        """A string column verbatim; any other type declines its non-null rows."""
        col = self.column(key)
        if col is not None and col.type != pa.string():
            self.decline(pc.is_valid(col))
            return None
        return col

    def integer(self, key: str, low: int, high: int) -> pa.Array | None:
        col = self.column(key)
        if col is None:
            return None
        if col.type != pa.int64():
            self.decline(pc.is_valid(col))
            return None
        outside = pc.or_(pc.less(col, low), pc.greater(col, high))
        if pc.any(outside).as_py():
            self.decline(pc.fill_null(outside, False))
        return col

    def numbers(self, columns: dict[str, pa.Array]) -> dict[str, Col]:
        """Every numeric column as float64, the strings converted in one pass over all."""
        result: dict[str, Col] = {}
        strings: list[tuple[str, pa.Array, pa.Array]] = []  # key, validity, non-null values
        for key, col in columns.items():
            if _is_number_type(col.type):
                values = pc.cast(col, pa.float64())
                finite = pc.is_finite(values)
                if not pc.all(finite).as_py():
                    self.decline(pc.fill_null(pc.invert(finite), False))
                result[key] = values
            elif col.type == pa.string():
                valid = pc.is_valid(col)
                strings.append((key, valid, _array(pc.drop_null(col))))
            else:
                self.decline(pc.is_valid(col))
        if not strings:
            return result
        values = pa.concat_arrays([s[2] for s in strings])
        good = pc.match_substring_regex(values, _NUMBER)
        if not pc.all(good).as_py():  # blanks, or odd values the per-frame path must see
            odd = pc.invert(pc.or_(good, pc.is_in(values, value_set=_BLANKS)))
            if pc.any(odd).as_py():
                rows = pa.concat_arrays([pc.indices_nonzero(s[1]) for s in strings])
                self.decline_rows(pc.filter(rows, odd))
        floats = _to_float(values, good)
        offset = 0
        for key, valid, present in strings:
            part = floats.slice(offset, len(present))
            offset += len(present)
            result[key] = pc.replace_with_mask(pa.nulls(self.n, pa.float64()), valid, part)
        return result

    def extra(self) -> pa.Array | None:
        """Keys without a typed column as the ``extra`` map (at most one entry a row)."""
        names: Col | None = None
        values: Col | None = None
        count: Col | None = None
        for key in self.parsed.column_names:
            if key in _KNOWN:
                continue
            col = self.column(key)
            if col is None:
                continue
            if col.type != pa.string():
                self.decline(pc.is_valid(col))
                continue
            keep = pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, value_set=_BLANKS)))
            if not pc.any(keep).as_py():
                continue
            name = pc.if_else(keep, pa.scalar(key), pa.scalar(None, pa.string()))
            value = pc.if_else(keep, col, pa.scalar(None, pa.string()))
            if names is None or values is None or count is None:
                names, values, count = name, value, pc.cast(keep, pa.int32())
            else:
                names, values = pc.coalesce(names, name), pc.coalesce(values, value)
                count = pc.add(count, pc.cast(keep, pa.int32()))
        if names is None or values is None or count is None:
            return None
        self.decline(pc.greater(count, 1))
        has = pc.is_valid(names)
        offsets = pa.concat_arrays([pa.array([0], pa.int32()),
                                    _array(pc.cumulative_sum(pc.cast(has, pa.int32())))])
        return pa.MapArray.from_arrays(offsets, _array(pc.filter(names, has)),
                                       _array(pc.filter(values, has)),
                                       mask=_array(pc.invert(has)))

    # -- the table -------------------------------------------------------------------------

    def build(self, recv_ts: Sequence[int],
              seqs: Sequence[int]) -> tuple[pa.Table, list[str], list[bool] | None]:
        """``(table, topics, ok)``: ``ok`` None when every row is taken, else per row."""
        n, out, parsed = self.n, self.out, self.parsed
        topic = self.column("topic")
        if topic is None or topic.type != pa.string():
            return arrow_schema("market_data").empty_table(), [], [False] * n
        self.decline(pc.invert(pc.starts_with(topic, "smd+")))
        if "error" in parsed.column_names:  # `"error": null` parses as absent: decline all
            self.decline(pa.repeat(True, n))
        out[0] = pa.array(recv_ts, pa.int64())
        out[1] = pa.array(seqs, pa.int64())
        out[2] = self.integer("_updated", 0, _MS_MAX)
        out[3] = self.integer("conid", -(2**63), 2**63 - 1)
        out[4] = self.text("conidEx")
        server_id, marker = self.text("server_id"), self.text("6119")
        if marker is not None:
            if server_id is None:
                server_id = marker
            else:
                differs = pc.fill_null(pc.not_equal(server_id, marker), False)
                if pc.any(differs).as_py():
                    self.decline(differs)
                server_id = pc.coalesce(server_id, marker)
        out[5] = server_id
        for key, index in _TEXT.items():
            out[index] = self.text(key)

        numeric: dict[str, pa.Array] = {}
        for key in (*NUMERIC_FIELDS, *_VOLUME):
            col = self.column(key)
            if col is not None:
                numeric[key] = col
        last = self.column("31")
        close_mark = halt_mark = None
        if last is not None and last.type == pa.string():
            head = pc.utf8_slice_codeunits(last, 0, 1)
            close_mark, halt_mark = pc.equal(head, "C"), pc.equal(head, "H")
            prefixed = pc.or_(close_mark, halt_mark)
            if pc.any(prefixed).as_py():
                body = pc.if_else(prefixed, pc.utf8_slice_codeunits(last, 1), last)
                # "C" then a blank is not a blank: the per-frame path keeps it in extra
                odd = pc.and_(prefixed, pc.invert(pc.match_substring_regex(body, _NUMBER)))
                self.decline(pc.fill_null(odd, False))
                last = _array(body)
        if last is not None:
            numeric["31"] = last
        numbers = self.numbers(numeric)
        for key, index in NUMERIC_FIELDS.items():
            out[index] = numbers.get(key)
        volumes = [numbers[key] for key in _VOLUME if key in numbers]
        out[15] = (volumes[0] if len(volumes) == 1 else pc.coalesce(*volumes)) if volumes \
            else None
        if "31" in numbers:
            price = numbers["31"]
            out[7] = price
            has = pc.is_valid(price)
            none = pa.scalar(None, pa.bool_())
            if close_mark is None or halt_mark is None:
                out[8] = out[9] = pc.if_else(has, False, none)
            else:
                out[8] = pc.if_else(has, close_mark, none)
                out[9] = pc.if_else(has, halt_mark, none)
        out[25] = self.extra()

        schema = arrow_schema("market_data")
        arrays = [pa.nulls(n, field.type) if col is None else _cast(col, field.type)
                  for col, field in zip(out, schema, strict=True)]
        table = pa.Table.from_arrays(arrays, schema=schema)
        ok = None
        if self.bad is not None and pc.any(self.bad).as_py():
            ok = pc.invert(self.bad).to_pylist()
        return table, topic.to_pylist(), ok


def _to_float(values: pa.Array, good: Col) -> pa.Array:
    """Strings of the plain grammar to float64 (others null), exactly as ``values.number``.

    Commas go; ``"12.2M"`` becomes ``"12.2e6"`` before the cast. Both Arrow's cast and
    Python's ``float(Decimal(...))`` round the exact decimal correctly, so they agree."""
    clean = pc.if_else(good, pc.replace_substring(values, ",", ""), pa.scalar(None, pa.string()))
    last = pc.utf8_slice_codeunits(clean, -1)
    suffixed = pc.fill_null(pc.is_in(last, value_set=_SUFFIXES), False)
    if not pc.any(suffixed).as_py():
        return _array(pc.cast(clean, pa.float64()))
    plain = pc.cast(pc.if_else(suffixed, pa.scalar(None, pa.string()), clean), pa.float64())
    scaled = pc.filter(clean, suffixed)
    exponent = pc.utf8_slice_codeunits(scaled, -1)
    for letter, text in _EXPONENTS.items():
        exponent = pc.replace_substring(exponent, letter, text)
    scaled = pc.binary_join_element_wise(pc.utf8_slice_codeunits(scaled, 0, -1), exponent, "")
    return _array(pc.replace_with_mask(plain, suffixed, pc.cast(scaled, pa.float64())))


def _cast(col: Col, type_: pa.DataType) -> pa.Array:
    col = _array(col)
    return col if col.type == type_ else col.cast(type_)
