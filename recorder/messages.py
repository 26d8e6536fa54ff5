"""Error text for people: what an exception says, as one line of a message."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (DuckDB and pyarrow add context lines after it), or
    its type's name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def os_reason(exc: OSError) -> str:
    """``reason: path`` of a system error (``No space left on device: /data/x``)."""
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
