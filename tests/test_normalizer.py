"""The normalizer on every real frame in tests/fixtures/frames, with exact rows.

Frames are fed as the socket would: exact wire bytes, ``direction="in"``. Where an encoding the
contract names is not in the real captures (``1,236``, ``""``, ``H`` prefix, ``size @ price``,
sbd at all, smh with ``t``/``v``), the test builds a frame in the real shape and says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from recorder.frames import Frame
from recorder.normalize.market_data import smd_rows
from recorder.normalizer import normalize
from recorder.schema import TABLES, arrow_schema
from tests.real_frames import FRAMES_DIR as REAL_FRAMES_DIR

FRAMES_DIR = REAL_FRAMES_DIR
T0 = 1_777_552_110_000_000_000  # a recv_ts in ns; row n gets T0 + n µs


def real(name: str) -> list[str]:
    """The exact wire texts of ``frames/<name>.jsonl``, in file order."""
    path = FRAMES_DIR / f"{name}.jsonl"
    return [json.loads(line)["frame"] for line in path.read_text().splitlines() if line]


def frame(text: str | bytes, seq: int = 0, direction: str = "in") -> Frame:
    payload = text.encode() if isinstance(text, str) else text
    return Frame(T0 + seq * 1000, 1, seq, direction, payload)


def rows(tables: dict[str, pa.Table], table: str) -> list[dict[str, Any]]:
    """A table's rows as dicts, timestamps as their integer values (ns or ms)."""
    t = tables[table]
    assert t.schema.equals(arrow_schema(table)), (t.schema, arrow_schema(table))
    cols = {
        name: (col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col)
        for name, col in zip(t.column_names, t.columns, strict=True)
    }
    return pa.table(cols).to_pylist()


def one(text: str, table: str, seq: int = 0) -> dict[str, Any]:
    out = normalize([frame(text, seq)])
    assert set(out) == {table, "raw"}, set(out)
    (row,) = rows(out, table)
    return row


MD_EMPTY = dict.fromkeys(
    ["updated", "conid", "conid_ex", "server_id", "symbol", "last", "last_is_close", "halted",
     "bid", "ask", "bid_size", "ask_size", "last_size", "volume", "high", "low", "open",
     "close", "prior_close", "change", "change_pct", "mark", "md_availability", "extra",
     "cleared"]
)  # fmt: skip


def md(**values: Any) -> dict[str, Any]:
    return {**MD_EMPTY, **values}


# --- every real frame --------------------------------------------------------------------

SEQ = {t: "frame_seq" if t == "depth" else "seq" for t in TABLES}
# per file: the table each frame's rows land in (besides raw)
EXPECTED_TABLE: dict[str, Sequence[str | None]] = {
    "act": ["events"],
    "errors": ["events"],
    "ntf": ["events"],  # malformed: invalid JSON as published
    "other": ["events"] * 3,
    "smd": ["market_data"] * 88 + ["events"],  # the last has a trailing comma
    "smh": ["bars"],
    "sor": ["orders"] * 11 + ["events"],  # the last has trailing commas
    "spl": ["pnl"] * 2,
    "str": [None] + ["trades"] * 8,  # the first is `args: []`: raw only
    "sts": ["events"] * 6,
    "system": ["events"] * 35,
    "tic": ["events"] * 24,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TABLE))
def test_every_real_frame_lands(name: str) -> None:
    texts = real(name)
    assert len(texts) == len(EXPECTED_TABLE[name])
    batch = [frame(t, i) for i, t in enumerate(texts)]
    out = normalize(batch)
    raw = rows(out, "raw")
    assert [(r["seq"], r["direction"], r["payload"]) for r in raw] == [
        (i, "in", t.encode()) for i, t in enumerate(texts)
    ]
    for i, expected in enumerate(EXPECTED_TABLE[name]):
        got = {t for t, table in out.items() if i in table.column(SEQ[t]).to_pylist()}
        assert got - {"raw"} == ({expected} if expected else set()), (name, i, texts[i][:80])


# --- smd -> market_data --------------------------------------------------------------------


def test_smd_duplicated_snapshot_gives_two_equal_rows() -> None:
    first, second = real("smd")[:2]
    out = normalize([frame(first, 0), frame(second, 1)])
    a, b = rows(out, "market_data")
    expected = md(
        updated=1777552110061, conid=265598, conid_ex="265598", server_id="q1",
        last=271.67, last_is_close=False, halted=False, bid=271.55, ask=271.66,
        change_pct=0.56, md_availability="DPB",
    )  # fmt: skip
    assert a == {"recv_ts": T0, "seq": 0, **expected}
    assert b == {"recv_ts": T0 + 1000, "seq": 1, **expected}
    assert [r["topic"] for r in rows(out, "raw")] == ["smd+265598", "smd+265598"]


