"""The status line: rates per topic from two snapshots, and what a terminal sees."""

from __future__ import annotations

import io
import logging
import sys
from dataclasses import replace

import pytest

from recorder.status import StatusReporter, StatusSnapshot, render
from tests.recording import logging_restored


def snap(now: float, smd: int, **kw: object) -> StatusSnapshot:
    return StatusSnapshot(now=now, uptime=now, frames_by_topic={"smd": smd, "system": 1}, **kw)  # type: ignore[arg-type]


def test_rates_from_two_snapshots() -> None:
    reporter = StatusReporter(io.StringIO(), tty=False)
    reporter.update(snap(10.0, 100))
    assert reporter.rates(snap(12.0, 300)) == {"smd": 100.0, "system": 0.0}


def test_render_names_every_health_figure() -> None:
    line = render(
        StatusSnapshot(now=5, uptime=3725, rows=12345, files=3, queue_depth=7, reconnects=2,
                       authenticated=True, smh_open=5, smh_queued=2, since_heartbeat=4.2),
        {"smd": 120.0, "sbd": 0.1},
    )
    assert line == (
        "1:02:05 | streaming | smd 120/s | rows 12,345 | files 3 | queue 7 | reconnects 2"
        " | smh 5/5 +2 queued | heartbeat 4s ago"
    )


def test_the_line_says_when_reading_waited_for_a_full_queue() -> None:
    out = io.StringIO()
    reporter = StatusReporter(out, tty=True, columns=lambda: 1000)
    reporter.update(snap(1.0, 1, queue_depth=12, queue_max=10_000))
    reporter.update(snap(2.0, 5, queue_depth=10_000, queue_max=10_000, full_waits=3))
    reporter.update(snap(3.0, 9, queue_depth=4_210, queue_max=10_000, full_waits=3))
    lines = [line.strip() for line in out.getvalue().split("\r")[1:]]
    assert [line.split(" | ")[5] for line in lines] == [
        "queue 12", "queue 10,000/10,000 was full: reading waited", "queue 4,210"]


def test_terminal_redraws_one_line() -> None:
    out = io.StringIO()
    reporter = StatusReporter(out, tty=True)
    reporter.update(snap(1.0, 1))
    reporter.update(snap(2.0, 5))
    reporter.finish()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "smd 4/s" in text


def test_the_line_fits_one_row_of_the_terminal() -> None:
    """A line wider than the terminal would wrap, and ``\\r`` redraws only its last row."""
    out = io.StringIO()
    reporter = StatusReporter(out, tty=True, columns=lambda: 60)
    reporter.update(snap(1.0, 1))
    reporter.update(snap(2.0, 5))
    drawn = [line.rstrip() for line in out.getvalue().split("\r") if line]
    assert drawn == ["0:00:01 | waiting for gateway | no frames | rows 0",
                     "0:00:02 | waiting for gateway | smd 4/s | rows 0 | files 0"]
    # a narrow terminal still shows a storage error
    reporter.update(snap(3.0, 9, storage_error="journal write: OSError: [Errno 28] No space"))
    last = out.getvalue().split("\r")[-1]
    assert last.rstrip() == "0:00:03 | waiting | ERROR journal write: OSError: [Errno…"
    assert len(last) <= 59


# Snapshots as a first-time user sees them. A terminal of N columns gives the line N - 1
# characters: StatusReporter leaves the last column free.
BUSY = StatusSnapshot(now=2537, uptime=2537, rows=1_234_567, files=42, queue_depth=37,
                      queue_max=10_000, reconnects=1, authenticated=True, smh_open=3,
                      since_heartbeat=2.4)
BUSY_RATES = {"smd": 812.4, "sbd": 140.2, "sor": 3.1, "spl": 2.0, "str": 1.2, "system": 0.1}
BEHIND = replace(BUSY, queue_depth=10_000)
BEHIND_RATES = {"smd": 402.0, "sbd": 71.0, "sor": 1.0, "spl": 1.0, "system": 0.1}
FAILING = replace(
    BEHIND, storage_error="journal write: OSError: [Errno 28] No space left on device")
FAILING_RATES = {"smd": 12.0, "system": 0.1}


def test_a_wide_terminal_shows_the_whole_line() -> None:
    whole = render(BUSY, BUSY_RATES)
    assert whole == (
        "0:42:17 | streaming | sbd 140/s smd 812/s sor 3/s spl 2/s str 1/s | rows 1,234,567"
        " | files 42 | queue 37 | reconnects 1 | smh 3/5 | heartbeat 2s ago")
    assert render(BUSY, BUSY_RATES, width=len(whole)) == whole


def test_the_busiest_topics_show_when_not_all_of_them_fit() -> None:
    assert render(BUSY, BUSY_RATES, width=140 - 1) == (
        "0:42:17 | streaming | smd 812/s sbd 140/s +3 more | rows 1,234,567 | files 42"
        " | queue 37 | reconnects 1 | smh 3/5 | heartbeat 2s ago")


