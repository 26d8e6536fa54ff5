"""The depth fast path (recorder.normalize.sbd_batch) against the per-frame normalizer.

Same contract as tests/test_smd_batch.py: for any batch, ``normalize`` with and without fast
paths gives the same tables, value for value, and plain ladders really go the fast way.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.benchmark.frames import as_frames, mixed_payloads
from recorder.normalize.sbd_batch import PATH
from tests.same_rows import assert_same, fast_paths_for_small_batches, frames_of, taken


@pytest.fixture(autouse=True, scope="module")
def _small_batches_take_the_fast_paths() -> Iterator[None]:
    with fast_paths_for_small_batches():
        yield

LADDER = (b'{"topic":"sbd+DU1234567+265598","data":[{"row":0,"focus":0,"price":"271.68",'
          b'"ask":"30"},{"row":1,"focus":1,"price":"37 @ 271.62"},{"row":2,"focus":0,'
          b'"price":"271.62","bid":"1,231"}]}')


def test_the_simulators_ladders_give_the_same_rows_and_go_the_fast_way() -> None:
    frames = as_frames(mixed_payloads(6_000, seed=3))
    out = assert_same(frames)
    ladders = [f for f in frames if b'"topic":"sbd+' in f.payload]
    assert len(ladders) >= 16
    assert taken(frames, "depth") == len(ladders)
    assert out["depth"].num_rows > 10 * len(ladders)


def test_odd_ladders_are_declined_and_keep_their_place() -> None:
    odd = [
        LADDER.replace(b'"37 @ 271.62"', b'"37@271.62"'),  # not exactly " @ "
        LADDER.replace(b'"ask":"30"', b'"ask":"30","note":"x","more":"y"'),  # two extras
        LADDER.replace(b'"row":2', b'"row":"2"'),  # a string row number
        LADDER.replace(b'"row":2', b'"row":4294967296'),  # outside int32
        LADDER.replace(b'DU1234567+265598', b'DU1234567+ 265598'),  # conid read as the slow way
        LADDER.replace(b'{"topic"', b'{"error":"no depth","topic"'),  # an events row
        LADDER.replace(b'"data":[', b'"data":[null,'),  # a null row: the frame is refused
        b'{"topic":"sbd+DU1+1","data":[]}',  # no rows at all
        b'{"topic":"sbd+DU1+1","data":"none"}',  # not a list
        b'{"topic":"sbd+DU1+1","data":[{}]}',  # a row with no keys
        LADDER.replace(b'"price":"271.68"', b'"price":"","size":"N/A"'),  # blanks
        LADDER.replace(b'sbd+DU1234567+265598', b'sbd+DU1234567+265598+ISLAND'),
        LADDER.replace(b'"bid":"1,231"', b'"bid":"1.2K","ask":"0.5%"'),
        LADDER.replace(b'"bid":"1,231"', b'"bid":"1' + b"0" * 400 + b'K"'),  # past a float
    ]
    payloads = []
    for i in range(40):
        payloads.append(LADDER)
        if i % 3 == 1:
            payloads.append(odd[(i // 3) % len(odd)])
    frames = frames_of(payloads)
    assert_same(frames)
    # a type that changes between frames ("row":"2") makes Arrow refuse a part, and an error
    # key declines its part: their plain ladders are declined with them; the rest go fast
    assert 10 < taken(frames, "depth") < len(payloads)


def test_normalize_sbd_declines_rather_than_guesses() -> None:
    payloads = [LADDER, LADDER.replace(b'"37 @ 271.62"', b'"37 @ x"'),
                b'{"topic":"sbd+A+1","data":[{"row":0,"price":"1","bid":true}]}',
                b'{"topic":"smd+1","data":[{"row":0}]}']
    batch = PATH.rows(payloads, [1, 2, 3, 4], [1, 2, 3, 4])
    assert batch.positions == [0]
    assert batch.table.column("size").to_pylist() == [None, 37.0, None]
    assert batch.table.column("price").to_pylist() == [271.68, 271.62, 271.62]
    assert batch.table.column("bid_size").to_pylist() == [None, None, 1231.0]
    assert batch.row_frames == [0, 0, 0]


_VALUE = st.sampled_from(['"271.5"', '"1,231"', '"1.2K"', '""', '"N/A"', '"-"', '"x"', "12",
                          "1.5", "null", "true", '"37 @ 271.62"', '"37@1"', '"1 @ "', "[1]",
                          '" 5"', "NaN"])


@st.composite
def ladders(draw: st.DrawFn) -> bytes:
    rows = []
    for i in range(draw(st.integers(0, 4))):
        items = [f'"row":{i}', '"focus":0']
        for key in draw(st.lists(st.sampled_from(["price", "bid", "ask", "row", "note"]),
                                 max_size=3, unique=True)):
            if key != "row":
                items.append(f'"{key}":{draw(_VALUE)}')
        rows.append("{" + ",".join(items) + "}")
    topic = draw(st.sampled_from(["sbd+DU1+265598", "sbd+DU1+265598+ARCA", "sbd+DU1+x",
                                  "sbd+DU1", "sbd++1"]))
    data = ",".join(rows)
    return f'{{"topic":"{topic}","data":[{data}]}}'.encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ladders(), min_size=16, max_size=40))
def test_any_batch_of_ladders_gives_the_same_tables_on_both_paths(payloads: list[bytes]) -> None:
    assert_same(frames_of([LADDER] * 16 + payloads))
