"""Both normalizer paths, compared: the fast paths must give exactly the per-frame rows."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

import recorder.normalizer as normalizer
from recorder.frames import IN, Frame
from recorder.normalizer import _fast_paths, normalize

T0 = 1_777_552_110_061_000_000


@contextmanager
def fast_paths_for_small_batches() -> Iterator[None]:
    """Let the fast paths take batches of any size (the tests' batches are small), so both
    paths can be compared on hand-made frames."""
    saved = normalizer.FAST_BATCH_MIN, dict(normalizer.FAST_MIN_FRAMES)
    normalizer.FAST_BATCH_MIN = 1
    normalizer.FAST_MIN_FRAMES.update(dict.fromkeys(normalizer.FAST_MIN_FRAMES, 1))
    try:
        yield
    finally:
        normalizer.FAST_BATCH_MIN = saved[0]
        normalizer.FAST_MIN_FRAMES.update(saved[1])


def _value(v: Any) -> Any:
    """A cell made comparable: NaN as a marker, -0.0 kept apart from 0.0, maps as lists."""
    if isinstance(v, float):
        return ("nan",) if math.isnan(v) else (v, math.copysign(1.0, v))
    if isinstance(v, list):
        return [tuple(_value(x) for x in item) if isinstance(item, tuple) else _value(item)
                for item in v]
    return v


def _rows(table: pa.Table) -> list[list[Any]]:
    return [[_value(v) for v in row.values()] for row in table.to_pylist()]


def assert_same(frames: list[Frame]) -> dict[str, pa.Table]:
    fast = normalize(frames)
    slow = normalize(frames, fast_path=False)
    assert list(fast) == list(slow)
    for name in slow:
        assert fast[name].schema.equals(slow[name].schema, check_metadata=True), name
        assert _rows(fast[name]) == _rows(slow[name]), name
    return fast


def frames_of(payloads: list[bytes]) -> list[Frame]:
    return [Frame(T0 + i * 1000, 1, i + 1, IN, p) for i, p in enumerate(payloads)]


def taken(frames: list[Frame], table: str = "market_data") -> int:
    """How many frames ``table``'s fast path took."""
    batch = _fast_paths(frames).get(table)
    return 0 if batch is None else len(batch.positions)


_BLANK = re.compile(rb'"(?!55"|6509")[^"]*":"(?:|N/A|-|n/a|NA)"')


def has_blank(payload: bytes) -> bool:
    """An smd frame with a field sent blank (55 and 6509 are verbatim text): the smd fast path
    declines it, so the per-frame path lists the field in ``cleared``."""
    return _BLANK.search(payload) is not None
