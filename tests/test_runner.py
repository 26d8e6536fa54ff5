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


def test_a_time_the_clock_skips_stops_when_the_clock_passes_it() -> None:
    """2026-03-08: 02:00 EST becomes 03:00 EDT, so 02:30 never shows. It used to read as
    02:30 EST, which is 03:30 EDT: an hour late. Now the recording stops at the change."""
    midnight = at(2026, 3, 8, 0, 0)
    change = dt.datetime(2026, 3, 8, 7, 0, tzinfo=dt.UTC).timestamp()  # 03:00 EDT
    assert seconds_until(dt.time(2, 30), "America/New_York", midnight) == change - midnight
    assert seconds_until(dt.time(3, 30), "America/New_York", midnight) == change + 1800 - midnight


def test_a_time_the_clock_shows_twice_stops_the_first_time() -> None:
    # 2026-11-01: 01:30 EDT, then an hour later 01:30 EST
    assert seconds_until(dt.time(1, 30), "America/New_York", at(2026, 11, 1, 0, 0)) == 5400


FULL = "journal write: OSError: [Errno 28] No space left on device"


def waiting(frames: int = 40, files: int = 0, **kw: object) -> StorageStats:
    """Storage between two failed attempts (in its backoff), after ``frames`` and ``files``."""
    return StorageStats(frames=frames, files_published=files, failing=FULL, **kw)  # type: ignore[arg-type]


def stuck_at(watch: StopWatch, samples: list[tuple[float, StorageStats]]) -> list[bool]:
    return [watch.stuck(stats, now) for now, stats in samples]


def test_a_stop_gives_up_on_storage_failing_with_no_progress() -> None:
    assert STORAGE_STUCK_SECONDS == 5.0  # the samples in these tests are timed for it
    watch = StopWatch(now=100.0)
    assert stuck_at(watch, [(100.5, waiting()), (102.0, waiting()), (104.0, waiting()),
                            (105.4, waiting()), (106.0, waiting())]) == [
        False, False, False, False, True]  # 5 s of backoff after the first look at 100.5


def test_progress_of_any_kind_while_failing_starts_the_count_again() -> None:
    """A close publishing segment after segment through intermittent errors journals nothing
    new, but it gets somewhere: each file published counts."""
    watch = StopWatch(now=0.0)
    assert stuck_at(watch, [(0.5, waiting(files=1)), (4.0, waiting(files=1)),
                            (4.5, waiting(files=2)), (8.0, waiting(files=3)),
                            (12.0, waiting(files=3)), (13.0, waiting(files=3))]) == [
        False, False, False, False, False, True]
    watch = StopWatch(now=0.0)
    assert stuck_at(watch, [(0.5, waiting(frames=40)), (4.0, waiting(frames=90)),
                            (8.0, waiting(frames=90)), (9.0, waiting(frames=90))]) == [
        False, False, False, True]


def test_a_running_retry_is_not_counted_however_long_it_takes() -> None:
    """The close failed once and its retry works but takes minutes (a big day to publish): not
    stuck. Only the time spent waiting between attempts counts, added up across attempts."""
    watch = StopWatch(now=0.0)
    running = waiting(retrying=True)
    assert not any(stuck_at(watch, [(t, running) for t in (0.5, 5.0, 60.0, 600.0)]))
    # attempts of 4 s that each fail, with 2 s of backoff between: stuck after the third wait
    watch = StopWatch(now=0.0)
    cycle = [(t, waiting(retrying=(t % 6) < 4)) for t in [x * 0.5 for x in range(1, 40)]]
    verdicts = stuck_at(watch, cycle)
    assert True in verdicts and 14.0 < cycle[verdicts.index(True)][0] < 18.5


def test_a_slow_publish_after_a_recovered_error_is_waited_for() -> None:
    """The error is on record (``last_error``) but storage is no longer failing."""
    watch = StopWatch(now=0.0)
    recovered = StorageStats(frames=40, last_error=FULL, failing=None)
    assert not any(stuck_at(watch, [(t, recovered) for t in (0.5, 5.0, 60.0, 600.0)]))
