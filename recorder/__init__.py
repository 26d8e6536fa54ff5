"""ibkr-recorder: records the IBKR Client Portal websocket to crash-safe Parquet.

Public face:

- ``recorder.open(DIR)``: a DuckDB connection with a view per table (see ``recorder.views``).
- ``recorder.__version__``.

Everything else is reached through the ``recorder`` command line (``recorder --help``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import duckdb


def open(path: Any) -> duckdb.DuckDBPyConnection:  # noqa: A001 - the documented name
    """Open a recording folder: a DuckDB connection with one view per table. An empty folder
    opens (its views fill as a recording publishes); one holding other things but no recording
    raises ``recorder.views.NoRecording``, a missing one ``FileNotFoundError``."""
    from recorder.views import open_views

    return open_views(path)


__all__ = ["__version__", "open"]
