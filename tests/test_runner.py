"""When ``--until HH:MM`` stops a recording: the next such time in the output timezone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from recorder.runner import seconds_until

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