def test_smd_delta_keeps_unrequested_6508_in_extra() -> None:
    row = one(real("smd")[2], "market_data")
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(updated=1777552119103, conid=265598, conid_ex="265598", server_id="q1",
             last=271.68, last_is_close=False, halted=False, bid=271.68, ask=271.70,
             extra=[("6508", "&serviceID1=122&serviceID2=123&serviceID3=203&serviceID4=775"
                             "&serviceID5=204&serviceID6=206&serviceID7=108&serviceID8=109")]),
    }  # fmt: skip


def test_smd_close_prefix_c4735() -> None:
    text = next(t for t in real("smd") if '"C4735.10"' in t)
    row = one(text, "market_data")
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(updated=1777552275004, conid=38708077, conid_ex="38708077", server_id="q16",
             last=4735.10, last_is_close=True, halted=False, bid=4712.49, ask=4741.13,
             extra=[("6508", "&serviceID1=460&serviceID2=461")]),
    }  # fmt: skip


def test_smd_unusable_conid_na_and_dash() -> None:
    text = next(t for t in real("smd") if '"N/A"' in t)
    row = one(text, "market_data")
    # "55":"-" is kept verbatim (a string column); "31":"N/A" is a documented blank: null, and
    # listed in cleared (no last price now, which a delta without 31 does not say).
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(updated=1777552273600, conid=8595, conid_ex="8595", server_id="q14", symbol="-",
             cleared=["31"]),
    }  # fmt: skip


def test_smd_volume_12_2m_with_87_raw() -> None:
    text = next(t for t in real("smd") if '"12.2M"' in t)
    assert '"87_raw":1.22E7' in text
    row = one(text, "market_data")
    # 2021 frame: no conidEx; 87_raw is preferred over 87, and 87 is dropped because it parses.
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(updated=1615300714892, conid=265598, conid_ex=None, server_id="q0", last=119.46,
             last_is_close=False, halted=False, volume=12200000.0, md_availability="RpB"),
    }  # fmt: skip


def test_smd_sizes_as_strings() -> None:
    text = next(t for t in real("smd") if '"7059":"100"' in t)
    row = one(text, "market_data")
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(updated=1712596911593, conid=8314, conid_ex="8314", server_id="q2", last=189.60,
             last_is_close=False, halted=False, bid=189.56, ask=189.61, bid_size=200.0,
             ask_size=500.0, last_size=100.0, md_availability="RpB"),
    }  # fmt: skip


def test_smd_constructed_encodings() -> None:
    # Constructed in the real smd shape (envelope as in smd.jsonl, topic last); the values are
    # the REST-snapshot encodings of behaviours.md §22-23: "1,236", "" , "3.4K", H prefix, 7762.
    text = (
        '{"server_id":"q3","conidEx":"721095500","conid":721095500,"_updated":1724934591491,'
        '"6119":"q3","84":"","88":"","85":"1,236","86":"0.21","31":"H0.19","87":"3.4K",'
        '"7762":"3412","70":"0.25","71":"0.17","7295":"0.18","7296":"0.20","7741":"0.2",'
        '"82":"-0.01","83":"-5.00%","7635":"0.20","55":"XYZ","6509":"Dd","7084":"1.2",'
        '"86_raw":0.21,"topic":"smd+721095500"}'
    )
    row = one(text, "market_data")
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(updated=1724934591491, conid=721095500, conid_ex="721095500", server_id="q3",
             symbol="XYZ", last=0.19, last_is_close=False, halted=True, bid=None, ask=0.21,
             bid_size=None, ask_size=1236.0, volume=3412.0, high=0.25, low=0.17, open=0.18,
             close=0.20, prior_close=0.2, change=-0.01, change_pct=-5.0, mark=0.20,
             md_availability="Dd", extra=[("7084", "1.2"), ("86_raw", "0.21")],
             cleared=["84", "88"]),
    }  # fmt: skip


def test_smd_odd_values_go_to_extra_not_an_error() -> None:
    # Constructed: values no parser can read are null in their column and kept verbatim in extra;
    # a 6119 that disagrees with server_id is kept; 87 that does not parse is kept. Envelope
    # keys come first in extra, then the fields in frame order, then the volume sources.
    text = (
        '{"server_id":"q3","conid":"x1","_updated":"soon","6119":"q4","84":"12..5",'
        '"86":{"a":1},"31":"Cxyz","87":"lots","87_raw":1000,"83":true,"topic":"smd+1"}'
    )
    row = one(text, "market_data")
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(server_id="q3", volume=1000.0,
             extra=[("_updated", "soon"), ("conid", "x1"), ("6119", "q4"), ("84", "12..5"),
                    ("86", '{"a":1}'), ("31", "Cxyz"), ("83", "true"), ("87", "lots")]),
    }  # fmt: skip