def test_a_narrow_terminal_sums_the_topics_before_it_drops_a_figure() -> None:
    """The per-topic rates filled an 80-column line: rows, files and queue were cut off."""
    assert render(BUSY, BUSY_RATES, width=80 - 1) == (
        "0:42:17 | streaming | 959 frames/s | rows 1,234,567 | files 42 | queue 37")
    assert render(BUSY, BUSY_RATES, width=40 - 1) == "0:42:17 | streaming | 959 frames/s"


def test_the_warning_that_storage_is_behind_is_never_cut_off() -> None:
    """It came after the per-topic rates, rows and files: an 80-column line cut it off."""
    assert render(BEHIND, BEHIND_RATES, waited=True, width=80 - 1) == (
        "0:42:17 | streaming | 475 frames/s | queue was full: reading waited")
    assert render(BEHIND, BEHIND_RATES, waited=True, width=40 - 1) == (
        "0:42:17 | streaming | queue was full")


def test_a_storage_error_and_the_queue_warning_show_together() -> None:
    """A full disk: storage retries (ERROR) and the queue fills (reading waits). The error's
    detail, in the log as well, is cut between words; the warning is not cut."""
    assert render(FAILING, FAILING_RATES, waited=True, width=80 - 1) == (
        "0:42:17 | streaming | ERROR journal write:… | queue was full: reading waited")
    assert render(FAILING, FAILING_RATES, waited=True, width=40 - 1) == (
        "streaming | ERROR | queue was full")


@pytest.mark.parametrize("snapshot, rates, waited", [
    (BUSY, BUSY_RATES, False), (BEHIND, BEHIND_RATES, True), (FAILING, FAILING_RATES, True),
    (StatusSnapshot(now=3, uptime=3, storage_error="open: PermissionError"), {}, False),
])
def test_the_line_never_exceeds_its_width(
        snapshot: StatusSnapshot, rates: dict[str, float], waited: bool) -> None:
    """However narrow; and down to 40 columns the state, the ERROR alert and the queue's
    warning all show."""
    for width in range(1, 250):
        line = render(snapshot, rates, waited, width)
        assert len(line) <= width, (width, line)
        if width >= 40 - 1:
            assert "streaming" in line or "waiting" in line, (width, line)
            assert ("ERROR" in line) == (snapshot.storage_error is not None), (width, line)
            assert ("was full" in line) == waited, (width, line)


def test_a_log_record_is_written_on_a_line_of_its_own_and_the_status_line_comes_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, a log record written while the status line shows takes the line's place
    (cleared first, not appended to it), and the status line is drawn again below it."""
    from recorder.commands.record import setup_logging
    from recorder.redact import Redactor

    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    reporter = StatusReporter(screen, tty=True, columns=lambda: 1000)
    with logging_restored():
        setup_logging(Redactor(), quiet=False, status=reporter)
        reporter.update(snap(1.0, 1))
        logging.getLogger("recorder.test").warning("websocket closed (code 1006)")
    line = render(snap(1.0, 1), {})
    rows = screen.getvalue().split("\n")
    assert rows[0] == "\r" + line + "\r" + " " * len(line) + "\r" + rows[0].split("\r")[-1]
    assert rows[0].split("\r")[-1].endswith("WARNING websocket closed (code 1006)")
    assert rows[1] == "\r" + line


class _GoneTerminal(io.StringIO):
    """A terminal whose other end has gone (a dropped ssh link): every write fails, EIO."""

    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def test_a_terminal_that_is_gone_ends_the_line_and_status_is_logged_each_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    """The recording goes on: updates are logged at the pace used when stderr is no terminal,
    instead of being tried on the dead terminal every second."""
    status = StatusReporter(_GoneTerminal(), tty=True, columns=lambda: 200)
    assert status.interval == 1.0
    status.update(snap(1.0, 1))
    assert status.interval == 60.0
    with caplog.at_level(logging.INFO, logger="recorder.status"):
        status.update(snap(2.0, 2))
        status.clear()
        status.redraw()
        status.finish()
    assert [r.getMessage().startswith("status: ") for r in caplog.records] == [True]


def test_a_terminal_that_says_it_has_no_width_is_taken_as_unknown(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A pty with no size set (``script``, some consoles) reports 0 columns: the status line
    was cut to nothing but its ellipsis."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    from recorder.status import _columns

    monkeypatch.setenv("COLUMNS", "100")
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert os.get_terminal_size(follower).columns == 0
            assert _columns(terminal) == 100  # COLUMNS, as for any terminal of unknown width
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 132, 0, 0))
            assert _columns(terminal) == 132
    finally:
        os.close(leader)
        os.close(follower)
