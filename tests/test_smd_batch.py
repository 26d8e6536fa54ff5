"""The smd fast path (recorder.normalize.smd_batch) against the per-frame normalizer.

The per-frame path defines the rows; the fast path must give exactly the same tables for any
batch, taking the frames it can prove and declining the rest. Every test here compares
``normalize(batch)`` with ``normalize(batch, fast_path=False)`` value for value (NaN, -0.0 and
the map ``extra`` included), and checks the fast path really took the frames it should.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.benchmark.frames import as_frames, mixed_payloads
from recorder.frames import OUT, Frame, event_frame
from recorder.normalize.smd_batch import PATH
from tests.real_frames import real_frames
from tests.same_rows import (
    T0,
    assert_same,
    fast_paths_for_small_batches,
    frames_of,
    has_blank,
    taken,
)

is_candidate, normalize_smd = PATH.is_candidate, PATH.rows


def all_candidates(payloads: list[bytes]) -> bool:
    return PATH.joined_candidates(b"\n".join(payloads), len(payloads))


@pytest.fixture(autouse=True, scope="module")
def _small_batches_take_the_fast_paths() -> Iterator[None]:
    with fast_paths_for_small_batches():
        yield

# --- real and simulator frames ---------------------------------------------------------------


def test_real_smd_frames_give_the_same_rows_and_are_taken() -> None:
    real = real_frames("smd")
    payloads = (real * (40 // len(real) + 1))[:40]
    frames = frames_of(payloads)
    out = assert_same(frames)
    assert out["market_data"].num_rows == 40
    # the real frames are plain: every one goes the fast way, but for the unknown conid's
    # "31":"N/A", a blank, which the per-frame path lists in `cleared`
    blank = [p for p in payloads if has_blank(p)]
    assert blank and out["market_data"].column("cleared").to_pylist().count(["31"]) == len(blank)
    assert taken(frames) == sum(1 for p in payloads if is_candidate(p)) - len(blank)
    assert taken(frames) >= 30


def test_the_simulators_mix_gives_the_same_rows_and_smd_goes_the_fast_way() -> None:
    frames = as_frames(mixed_payloads(3_000, seed=7))
    for start in range(0, len(frames), 1_000):
        batch = frames[start:start + 1_000]
        assert_same(batch)
        smd = [f for f in batch if b'"topic":"smd+' in f.payload and not has_blank(f.payload)]
        assert taken(batch) == len(smd)


def test_frames_with_a_blank_go_frame_by_frame_and_list_it() -> None:
    plain = real_frames("smd")[1]
    blanks = [plain.replace(b'"topic"', b'"%s":"%s","topic"' % (key, blank))
              for key in (b"84", b"7762", b"6508") for blank in (b"", b"N/A", b"-")]
    frames = frames_of([plain, *blanks, plain])
    out = assert_same(frames)
    assert taken(frames) == 2
    cleared = out["market_data"].column("cleared").to_pylist()
    assert cleared == [None, *[[k] for k in ("84", "7762", "6508") for _ in range(3)], None]


def test_declined_frames_keep_their_place_among_taken_ones() -> None:
    real = real_frames("smd")
    odd = [
        real[0].replace(b'"84":"271.55"', b'"84":"271\x99"'),  # not ASCII: per frame
        real[1].replace(b'"31":"271.67"', b'"31":"0.5%"'),  # outside the grammar
        real[2].replace(b'"topic"', b'"error":null,"topic"'),  # an error key
        b'{"topic":"smd+1","conid":1,"_updated":1,"31":"x","31":"2"}',  # duplicate key
        b'{"topic":"smd+1" , "conid": "265598"}',  # conid as a string
    ]
    payloads: list[bytes] = []
    for i in range(60):
        payloads.append(real[i % len(real)])
        if i % 12 == 5:
            payloads.append(odd[(i // 12) % len(odd)])
    frames = frames_of(payloads)
    frames.insert(7, Frame(T0, 1, 10_000, OUT, b'smd+265598+{"fields":["31"]}'))
    frames.insert(9, event_frame(T0, 1, 10_001, "subscribe", "smd+265598",
                                 {"topic": "smd+265598"}))
    out = assert_same(frames)
    assert 0 < taken(frames) < out["market_data"].num_rows


def test_a_batch_arrow_cannot_read_is_split_and_still_the_same() -> None:
    # 83 is a JSON number in some frames and a string in others: Arrow refuses the whole batch
    base = b'{"server_id":"q1","conid":265598,"_updated":1777552110061,"83":%s,"topic":"smd+1"}'
    payloads = [base % (b'0.56' if i % 31 else b'"0.56"') for i in range(64)]
    frames = frames_of(payloads)
    assert_same(frames)
    assert 0 < taken(frames) < 64


def test_values_at_the_edge_of_the_grammar() -> None:
    values = ["271.55", "1,965", "9.2M", "12.2M", "3.4K", "1.1B", "-0.5", "-0", "007",
              "1,2,3", "1,", "1,.5", "12,345.678K", "", "N/A", "-", "n/a", "NA", " ", "5.",
              ".5", "+5", "1e5", "nan", "inf", "12.2m", "0.5%", " 5 ", "abc", "K", "-K",
              "123456789012345678901234567890", "0.1000000000000000055511151231257827",
              "1" + "0" * 400 + "K", "1" + "0" * 309, "1" + "0" * 305 + "K"]  # past a float
    payloads = []
    for i, value in enumerate(values * 2):
        field = ("84", "85", "87", "7762", "31", "7296", "6508")[i % 7]
        payloads.append(b'{"server_id":"q1","conid":1,"_updated":1,"%s":"%s","topic":"smd+1"}'
                        % (field.encode(), value.encode()))
    for prefix in ("C", "H"):
        for value in ("271.67", "1,234.5", "", "N/A", "C1", "2.5K"):
            payloads.append(b'{"conid":1,"31":"%s%s","topic":"smd+1"}'
                            % (prefix.encode(), value.encode()))
    frames = frames_of(payloads)
    assert_same(frames)
    assert taken(frames) > len(payloads) // 2


def test_the_buffer_wide_candidate_test_agrees_with_the_per_frame_one() -> None:
    plain = real_frames("smd")
    assert all_candidates(plain) == all(is_candidate(p) for p in plain)
    for bad in (b'{"topic":"smd+1","55":"A\\u00e9"}', b'{"topic":"smd+1",\n"55":"A"}',
                b'{"topic":"smd+1","55":"\xc3\xa9"}', b'{"topic":"smd+1",\r"55":"A"}'):
        assert not is_candidate(bad)
        assert not all_candidates([*plain, bad])


def test_normalize_smd_declines_rather_than_guesses() -> None:
    payloads = [b'{"topic":"smd+1","conid":1,"84":"1.5"}', b'{"topic":"smd+1","84":true}',
                b'{"topic":"sbd+1","conid":1}', b'{"topic":"smd+1","_updated":-5}',
                b'{"topic":"smd+1","server_id":"q1","6119":"q2"}',
                b'{"topic":"smd+1","6508":"a","6510":"b"}', b'{"topic":"smd+1","87_raw":NaN}']
    batch = normalize_smd(payloads, list(range(7)), list(range(7)))
    assert batch.positions == [0]
    assert batch.table.column("bid").to_pylist() == [1.5]
    assert batch.topics == ["smd+1"]


# --- generated frames ------------------------------------------------------------------------

_DISPLAY = st.sampled_from(
    ["271.55", "1,965", "9.2M", "3.4K", "1.1B", "", "N/A", "-", "n/a", "NA", "C271.67", "H12.5",
     "C", "CN/A", "12.2m", " 5 ", "1e5", "nan", "+5", ".5", "0.5%", "abc", "007", "-0", "q1",
     "&serviceID1=122", "DPB", "-1,234.5K"])
_TEXT_VALUE = st.text(alphabet="0123456789,.-KMBCH N/Aq", max_size=8)
_TOKEN = (
    _DISPLAY.map(lambda s: f'"{s}"') | _TEXT_VALUE.map(lambda s: f'"{s}"')
    | st.integers(-(2**70), 2**70).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.sampled_from(["null", "true", "NaN", "Infinity", "[1]", '{"a":1}', '"\\u00e9"'])
)
_KEYS = ["31", "84", "86", "85", "88", "7059", "87", "87_raw", "7762", "70", "71", "7295",
         "7296", "7741", "82", "83", "7635", "55", "6509", "6508", "6119", "server_id",
         "conidEx", "_updated", "conid", "9999", "error"]


@st.composite
def smd_payloads(draw: st.DrawFn) -> bytes:
    plain = draw(st.booleans())  # half the frames look like real ones, to be taken
    items: list[tuple[str, str]] = []
    if plain:
        items += [("server_id", '"q1"'), ("conid", "265598"),
                  ("_updated", str(draw(st.integers(0, 2**42)))), ("6119", '"q1"')]
    for key in draw(st.lists(st.sampled_from(_KEYS[:-1] if plain else _KEYS), max_size=6)):
        token = draw(_DISPLAY.map(lambda s: f'"{s}"')) if plain else draw(_TOKEN)
        items.append((key, token))
    if not plain and draw(st.integers(0, 9)) == 0:
        items += items[:1]  # a duplicate key
    items.insert(draw(st.integers(0, len(items))), ("topic", '"smd+265598"'))
    if plain:  # a key only once, the last value winning as in orjson
        items = list({k: (k, v) for k, v in items}.values())
    text = "{" + ",".join(f'"{k}":{v}' for k, v in items) + "}"
    return text.encode()


_OTHERS = [b'{"topic":"sbd+DU1+265598","data":[{"row":0,"focus":1,"price":"100 @ 1.5"}]}',
           b'{"topic":"system","hb":1777552110061}', b'not json', b'{"topic":"smd+1"}\xff']


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(smd_payloads(), min_size=16, max_size=48),
       st.lists(st.sampled_from(_OTHERS), max_size=4))
def test_any_batch_gives_the_same_tables_on_both_paths(smd: list[bytes],
                                                       others: list[bytes]) -> None:
    payloads = smd[:8] + others + smd[8:]
    assert_same(frames_of(payloads))


def test_blanks_padded_with_spaces_are_treated_alike_on_both_paths() -> None:
    """A field with no typed column keeps its raw string in ``extra`` unless it is exactly a
    documented blank. The per-frame path used to strip first, so ``" "`` or ``" N/A"`` was
    dropped live but kept after a recovery (the fast path): the same frames, other rows."""
    values = [" ", " N/A", "- ", "\tNA", "\u00a0", "", "N/A", "x "]
    payloads = [b'{"server_id":"q1","conidEx":"265598","conid":265598,"_updated":1777552110061,'
                b'"6119":"q1","84":"271.55","%s":"%s","topic":"smd+265598"}'
                % (field, value.encode()) for field in (b"7051", b"9999") for value in values]
    frames = frames_of(payloads * 2)
    assert_same(frames)
    padded = frames_of([p for p in payloads if b'"7051":" ' in p or b'"7051":"- "' in p] * 8)
    assert len(padded) == 24 and taken(padded) == 24, "the fast path took the padded blanks"
    assert_same(padded)
