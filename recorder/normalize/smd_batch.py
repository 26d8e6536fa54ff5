"""smd frames to ``market_data`` rows a whole batch at a time: the normalizer's fast path.

smd frames are most of a recording (quotes tick for every instrument), and normalizing them one
by one in Python costs several bare ``orjson.loads`` each. Here a batch of them is parsed by
Arrow's JSON reader (C++, on the machine's cores, without the GIL, so the socket keeps reading
meanwhile) into one column per key, and the display strings of every numeric column become
numbers together, in one pass of Arrow compute kernels over all of them.

The per-frame handler (:func:`recorder.normalize.market_data.smd_rows`) stays the definition of
the rows. This module only takes the frames whose every value is in the plain grammar (below,
and in :mod:`recorder.normalize.arrow_json`), where its result provably equals that handler's,
and *declines* every other frame; the normalizer runs those frame by frame, so the rows are the
same whichever path a frame took (``tests/test_smd_batch.py`` holds the two paths against each
other on real and generated frames).

A frame is a candidate when it holds ``"topic":"smd+`` and its bytes are plain and hold no
``[`` (smd frames carry no arrays). After parsing, a row is declined when any of these holds:
- its ``topic`` is not a string starting ``smd+``; the batch has an ``error`` key;
- an envelope value is not the plain type (``_updated`` an int within years 0..9999, ``conid``
  an int, ``conidEx``/``server_id``/``6119`` strings, ``6119`` equal to ``server_id``);
- a numeric field (prices, sizes, 31 after its ``C``/``H`` prefix, the volume sources) is not a
  plain display number (a blank too: the per-frame path lists it in ``cleared``), or not a
  finite JSON number;
- a key without a typed column holds a blank (listed in ``cleared`` too);
- ``55``, ``6509`` or a key without a typed column holds a value that is not a string;
- it would carry more than one ``extra`` entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from recorder.normalize.arrow_json import (
    FALSE,
    NO_BOOL,
    NUMBER,
    Columns,
    FastPath,
    Part,
    table_of,
)
from recorder.normalize.market_data import NUMERIC_FIELDS, WIDTH
from recorder.schema import arrow_schema

__all__ = ["PATH"]


_MS_MAX: Final = 253_402_300_799_999
_VOLUME: Final = ("7762", "87_raw", "87")  # by preference
_TEXT: Final = {"55": 6, "6509": 24}
_KNOWN: Final = frozenset({"topic", "_updated", "conid", "conidEx", "server_id", "6119",
                           "31", "error", *NUMERIC_FIELDS, *_VOLUME, *_TEXT})
_C: Final = pa.scalar("C")
_H: Final = pa.scalar("H")


def _part(parsed: pa.Table, recv_ts: Sequence[int], seqs: Sequence[int]) -> Part:
    table, topics, ok = _Rows(parsed).build(recv_ts, seqs)
    if ok is None:
        return table, range(table.num_rows), topics, None
    kept = table.filter(pa.array(ok, pa.bool_()))
    return kept, [i for i, keep in enumerate(ok) if keep], topics, ok


class _Rows(Columns):
    """The market_data columns of one parsed part, and the rows it must decline."""

    def build(self, recv_ts: Sequence[int],
              seqs: Sequence[int]) -> tuple[pa.Table, list[str], list[bool] | None]:
        """``(table, topics, ok)``: ``ok`` None when every row is taken, else per row."""
        n, parsed = self.n, self.table
        out: list[pa.Array | pa.ChunkedArray | None] = [None] * WIDTH
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
                differs = pc.fill_null(pc.not_equal(server_id, marker), FALSE)
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
            close_mark, halt_mark = pc.equal(head, _C), pc.equal(head, _H)
            prefixed = pc.or_(close_mark, halt_mark)
            if pc.any(prefixed).as_py():
                body = pc.if_else(prefixed, pc.utf8_slice_codeunits(last, 1), last)
                # "C" then a blank is not a blank: the per-frame path keeps it in extra
                odd = pc.and_(prefixed, pc.invert(pc.match_substring_regex(body, NUMBER)))
                self.decline(pc.fill_null(odd, FALSE))
                last = body
        if last is not None:
            numeric["31"] = last
        numbers = self.numbers(numeric, decline_blanks=True)  # a blank goes to `cleared`
        for key, index in NUMERIC_FIELDS.items():
            out[index] = numbers.get(key)
        volumes = [numbers[key] for key in _VOLUME if key in numbers]
        out[15] = (volumes[0] if len(volumes) == 1 else pc.coalesce(*volumes)) if volumes \
            else None
        if "31" in numbers:
            price = numbers["31"]
            out[7] = price
            has = pc.is_valid(price)
            if close_mark is None or halt_mark is None:
                out[8] = out[9] = pc.if_else(has, FALSE, NO_BOOL)
            else:
                out[8] = pc.if_else(has, close_mark, NO_BOOL)
                out[9] = pc.if_else(has, halt_mark, NO_BOOL)
        out[25] = self.extra(_KNOWN, arrow_schema("market_data").field("extra").type,
                             decline_blanks=True)
        # out[26], cleared, stays null: a row with a blank value was declined above

        table = table_of(arrow_schema("market_data"), out, n)
        ok = pc.invert(self.bad).to_pylist() if self.any_bad() and self.bad is not None \
            else None
        return table, topic.to_pylist(), ok


PATH: Final = FastPath("market_data", b"smd+", b"[", _part)
"""The fast path (``b"["``: see :mod:`recorder.normalize.arrow_json`)."""
