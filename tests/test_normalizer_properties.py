"""Property tests: for any bytes, and for mutated real frames, the normalizer returns rows or
raises :class:`NormalizeError` (per frame), and :func:`normalize` never raises, never drops a
frame, and always returns tables of exactly the declared schemas."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.frames import EVENT, IN, OUT, Frame
from recorder.normalizer import NormalizeError, Rows, normalize, normalize_frame
from recorder.schema import TABLES, arrow_schema
from tests.real_frames import FRAMES_DIR as REAL_FRAMES_DIR

FRAMES_DIR = REAL_FRAMES_DIR
REAL = sorted(
    json.loads(line)["frame"].encode()
    for path in FRAMES_DIR.glob("*.jsonl")
    for line in path.read_text().splitlines()
    if line
)


def _parses(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


REAL_OBJECTS = [obj for obj in map(_parses, REAL) if isinstance(obj, dict)]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)  # fmt: skip


def check_frame(frame: Frame) -> Rows | NormalizeError:
    """Rows or the documented error, never anything else; rows fit their schemas."""
    try:
        got = normalize_frame(frame)
    except NormalizeError as exc:
        return exc
    assert set(got) <= set(TABLES)
    for table, rows in got.items():
        width = len(arrow_schema(table))
        assert rows and all(len(r) == width for r in rows)
    return got


def check_batch(frames: list[Frame]) -> None:
    """normalize never raises, keeps one raw row per in/out frame, and fits the schemas."""
    out = normalize(frames)
    for name, table in out.items():
        assert table.schema.equals(arrow_schema(name))
        assert table.num_rows > 0
    raw_expected = [(f.seq, f.payload) for f in frames if f.direction in (IN, OUT)]
    raw = out.get("raw")
    got = [] if raw is None else list(zip(raw["seq"].to_pylist(), raw["payload"].to_pylist(),
                                          strict=True))  # fmt: skip
    assert got == raw_expected
    # every in frame gives rows somewhere besides raw unless it is a data frame with no elements
    seqs: set[int] = set()
    for name, table in out.items():
        if name != "raw":
            seqs |= set(table.column("frame_seq" if name == "depth" else "seq").to_pylist())
    for f in frames:
        if f.direction == EVENT:
            assert f.seq in seqs
    events = out.get("events")
    malformed = set() if events is None else {
        s for s, k in zip(events["seq"].to_pylist(), events["kind"].to_pylist(), strict=True)
        if k == "malformed"
    }  # fmt: skip
    for f in frames:
        if f.direction == IN and isinstance(check_frame(f), NormalizeError):
            assert f.seq in malformed


def frames_of(payloads: list[bytes], direction: str = IN) -> list[Frame]:
    return [Frame(1_000 * i, 1, i, direction, p) for i, p in enumerate(payloads)]


@SETTINGS
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_arbitrary_bytes(payloads: list[bytes]) -> None:
    check_batch(frames_of(payloads))
    check_batch(frames_of(payloads, OUT))
    check_batch(frames_of(payloads, EVENT))


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A real frame with byte-level damage: flips, cuts, insertions (0x99 among them)."""
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"\x99", b"\xff\xfe", b",", b"}", b'"', b"\\"]))
        elif data:
            del data[at]
    return bytes(data)


@SETTINGS
@given(st.lists(mutated_bytes(), min_size=1, max_size=5))
def test_byte_mutated_real_frames(payloads: list[bytes]) -> None:
    check_batch(frames_of(payloads))


@st.composite
def mutated_objects(draw: st.DrawFn) -> bytes:
    """A real frame as JSON with values replaced by arbitrary JSON: valid JSON, odd shapes."""
    obj = json.loads(json.dumps(draw(st.sampled_from(REAL_OBJECTS))))
    targets: list[dict[str, Any]] = [obj]
    for value in obj.values():  # one level down: args/data elements and spl accounts
        if isinstance(value, list):
            targets += [v for v in value if isinstance(v, dict)]
        elif isinstance(value, dict):
            targets += [value] + [v for v in value.values() if isinstance(v, dict)]
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(targets))
        keys = sorted(target) or ["x"]
        key = draw(st.sampled_from(keys) | st.text(max_size=5))
        target[key] = draw(json_values)
    return json.dumps(obj).encode()  # json, not orjson: ints beyond 64 bits are valid JSON


@SETTINGS
@given(st.lists(mutated_objects(), min_size=1, max_size=5))
def test_value_mutated_real_frames(payloads: list[bytes]) -> None:
    check_batch(frames_of(payloads))
    for f in frames_of(payloads):
        result = check_frame(f)
        if isinstance(result, NormalizeError):
            # only a shape problem may reject valid JSON; odd values never do
            assert (
                "frame has no" in str(result)
                or "not an object" in str(result)
                or "without an" in str(result)
                or "topic is not a string" in str(result)
            )


def test_real_frames_all_fit() -> None:
    out = normalize(frames_of(REAL))
    counts = {name: table.num_rows for name, table in out.items()}
    assert counts == {"market_data": 88, "bars": 2, "orders": 13, "trades": 8, "pnl": 2,
                      "events": 73, "raw": 184}  # fmt: skip
