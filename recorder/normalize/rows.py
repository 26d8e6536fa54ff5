"""Row building shared by the topic handlers, and the normalizer's one documented error.

A row is a tuple in the column order of its table's schema. :func:`fill` builds one from a JSON
object and a spec ``{key: (column index, converter)}``: the first two columns are always
``recv_ts`` and ``seq``, the last is always ``extra``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from recorder.values import is_blank, raw_text

Row = tuple[Any, ...]
Converter = Callable[[object], Any]

EXCERPT_CHARS = 200


class NormalizeError(ValueError):
    """A frame the normalizer cannot read: not JSON, not an object, or a topic frame whose shape
    is wrong. :func:`recorder.normalizer.normalize` turns it into an ``events`` row of kind
    ``malformed`` (the frame's ``raw`` row is kept); nothing else is ever raised for a frame."""


def fill(
    item: Mapping[str, Any],
    spec: Mapping[str, tuple[int, Converter]],
    width: int,
    recv_ts_ns: int,
    seq: int,
) -> Row:
    """One row of ``width`` columns from ``item`` (see the module rules for ``extra``)."""
    row: list[Any] = [None] * width
    row[0] = recv_ts_ns
    row[1] = seq
    extra: list[tuple[str, str]] | None = None
    for key, value in item.items():
        target = spec.get(key)
        if target is not None:
            slot, convert = target
            parsed = convert(value)
            if parsed is not None:
                current = row[slot]
                if current is None:
                    row[slot] = parsed
                    continue
                if current == parsed:
                    continue
                # two keys of one column disagree: the spec's first key wins (rare, so the
                # search for the key that filled the column is paid only here)
                first = next(k for k, (at, _) in spec.items() if at == slot)
                if key == first:
                    row[slot] = parsed
                    key, value = next((k, item[k]) for k, (at, _) in spec.items()
                                      if at == slot and k != key and k in item)
            elif is_blank(value):
                continue
        if extra is None:
            extra = []
        extra.append((key, raw_text(value)))
    row[width - 1] = extra
    return tuple(row)


def malformed_detail(error: str, direction: str, payload: object) -> str:
    """The ``detail`` of a ``malformed`` event: the error and a short lenient-decoded excerpt."""
    if isinstance(payload, bytes | bytearray):
        excerpt = bytes(payload[: EXCERPT_CHARS * 4]).decode("utf-8", "replace")[:EXCERPT_CHARS]
        size = len(payload)
    else:
        excerpt, size = repr(payload)[:EXCERPT_CHARS], -1
    return orjson.dumps(
        {"error": error, "direction": direction, "bytes": size, "excerpt": excerpt}
    ).decode()