def test_smd_values_float_reads_but_no_display_number_has_are_odd() -> None:
    """Constructed: ``float()`` reads all of these; a price is none of them."""
    text = ('{"conid":1,"84":"nan","86":"inf","88":"1_000","85":"\\u0661\\u0662","70":"7.5",'
            '"31":"Cnan","topic":"smd+1"}')
    row = one(text, "market_data")
    assert (row["bid"], row["ask"], row["bid_size"], row["ask_size"], row["high"]) == (
        None, None, None, None, 7.5)
    assert row["last"] is None and row["last_is_close"] is None
    assert row["extra"] == [("84", "nan"), ("86", "inf"), ("88", "1_000"),
                            ("85", "\u0661\u0662"), ("31", "Cnan")]


def test_smd_fields_sent_blank_are_listed_in_cleared() -> None:
    """Constructed: a blank is a value withdrawn (behaviours §23: ``"84":""`` when there is no
    bid), which ``cleared`` tells apart from a field the delta did not carry. 55 is verbatim
    text, a JSON null is absent, and "C" with nothing after it is odd, not blank."""
    text = ('{"conid":1,"84":"","86":"N/A","6508":"-","87":"","55":"-","7059":null,"31":"C",'
            '"88":"12","topic":"smd+1"}')
    row = one(text, "market_data")
    assert row == {
        "recv_ts": T0, "seq": 0,
        **md(conid=1, symbol="-", bid_size=12.0, extra=[("31", "C")],
             cleared=["84", "86", "6508", "87"]),
    }  # fmt: skip


def test_smd_a_null_field_after_an_odd_one_keeps_the_odd_one() -> None:
    row = one('{"conid":1,"7000":"odd","84":null,"topic":"smd+1"}', "market_data")
    assert (row["bid"], row["extra"], row["cleared"]) == (None, [("7000", "odd")], None)


@pytest.mark.parametrize(("fields", "server_id", "extra"), [
    ('"6119":"q0"', "q0", None),
    ('"server_id":"q0","6119":"q1"', "q0", [("6119", "q1")]),
    ('"server_id":42', "42", None),
])
def test_smd_6119_and_server_id(fields: str, server_id: str, extra: object) -> None:
    row = one('{"conid":265598,' + fields + ',"topic":"smd+265598"}', "market_data")
    assert (row["server_id"], row["extra"]) == (server_id, extra)


def test_smd_volume_prefers_7762_then_87_raw_then_87() -> None:
    row = one('{"conid":1,"87":"3.0K","87_raw":2000.0,"7762":"1000","topic":"smd+1"}',
              "market_data")
    assert (row["volume"], row["extra"]) == (1000.0, None)
    row = one('{"conid":1,"87":"3.0K","87_raw":2000.0,"topic":"smd+1"}', "market_data")
    assert (row["volume"], row["extra"]) == (2000.0, None)


def test_smd_envelope_values_out_of_range_or_of_another_type() -> None:
    row = one('{"conid":265598,"_updated":-1,"topic":"smd+1"}', "market_data")
    assert (row["updated"], row["extra"]) == (None, [("_updated", "-1")])
    row = one('{"conid":9223372036854775808,"topic":"smd+1"}', "market_data")
    assert (row["conid"], row["extra"]) == (None, [("conid", "9223372036854775808")])
    row = one('{"conid":"265598","_updated":"1777552110061","6119":"q0","conidEx":5,'
              '"topic":"smd+1"}', "market_data")
    assert (row["conid"], row["updated"], row["server_id"], row["extra"]) == (
        265598, 1777552110061, "q0", [("conidEx", "5")])


def test_smd_6119_stands_in_for_missing_server_id() -> None:
    row = one('{"conid":1,"6119":"q7","31":"1.5","topic":"smd+1"}', "market_data")
    assert (row["server_id"], row["last"], row["extra"]) == ("q7", 1.5, None)


def test_smd_handler_is_pure_function_of_frame() -> None:
    text = real("smd")[0]
    f = frame(text, 5)
    assert smd_rows(json.loads(text), "smd+265598", f) == smd_rows(json.loads(text), "x", f)


def test_fast_paths_take_big_batches_only() -> None:
    """A batch parse has a fixed cost: small batches (a quiet minute) go frame by frame, busy
    ones take the smd and depth fast paths; both give the same rows (tests/test_*_batch.py)."""
    from recorder.benchmark.frames import as_frames, mixed_payloads
    from recorder.normalizer import _fast_paths
    from tests.same_rows import has_blank

    frames = as_frames(mixed_payloads(5_000, seed=5))
    busy = _fast_paths(frames)
    assert set(busy) == {"market_data", "depth"}
    smd = sum(1 for f in frames if b'"topic":"smd+' in f.payload and not has_blank(f.payload))
    assert len(busy["market_data"].positions) == smd  # a frame with a blank goes frame by frame
    assert _fast_paths(frames[:900]) == {}
