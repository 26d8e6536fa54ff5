"""The status line: rates per topic from two snapshots, and what a terminal sees."""

from __future__ import annotations

import io
import logging
import sys

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
    drawn = [line for line in out.getvalue().split("\r") if line]
    assert drawn and all(len(line) <= 59 for line in drawn)
    assert drawn[-1].startswith("0:00:") and drawn[-1].rstrip().endswith("…")
    # a storage error comes early, so a narrow terminal still shows it
    reporter.update(snap(3.0, 9, storage_error="journal write: OSError: [Errno 28] No space"))
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("0:00:03 | waiting for gateway | ERROR journal write")
    assert len(last) <= 59


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
