"""The runner's pure parts: when ``--until HH:MM`` stops a recording (the next such time in
the output timezone), and when a stop gives up on a failing storage."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from recorder.runner import STORAGE_STUCK_SECONDS, StopWatch, seconds_until
from recorder.storage import StorageStats

NY = ZoneInfo("America/New_York")


def at(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NY).timestamp()


def test_later_today() -> None:
    assert seconds_until(dt.time(16, 5), "America/New_York", at(2026, 11, 20, 9, 25)) == (
        6 * 3600 + 40 * 60)


def test_already_past_means_tomorrow() -> None:
    assert seconds_until(dt.time(9, 0), "America/New_York", at(2026, 11, 20, 9, 30)) == (
        23.5 * 3600)


def test_the_timezone_is_the_output_timezone_not_the_machine() -> None:
    now = at(2026, 11, 20, 9, 0)  # 14:00 UTC, 15:00 in Paris
    assert seconds_until(dt.time(16, 0), "Europe/Paris", now) == 3600


def test_across_a_dst_change_counts_real_seconds() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: from 00:30 to 03:00 is 3.5 real hours
    assert seconds_until(dt.time(3, 0), "America/New_York", at(2026, 11, 1, 0, 30)) == 3.5 * 3600


FULL = "journal write: OSError: [Errno 28] No space left on device"


def test_a_stop_gives_up_on_storage_failing_with_no_progress() -> None:
    watch = StopWatch(now=100.0)
    assert not watch.stuck(StorageStats(frames=40, failing=FULL), 100.5)
    assert not watch.stuck(StorageStats(frames=40, failing=FULL), 104.0)
    assert watch.stuck(StorageStats(frames=40, failing=FULL), 100.5 + STORAGE_STUCK_SECONDS)


def test_progress_while_failing_starts_the_wait_again() -> None:
    watch = StopWatch(now=0.0)
    assert not watch.stuck(StorageStats(frames=40, failing=FULL), 0.5)
    assert not watch.stuck(StorageStats(frames=90, failing=FULL), 4.0)  # journaled some
    assert not watch.stuck(StorageStats(frames=90, failing=FULL), 8.0)
    assert watch.stuck(StorageStats(frames=90, failing=FULL), 4.0 + STORAGE_STUCK_SECONDS)


def test_a_slow_publish_after_a_recovered_error_is_waited_for() -> None:
    """The error is on record (``last_error``) but storage is no longer failing: a final
    publish of a big folder may take longer than the limit, and must not be given up."""
    watch = StopWatch(now=0.0)
    recovered = StorageStats(frames=40, last_error=FULL, failing=None)
    assert not any(watch.stuck(recovered, t) for t in (0.5, 5.0, 60.0, 600.0))
    assert not watch.stuck(StorageStats(frames=40, last_error=FULL, failing=FULL), 601.0)
    assert watch.stuck(StorageStats(frames=40, last_error=FULL, failing=FULL),
                       601.0 + STORAGE_STUCK_SECONDS)
