"""sbd frames to ``depth`` rows a whole batch at a time: the normalizer's second fast path.

A depth frame carries a ladder of a dozen rows, so frame by frame it costs about as much as a
dozen quotes. Here the ladders of a batch are parsed together by Arrow's JSON reader, flattened
into one table of rows, and converted column by column (:mod:`recorder.normalize.arrow_json`).
The per-frame handler (:func:`recorder.normalize.topics.sbd_rows`) defines the rows; this
module takes only frames it reads exactly as that handler would and declines the rest
(``tests/test_sbd_batch.py`` holds the two against each other).

A frame is a candidate when it holds ``"topic":"sbd+`` and its bytes are plain and hold no
``null``. A frame is declined when any of these holds:
- its ``topic`` is not a string starting ``sbd+``, or the batch has an ``error`` key (account,
  conid and exchange come from the topic through the per-frame path's own function);
- its ``data`` is missing or not a list of objects;
- a row's ``row``/``focus`` is not an int32; ``bid``/``ask`` not a plain display number or
  blank; ``price`` not a plain number, blank, or exactly ``"<number> @ <number>"``;
- a row would carry more than one ``extra`` entry, or a non-string one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from recorder.normalize.arrow_json import (
    FALSE,
    NO_STRING,
    PLAIN_NUMBER,
    Columns,
    FastPath,
    Part,
    table_of,
)
from recorder.normalize.topics import sbd_topic
from recorder.schema import arrow_schema

__all__ = ["PATH"]


_SIZE_AT_PRICE: Final = rf"^{PLAIN_NUMBER} @ {PLAIN_NUMBER}$"
_KNOWN: Final = frozenset({"row", "focus", "price", "bid", "ask"})
_I32: Final = (-(2**31), 2**31 - 1)
_FIRST: Final = pa.scalar(0, pa.int64())
_SECOND: Final = pa.scalar(1, pa.int64())
_NO_HEAD: Final = (None, None, None)


def _part(parsed: pa.Table, recv_ts: Sequence[int], seqs: Sequence[int]) -> Part | None:
    """``(rows of the taken frames, their frame index, every frame's topic, taken)``."""
    frame = Columns(parsed)
    topic = frame.column("topic")
    data = frame.column("data")
    if (topic is None or topic.type != pa.string() or data is None
            or not pa.types.is_list(data.type) or not pa.types.is_struct(data.type.value_type)
            or data.type.value_type.num_fields == 0 or "error" in parsed.column_names):
        return None
    topics = topic.to_pylist()
    frame_ok = [isinstance(t, str) and t.startswith("sbd+") for t in topics]
    heads = {name: sbd_topic(name) for name, ok in zip(topics, frame_ok, strict=True) if ok}
    frame_ok = [ok and valid for ok, valid in zip(frame_ok, pc.is_valid(data).to_pylist(),
                                                   strict=True)]

    items = pc.list_flatten(data)
    parent = pc.list_parent_indices(data)
    rows = Columns(pa.Table.from_struct_array(items))
    rows.decline(pc.is_null(items))  # `"data":[null]`: the per-frame path refuses the frame
    row_no = rows.integer("row", *_I32)
    focus = rows.integer("focus", *_I32)
    numeric = {key: col for key in ("bid", "ask") if (col := rows.column(key)) is not None}
    price = rows.column("price")
    if price is not None and price.type == pa.string():
        at = pc.fill_null(pc.match_substring(price, "@"), False)
        if pc.any(at).as_py():
            good = pc.fill_null(pc.match_substring_regex(price, _SIZE_AT_PRICE), FALSE)
            rows.decline(pc.and_(at, pc.invert(good)))
            pair = pc.split_pattern(pc.filter(price, good), " @ ", max_splits=1)
            numeric["@size"] = pc.replace_with_mask(pa.nulls(rows.n, pa.string()), good,
                                                    pc.list_element(pair, _FIRST))
            numeric["@price"] = pc.replace_with_mask(pa.nulls(rows.n, pa.string()), good,
                                                     pc.list_element(pair, _SECOND))
            price = pc.if_else(at, NO_STRING, price)
    if price is not None:
        numeric["price"] = price
    numbers = rows.numbers(numeric)
    extra = rows.extra(_KNOWN, arrow_schema("depth").field("extra").type)

    if rows.any_bad() and rows.bad is not None:
        for i in set(pc.filter(parent, rows.bad).to_pylist()):
            frame_ok[i] = False
    keep_rows = pc.array_take(pa.array(frame_ok, pa.bool_()), parent)
    parents = pa.array(parent, pa.int64())
    prices = [numbers[k] for k in ("price", "@price") if k in numbers]
    accounts, conids, exchanges = zip(*(heads.get(t, _NO_HEAD) for t in topics), strict=True)
    columns = [
        pc.array_take(pa.array(recv_ts, pa.int64()), parents),
        pc.array_take(pa.array(seqs, pa.int64()), parents),
        pc.array_take(pa.array(accounts, pa.string()), parents),
        pc.array_take(pa.array(conids, pa.int64()), parents),
        pc.array_take(pa.array(exchanges, pa.string()), parents),
        row_no, focus,
        (prices[0] if len(prices) == 1 else pc.coalesce(*prices)) if prices else None,
        numbers.get("@size"), numbers.get("bid"), numbers.get("ask"), extra,
    ]
    table = table_of(arrow_schema("depth"), columns, rows.n)
    if not all(frame_ok):
        table = table.filter(keep_rows)
        parents = pc.filter(parents, keep_rows)
    return table, parents.to_pylist(), topics, frame_ok


PATH: Final = FastPath("depth", b"sbd+", b"null", _part)
"""The fast path (``b"null"``: see :mod:`recorder.normalize.arrow_json`)."""
