"""Frames in, typed rows out: the pure core between the socket and the Parquet writer.

:func:`normalize` takes a batch of :class:`~recorder.frames.Frame` and returns one Arrow table
per non-empty output table, each exactly ``recorder.schema.arrow_schema(name)``. It reads no
clock and no file, and the same frames always give the same rows: crash recovery re-normalizes
journal segments and must get the rows the live run would have written.

Rules (what lands where):
- ``in`` and ``out`` frames each give one ``raw`` row with the exact bytes. Its ``topic`` is, for
  ``in``, the frame's ``topic`` value (null when absent or unparseable); for ``out``, the message
  up to the first ``+{`` (``smd+265598``, ``sbd+ACCT+CONID``, ``tic``), null for a JSON message.
- ``in`` frames also give their topic's rows: smd -> ``market_data``, smh -> ``bars``,
  sbd -> ``depth``, sor -> ``orders``, str -> ``trades``, spl -> ``pnl`` (see
  :mod:`recorder.normalize.topics`); ``system``/``sts``/``act``/``blt``/``ntf``/``tic`` -> an
  ``events`` row of that kind; a topic-less ``{"error":…}`` -> kind ``error``, any other
  topic-less message -> ``message``; an unknown topic (``sld+…``) -> ``other``. The event's
  ``detail`` is the whole message as JSON text (the payload, decoded leniently).
- ``event`` frames (from :func:`recorder.frames.event_frame`) give one ``events`` row; an
  ``orders_snapshot`` event (the day's order list, fetched over REST when a socket subscribes
  ``sor``) also gives one ``orders`` row per order, with ``snapshot`` true.
- A frame that cannot be read (bad JSON, not an object, a topic frame of the wrong shape) gives an
  ``events`` row of kind ``malformed`` whose ``detail`` holds the error and an excerpt; its
  ``raw`` row is kept. :func:`normalize` never raises for any bytes and never drops a frame.
- Payloads are parsed once, with ``orjson.loads`` on the bytes; only when that fails is the
  payload decoded leniently (``errors="replace"``: real gateways send byte 0x99) and parsed again.
- Rows keep input order within each table.

Speed: smd and sbd frames, nearly all of any recording, take a batch fast path when a batch
has at least :data:`FAST_BATCH_MIN` frames and enough of theirs (:data:`FAST_MIN_FRAMES`):
:mod:`recorder.normalize.smd_batch` and :mod:`recorder.normalize.sbd_batch` parse them together
with Arrow's JSON reader and convert whole columns, off the GIL, declining any frame they cannot
prove they read exactly as the per-frame handler would. Declined frames and every other topic go
frame by frame: rows are tuples in schema column order, collected per table and turned into
Arrow once per batch (one struct-array conversion per table); dispatch is one dict lookup on the
topic's prefix. ``raw`` is built column by column from the frames themselves.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from recorder.frames import EVENT, IN, ORDERS_SNAPSHOT, OUT, Frame
from recorder.normalize import sbd_batch, smd_batch
from recorder.normalize.arrow_json import FastRows
from recorder.normalize.topics import (
    TOPIC_HANDLERS,
    NormalizeError,
    Row,
    malformed_detail,
    order_list_rows,
)
from recorder.schema import TABLES, arrow_schema

__all__ = ["EVENT_KINDS", "NormalizeError", "Rows", "normalize", "normalize_frame", "out_topic"]

Rows = dict[str, list[Row]]
"""Rows per table name, each a tuple in the column order of ``arrow_schema(table)``."""

EVENT_KINDS: Final[frozenset[str]] = frozenset({"system", "sts", "act", "blt", "ntf", "tic"})
"""Unsolicited topics that become an ``events`` row of the same kind."""

log = logging.getLogger(__name__)
_dumps = orjson.dumps
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def parse_payload(payload: bytes) -> Any:
    """Parse one frame's JSON: strict bytes first, then a lenient UTF-8 decode.

    Raises :class:`NormalizeError` when neither parses.
    """
    try:
        return _loads(payload)
    except _JSONDecodeError:
        pass
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return _loads(payload.decode("utf-8", "replace"))
        except _JSONDecodeError as exc:
            raise NormalizeError(f"invalid JSON: {exc}") from None
    try:
        return _loads(payload)
    except _JSONDecodeError as exc:
        raise NormalizeError(f"invalid JSON: {exc}") from None


def out_topic(payload: bytes) -> str | None:
    """The ``raw.topic`` of an ``out`` frame: the message up to the first ``+{``."""
    cut = payload.find(b"+{")
    head = payload if cut < 0 else payload[:cut]
    head = head.strip()
    if not head or head[:1] in (b"{", b"["):
        return None
    return head[:200].decode("utf-8", "replace")


def _message_event(
    obj: dict[str, Any], topic: str | None, frame: Frame, kind: str
) -> tuple[str, list[Row]]:
    # The payload parsed (strictly, or after the lenient decode), so its lenient text is valid
    # JSON: the message exactly as sent, cheaper than re-serializing it.
    detail = frame.payload.decode("utf-8", "replace")
    return "events", [(frame.recv_ts_ns, frame.conn_id, frame.seq, kind, topic, detail)]


def _in_rows(obj: Any, frame: Frame) -> tuple[str | None, str, list[Row]]:
    """``(raw topic, table, rows)`` of a parsed ``in`` frame; raises :class:`NormalizeError`."""
    if type(obj) is not dict:
        raise NormalizeError(f"not a JSON object but {type(obj).__name__}")
    topic = obj.get("topic")
    if topic is None:
        kind = "error" if "error" in obj else "message"
        table, rows = _message_event(obj, None, frame, kind)
        return None, table, rows
    if type(topic) is not str:
        raise NormalizeError(f"topic is not a string: {_dumps(topic).decode()[:100]}")
    handler = TOPIC_HANDLERS.get(topic[:3] if topic[3:4] in ("+", "") else topic)
    if handler is None:
        kind = topic if topic in EVENT_KINDS else "other"
        table, rows = _message_event(obj, topic, frame, kind)
        return topic, table, rows
    if "error" in obj:  # e.g. an smh refused by the gateway: a topic frame carrying an error
        table, rows = _message_event(obj, topic, frame, "error")
        return topic, table, rows
    table, rows = handler(obj, topic, frame)
    return topic, table, rows


def _event_rows(frame: Frame) -> Rows:
    """The ``events`` row of an event frame, and the ``orders`` rows an ``orders_snapshot``
    event holds."""
    obj = parse_payload(frame.payload)
    if type(obj) is not dict:
        raise NormalizeError("event payload is not a JSON object")
    kind, topic, detail = obj.get("kind"), obj.get("topic"), obj.get("detail")
    if type(kind) is not str or not (topic is None or type(topic) is str):
        raise NormalizeError("event payload needs a string kind and a string or null topic")
    row = (
        frame.recv_ts_ns,
        frame.conn_id,
        frame.seq,
        kind,
        topic,
        None if detail is None else _dumps(detail).decode(),
    )
    if kind == ORDERS_SNAPSHOT:
        orders = order_list_rows(detail, frame)
        if orders:
            return {"events": [row], "orders": orders}
    return {"events": [row]}


def _malformed_row(frame: Frame, error: str) -> Row:
    return (
        frame.recv_ts_ns,
        frame.conn_id,
        frame.seq,
        "malformed",
        None,
        malformed_detail(error, frame.direction, frame.payload),
    )


def normalize_frame(frame: Frame) -> Rows:
    """The rows of one frame; raises :class:`NormalizeError` (and nothing else) when unreadable.

    Only tables with rows are keys. Unlike :func:`normalize`, a rejected frame gives no rows at
    all here (not even ``raw``): the caller decides.
    """
    if not isinstance(frame.payload, bytes):
        raise NormalizeError("payload is not bytes")
    direction = frame.direction
    if direction == IN:
        topic, table, rows = _in_rows(parse_payload(frame.payload), frame)
        raw = (frame.recv_ts_ns, frame.conn_id, frame.seq, IN, topic, frame.payload)
        return {table: rows, "raw": [raw]} if rows else {"raw": [raw]}
    if direction == OUT:
        topic = out_topic(frame.payload)
        return {"raw": [(frame.recv_ts_ns, frame.conn_id, frame.seq, OUT, topic, frame.payload)]}
    if direction == EVENT:
        return _event_rows(frame)
    raise NormalizeError(f"unknown direction {direction!r}")


def normalize(frames: Sequence[Frame], *, fast_path: bool = True) -> dict[str, pa.Table]:
    """Normalize a batch: one Arrow table per non-empty output table, rows in input order.

    Never raises for any payload: unreadable frames become ``events`` rows of kind
    ``malformed`` (and ``in``/``out`` frames keep their ``raw`` row). ``fast_path=False``
    normalizes every frame one by one (the same rows, slower; for tests and comparisons).
    """
    n = len(frames)
    topics: list[str | None] = [None] * n  # raw.topic of each frame
    fast = _fast_paths(frames) if fast_path else {}
    rest: Sequence[int] = range(n)
    if fast:
        skip = set()
        for result in fast.values():
            skip.update(result.positions)
            for i, topic in zip(result.positions, result.topics, strict=True):
                topics[i] = topic
        rest = [i for i in range(n) if i not in skip]
    out: dict[str, list[Row]] = {name: [] for name in TABLES}
    events = out["events"]
    row_frames: dict[str, list[int]] = {name: [] for name in fast}  # per-frame rows' places
    not_raw = False  # an event (or unknown direction) frame: no raw row
    loads = _loads
    for i in rest:
        frame = frames[i]
        direction = frame.direction
        if direction == IN:
            try:
                try:
                    obj = loads(frame.payload)
                except _JSONDecodeError:
                    obj = parse_payload(frame.payload)
                topics[i], table, rows = _in_rows(obj, frame)
                out[table].extend(rows)
                if table in row_frames:
                    row_frames[table].extend([i] * len(rows))
            except NormalizeError as exc:
                events.append(_malformed_row(frame, str(exc)))
            except Exception as exc:  # a bug must not stop recording; the raw row still lands
                events.append(_malformed_row(frame, f"internal error: {exc!r}"))
        elif direction == OUT:
            topics[i] = out_topic(frame.payload)
        else:
            not_raw = True
            try:
                if direction != EVENT:
                    raise NormalizeError(f"unknown direction {direction!r}")
                for table, rows in _event_rows(frame).items():
                    out[table].extend(rows)
            except NormalizeError as exc:
                events.append(_malformed_row(frame, str(exc)))
            except Exception as exc:  # pragma: no cover - safety net, as above
                events.append(_malformed_row(frame, f"internal error: {exc!r}"))
    tables: dict[str, pa.Table] = {}
    for name, rows in out.items():
        if name in fast:
            tables[name] = _merge(name, fast[name], rows, row_frames[name])
        elif rows and name != "raw":
            tables[name] = to_table(name, rows)
    raw = _raw_table(frames, topics, not_raw)
    if raw.num_rows:
        tables["raw"] = raw
    return {name: tables[name] for name in TABLES if name in tables and tables[name].num_rows}


FAST_BATCH_MIN = 1_000
"""Smaller batches go frame by frame: sorting frames by topic costs more than it can save."""

# Each fast path costs about a millisecond a batch whatever its size (Arrow calls), so a topic
# takes it only with at least this many frames in the batch: where the two paths cost the same
# on this 2-core machine, measured (smd ~400 frames; sbd ~110 ladders of a dozen rows), with room.
FAST_MIN_FRAMES: Final[dict[str, int]] = {"market_data": 500, "depth": 150}

_FAST_PATHS: Final = (smd_batch.PATH, sbd_batch.PATH)
_TOPIC: Final = b'"topic":"s'  # smd+ and sbd+ both start so
_TOPIC_AT: Final = len(_TOPIC) - 1
_WINDOW: Final = 40


def _by_topic(frames: Sequence[Frame]) -> dict[bytes, list[int]]:
    """Positions of the ``in`` frames whose ``topic`` looks like ``smd+``/``sbd+`` (the fast
    paths check the parsed topic; this only sorts). Real frames carry the topic last (smd
    deltas) or first (ladders), so two short searches nearly always find it."""
    found: dict[bytes, list[int]] = {path.prefix: [] for path in _FAST_PATHS}
    for i, frame in enumerate(frames):
        if frame.direction != IN:
            continue
        payload = frame.payload
        at = payload.rfind(_TOPIC, len(payload) - _WINDOW)
        if at < 0:
            at = payload.find(_TOPIC, 0, _WINDOW)
            if at < 0:
                at = payload.rfind(_TOPIC)
                if at < 0:
                    continue
        positions = found.get(payload[at + _TOPIC_AT:at + _TOPIC_AT + 4])
        if positions is not None:
            positions.append(i)
    return found


def _fast_paths(frames: Sequence[Frame]) -> dict[str, FastRows]:
    """Per table, what its fast path made of this batch (positions are in ``frames``); a
    table is missing when its topic has too few frames here to be worth a batch parse."""
    results: dict[str, FastRows] = {}
    if len(frames) < FAST_BATCH_MIN:
        return results
    by_topic = _by_topic(frames)
    for path in _FAST_PATHS:
        least = FAST_MIN_FRAMES[path.table]
        positions = by_topic[path.prefix]
        if len(positions) < least:
            continue
        payloads = [frames[i].payload for i in positions]
        joined = b"\n".join(payloads)  # checked here, then parsed as it is
        if not path.joined_candidates(joined, len(payloads)):
            positions = [i for i, p in zip(positions, payloads, strict=True)
                         if path.is_candidate(p)]
            if len(positions) < least:
                continue
            payloads = [frames[i].payload for i in positions]
            joined = b"\n".join(payloads)
        try:
            result = path.rows(payloads, [frames[i].recv_ts_ns for i in positions],
                               [frames[i].seq for i in positions], joined)
        except Exception:  # never let a fast path cost a frame: the slow path takes them all
            log.exception("%s fast path failed; normalizing its frames one by one", path.table)
            continue
        result.rebase(positions)  # _by_topic puts each frame under one topic: no frame twice
        results[path.table] = result
    return results


def _merge(table: str, fast: FastRows, rows: list[Row], at: list[int]) -> pa.Table:
    """``table`` in input order from a fast path's rows and the per-frame ones."""
    if not rows:
        return fast.table
    slow = to_table(table, rows)
    if not fast.table.num_rows:
        return slow
    combined = pa.concat_tables([fast.table, slow])
    order = pc.sort_indices(pa.array(fast.row_frames + at, pa.int64()))  # stable
    return combined.take(order)


def _raw_table(frames: Sequence[Frame], topics: list[str | None], filter_: bool) -> pa.Table:
    """The ``raw`` rows (``in`` and ``out`` frames), built column by column."""
    if filter_:
        keep = [i for i, f in enumerate(frames) if f.direction in (IN, OUT)]
        frames = [frames[i] for i in keep]
        topics = [topics[i] for i in keep]
    schema = arrow_schema("raw")
    if not frames:
        return schema.empty_table()
    recv_ts, conn_id, seq, direction, payload = zip(*frames, strict=True)
    columns = (recv_ts, conn_id, seq, direction, topics, payload)
    return pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)],
        schema=schema)


def to_table(table: str, rows: Sequence[Row]) -> pa.Table:
    """Rows (tuples in schema column order) as an Arrow table of exactly ``arrow_schema(table)``.

    Rows become one struct array in a single C-level conversion, which for these wide, mostly
    null rows is twice as fast as transposing them in Python and converting column by column;
    ``raw``, whose long binary payloads convert faster as a column, is transposed."""
    schema = arrow_schema(table)
    if table != "raw" and rows:
        try:
            struct = pa.array(rows, type=_struct_type(table))
        except pa.ArrowInvalid as exc:  # a row of the wrong width (a ValueError, as below)
            raise ValueError(f"{table}: {exc}") from None
        return pa.Table.from_struct_array(struct).replace_schema_metadata(schema.metadata)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    if len(columns) != len(schema):
        raise ValueError(f"{table}: rows have {len(columns)} values, schema {len(schema)}")
    arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


@functools.cache
def _struct_type(table: str) -> pa.StructType:
    return pa.struct(arrow_schema(table))
