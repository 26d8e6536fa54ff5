"""summary: exact rows, files, gaps and reconnects from a folder written here."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from recorder.frames import Frame, event_frame
from recorder.recover import FolderLock
from recorder.storage import Pipeline
from recorder.summary import (
    Gap,
    NoRecording,
    Unreadable,
    describe_days,
    summarize,
    to_dict,
    to_text,
)
from tests.storage_frames import T0, empty_file, garbage_file, real_payloads, times_as_text_file

S = 1_000_000_000


def recording(root: Path) -> None:
    aapl = [p for p in real_payloads() if b'"topic":"smd+265598"' in p][:4]
    frames = [
        event_frame(T0, 1, 1, "connect", None, {"conn_id": 1}),
        Frame(T0 + 1 * S, 1, 2, "in", aapl[0]),
        Frame(T0 + 2 * S, 1, 3, "in", aapl[1]),
        event_frame(T0 + 50 * S, 1, 4, "disconnect", None, {"code": 1006}),
        event_frame(T0 + 51 * S, 0, 5, "auth_lost", None, {"reason": "x"}),
        event_frame(T0 + 55 * S, 2, 6, "connect", None, {"conn_id": 2}),
        Frame(T0 + 100 * S, 2, 7, "in", aapl[2]),
        Frame(T0 + 101 * S, 2, 8, "in", aapl[3]),
        event_frame(T0 + 120 * S, 2, 9, "disconnect", None, {"code": 1006}),
    ]
    pipe = Pipeline(root, timezone="America/New_York", clock=lambda: T0)
    pipe.write(frames[:5])
    pipe.rotate()
    pipe.write(frames[5:])
    pipe.close()


def test_summary_counts_gaps_and_reconnects(tmp_path: Path) -> None:
    recording(tmp_path)
    s = summarize(tmp_path, silence_seconds=60)
    by_table = {t.table: (t.rows, t.files, t.first, t.last) for t in s.tables}
    assert by_table["market_data"] == (4, 2, "2026-04-30T14:00:01Z", "2026-04-30T14:01:41Z")
    assert by_table["raw"] == (4, 2, "2026-04-30T14:00:01Z", "2026-04-30T14:01:41Z")
    assert by_table["events"] == (5, 2, "2026-04-30T14:00:00Z", "2026-04-30T14:02:00Z")
    assert by_table["trades"] == (0, 0, None, None)
    assert s.frames_per_conid == {"265598": 4}
    assert s.gaps == [
        Gap("silence", 265598, "2026-04-30T14:00:02Z", "2026-04-30T14:01:40Z", 98.0, "265598"),
        Gap("disconnect", None, "2026-04-30T14:00:50Z", "2026-04-30T14:00:55Z", 5.0),
        Gap("disconnect", None, "2026-04-30T14:02:00Z", None, None),
    ]
    assert (s.reconnects, s.auth_lost) == (1, 1)
    assert to_dict(s)["frames_per_conid"] == {"265598": 4}
    text = to_text(s)
    assert "market_data" in text and "reconnects: 1" in text and "98.0 s" in text
    assert summarize(tmp_path, silence_seconds=200).gaps[0].kind == "disconnect"


def test_a_silent_socket_gap_starts_at_its_last_frame(tmp_path: Path) -> None:
    """A socket that went silent is given up 25 s later (the heartbeat timeout): its
    disconnect event comes then, but the data stopped at its last frame, as the recorder's
    own ``gap`` event says. Summary measured from the disconnect: 1.7 s for 26.7 s lost."""
    aapl = [p for p in real_payloads() if b'"topic":"smd+265598"' in p][:3]
    pipe = Pipeline(tmp_path, timezone="America/New_York", clock=lambda: T0)
    pipe.write([
        event_frame(T0, 1, 1, "connect", None, {"conn_id": 1}),
        Frame(T0 + 1 * S, 1, 2, "in", aapl[0]),
        Frame(T0 + 2 * S, 1, 3, "in", aapl[1]),
        event_frame(T0 + 27 * S, 1, 4, "heartbeat_timeout", None, {"silent_seconds": 25.0}),
        event_frame(T0 + 27 * S, 1, 5, "disconnect", None, {"conn_id": 1, "code": 1006}),
        event_frame(T0 + 28 * S, 2, 6, "connect", None, {"conn_id": 2}),
        event_frame(T0 + 28 * S, 2, 7, "gap", None, {
            "conn_id": 1, "start_ns": T0 + 2 * S, "last_seq": 3, "code": 1006,
            "end_ns": T0 + 28 * S, "next_conn_id": 2, "seconds": 26.0}),
        Frame(T0 + 29 * S, 2, 8, "in", aapl[2]),
        event_frame(T0 + 30 * S, 0, 9, "stop", None, {"reason": "signal"}),
    ])
    pipe.close()
    s = summarize(tmp_path, silence_seconds=60)
    assert s.gaps == [
        Gap("disconnect", None, "2026-04-30T14:00:02Z", "2026-04-30T14:00:28Z", 26.0)]
    assert s.reconnects == 1


def test_summary_of_one_date(tmp_path: Path) -> None:
    recording(tmp_path)
    assert summarize(tmp_path, date="2026-04-29").tables[0].rows == 0
    assert summarize(tmp_path, date="2026-04-30").tables[0].rows == 4
    assert summarize(tmp_path, date="2026-04-29").days == ["2026-04-30"]


@pytest.mark.parametrize(("days", "text"), [
    ([], "none yet"),
    (["2026-04-29", "2026-04-30"], "2026-04-29, 2026-04-30"),
    ([f"2026-05-{d:02}" for d in range(1, 11)],
     "2026-05-01, 2026-05-02, 2026-05-03, ..., 2026-05-08, 2026-05-09, 2026-05-10 (10 days)"),
])
def test_the_days_of_a_recording_in_one_line(days: list[str], text: str) -> None:
    assert describe_days(days) == text


def test_no_recording_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoRecording, match="no recording here"):
        summarize(tmp_path)


def test_a_clean_stop_is_not_a_gap(tmp_path: Path) -> None:
    aapl = [p for p in real_payloads() if b'"topic":"smd+265598"' in p][:1]
    pipe = Pipeline(tmp_path, timezone="America/New_York", clock=lambda: T0)
    pipe.write([
        event_frame(T0, 1, 1, "connect", None, {"conn_id": 1}),
        Frame(T0 + 1 * S, 1, 2, "in", aapl[0]),
        event_frame(T0 + 2 * S, 1, 3, "disconnect", None, {"code": 1000, "stopping": True}),
        event_frame(T0 + 3 * S, 1, 4, "stop", None, {"reason": "signal"}),
    ])
    pipe.close()
    s = summarize(tmp_path)
    assert s.gaps == [] and s.reconnects == 0


def _write(root: Path, *runs: list[Frame]) -> None:
    """Each run's frames as a run publishes them, in a folder of its own files."""
    for frames in runs:
        pipe = Pipeline(root, timezone="America/New_York",
                        clock=functools.partial(int, frames[0].recv_ts_ns))
        pipe.write(frames)
        pipe.close()


def test_a_run_killed_with_its_connection_open_leaves_a_crash_gap(tmp_path: Path) -> None:
    """kill -9 (or a power cut) writes neither a disconnect nor a stop: the next run's start
    finds the connection open, and the gap runs from its last frame to the next connect.
    The summary used to show none."""
    aapl = [p for p in real_payloads() if b'"topic":"smd+265598"' in p][:3]
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        Frame(T0 + 2 * S, 1, 3, "in", aapl[0]),
        Frame(T0 + 3 * S, 1, 4, "out", b"tic"),  # sent, not received: the gap starts before
        Frame(T0 + 4 * S, 1, 5, "in", aapl[1]),
        Frame(T0 + 6 * S, 1, 6, "out", b"tic"),
    ], [  # killed; started again a minute later
        event_frame(T0 + 64 * S, 1, 7, "start", None, {}),
        event_frame(T0 + 65 * S, 2, 8, "connect", None, {"conn_id": 2}),
        Frame(T0 + 66 * S, 2, 9, "in", aapl[2]),
        event_frame(T0 + 67 * S, 0, 10, "stop", None, {"reason": "signal"}),
    ])
    s = summarize(tmp_path, silence_seconds=120)
    assert s.gaps == [Gap("crash", None, "2026-04-30T14:00:04Z", "2026-04-30T14:01:05Z", 61.0)]
    assert s.reconnects == 0  # a new run, not a reconnect
    assert to_text(s).splitlines()[-1] == (
        "    crash      socket           2026-04-30T14:00:04Z .. 2026-04-30T14:01:05Z  (61.0 s; "
        "the run ended without stopping: killed, crashed or a power cut)")


def test_a_run_killed_while_disconnected_ends_its_gap_at_the_next_run(tmp_path: Path) -> None:
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        event_frame(T0 + 9 * S, 1, 3, "disconnect", None, {"conn_id": 1, "code": 1006}),
    ], [
        event_frame(T0 + 30 * S, 1, 4, "start", None, {}),
        event_frame(T0 + 31 * S, 2, 5, "connect", None, {"conn_id": 2}),
        event_frame(T0 + 32 * S, 0, 6, "stop", None, {"reason": "signal"}),
    ])
    s = summarize(tmp_path)
    assert s.gaps == [
        Gap("disconnect", None, "2026-04-30T14:00:09Z", "2026-04-30T14:00:31Z", 22.0)]
    assert s.reconnects == 0


def test_a_stop_while_disconnected_ends_the_gap(tmp_path: Path) -> None:
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        event_frame(T0 + 9 * S, 1, 3, "disconnect", None, {"conn_id": 1, "code": 1006}),
        event_frame(T0 + 20 * S, 1, 4, "stop", None, {"reason": "signal"}),
    ], [  # the next day's run: no gap of the night
        event_frame(T0 + 86_400 * S, 1, 5, "start", None, {}),
        event_frame(T0 + 86_401 * S, 2, 6, "connect", None, {"conn_id": 2}),
        event_frame(T0 + 86_402 * S, 0, 7, "stop", None, {"reason": "signal"}),
    ])
    s = summarize(tmp_path)
    assert s.gaps == [
        Gap("disconnect", None, "2026-04-30T14:00:09Z", "2026-04-30T14:00:20Z", 11.0)]
    assert s.reconnects == 0


def test_a_disconnect_across_midnight_is_in_both_days(tmp_path: Path) -> None:
    """T0 is 10:00 in New York; 14 h later the trading day changes. The gap's disconnect is
    in one day's events and its connect in the next: day one used to say "not reconnected",
    and day two showed no gap at all."""
    midnight = T0 + 14 * 3600 * S
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        event_frame(midnight - 10 * S, 1, 3, "disconnect", None, {"conn_id": 1, "code": 1006}),
        event_frame(midnight + 15 * S, 2, 4, "connect", None, {"conn_id": 2}),
        event_frame(midnight + 20 * S, 2, 5, "disconnect", None, {"conn_id": 2, "code": 1006}),
        event_frame(midnight + 22 * S, 3, 6, "connect", None, {"conn_id": 3}),
        event_frame(midnight + 23 * S, 0, 7, "stop", None, {"reason": "signal"}),
    ])
    across = Gap("disconnect", None, "2026-05-01T03:59:50Z", "2026-05-01T04:00:15Z", 25.0)
    later = Gap("disconnect", None, "2026-05-01T04:00:20Z", "2026-05-01T04:00:22Z", 2.0)
    day1, day2 = summarize(tmp_path, date="2026-04-30"), summarize(tmp_path, date="2026-05-01")
    assert (day1.gaps, day1.reconnects) == ([across], 0)  # reconnected the next day
    assert (day2.gaps, day2.reconnects) == ([across, later], 2)
    assert summarize(tmp_path, date="2026-05-02").gaps == []
    assert summarize(tmp_path).reconnects == 2


def test_two_routing_exchanges_of_a_conid_are_two_streams(tmp_path: Path) -> None:
    """``265598`` and ``265598@NASDAQ`` are two books (as in the quotes view): counted and
    watched for silences apart. They used to be added together."""
    plain = b'{"topic":"smd+265598","conid":265598,"conidEx":"265598","31":"271.5"}'
    routed = (b'{"topic":"smd+265598@NASDAQ","conid":265598,"conidEx":"265598@NASDAQ",'
              b'"31":"271.6"}')
    _write(tmp_path, [
        event_frame(T0, 1, 1, "connect", None, {"conn_id": 1}),
        Frame(T0 + 1 * S, 1, 2, "in", plain),
        Frame(T0 + 2 * S, 1, 3, "in", routed),
        Frame(T0 + 3 * S, 1, 4, "in", plain),
        Frame(T0 + 100 * S, 1, 5, "in", routed),
        event_frame(T0 + 101 * S, 0, 6, "stop", None, {"reason": "signal"}),
    ])
    s = summarize(tmp_path, silence_seconds=60)
    assert s.frames_per_conid == {"265598": 2, "265598@NASDAQ": 2}
    assert s.gaps == [
        Gap("silence", 265598, "2026-04-30T14:00:02Z", "2026-04-30T14:01:40Z", 98.0,
            "265598@NASDAQ"),
        # and the plain one was silent from its last update to the stop
        Gap("silence", 265598, "2026-04-30T14:00:03Z", "2026-04-30T14:01:41Z", 98.0, "265598")]
    text = to_text(s)
    assert "smd frames per conid: 265598 2, 265598@NASDAQ 2" in text
    assert ("    silence    conid 265598@NASDAQ 2026-04-30T14:00:02Z .. 2026-04-30T14:01:40Z  "
            "(98.0 s)") in text.splitlines()


@pytest.mark.parametrize("spoil", [garbage_file, empty_file, times_as_text_file])
def test_a_file_that_cannot_be_read_is_named(tmp_path: Path,
                                             spoil: Callable[[Path], None]) -> None:
    """One bad file among ``market_data``'s: no summary (it would be wrong), an error that
    names the file to move away. It used to be DuckDB's own exception, unnamed in one case."""
    recording(tmp_path)
    bad = tmp_path / "market_data" / "date=2026-04-30" / "x.parquet"
    spoil(bad)
    with pytest.raises(Unreadable, match=f"^cannot read {re.escape(str(bad))}: "):
        summarize(tmp_path)


def test_a_bad_file_of_another_day_is_named_too(tmp_path: Path) -> None:
    """The views read every file's columns, whatever the date asked for."""
    recording(tmp_path)
    bad = tmp_path / "market_data" / "date=2026-04-29" / "x.parquet"
    bad.parent.mkdir()
    garbage_file(bad)
    with pytest.raises(Unreadable, match=f"^cannot read {re.escape(str(bad))}: "):
        summarize(tmp_path, date="2026-04-30")


def test_a_silent_socket_whose_last_frame_was_the_day_before_is_in_both_days(
        tmp_path: Path) -> None:
    """The data stopped 5 s before midnight; the heartbeat timeout gave the socket up 25 s
    later, after midnight. The gap is the first day's too: it used to be placed by its
    disconnect event's day alone."""
    aapl = [p for p in real_payloads() if b'"topic":"smd+265598"' in p][:2]
    midnight = T0 + 14 * 3600 * S
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        Frame(midnight - 5 * S, 1, 3, "in", aapl[0]),
        event_frame(midnight + 20 * S, 1, 4, "disconnect", None, {"conn_id": 1, "code": 1006}),
        event_frame(midnight + 21 * S, 2, 5, "connect", None, {"conn_id": 2}),
        event_frame(midnight + 21 * S, 2, 6, "gap", None, {
            "conn_id": 1, "start_ns": midnight - 5 * S, "last_seq": 3, "code": 1006,
            "end_ns": midnight + 21 * S, "next_conn_id": 2, "seconds": 26.0}),
        Frame(midnight + 22 * S, 2, 7, "in", aapl[1]),
        event_frame(midnight + 23 * S, 0, 8, "stop", None, {"reason": "signal"}),
    ])
    gap = Gap("disconnect", None, "2026-05-01T03:59:55Z", "2026-05-01T04:00:21Z", 26.0)
    day1, day2 = summarize(tmp_path, date="2026-04-30"), summarize(tmp_path, date="2026-05-01")
    assert (day1.gaps, day1.reconnects) == ([gap], 0)
    assert (day2.gaps, day2.reconnects) == ([gap], 1)


def test_a_stream_that_died_before_the_stop_is_a_silence(tmp_path: Path) -> None:
    """IBKR ends an smd stream that is not re-sent; the rest of the run is silence, which two
    consecutive rows never show."""
    plain = b'{"topic":"smd+265598","conid":265598,"conidEx":"265598","31":"271.5"}'
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        Frame(T0 + 2 * S, 1, 3, "in", plain),
        Frame(T0 + 3 * S, 1, 4, "in", plain),
        event_frame(T0 + 900 * S, 0, 5, "stop", None, {"reason": "signal"}),
    ])
    assert summarize(tmp_path, silence_seconds=60).gaps == [
        Gap("silence", 265598, "2026-04-30T14:00:03Z", "2026-04-30T14:15:00Z", 897.0, "265598")]
    assert summarize(tmp_path, silence_seconds=900).gaps == []


def test_a_silence_across_midnight_is_in_the_first_day_s_summary(tmp_path: Path) -> None:
    """Day one's rows alone end at its last update; the next update, after midnight, ends the
    silence (not the stop). Day two's own silence runs to the stop."""
    plain = b'{"topic":"smd+265598","conid":265598,"conidEx":"265598","31":"271.5"}'
    midnight = T0 + 14 * 3600 * S
    _write(tmp_path, [
        event_frame(midnight - 30 * S, 0, 1, "start", None, {}),
        event_frame(midnight - 29 * S, 1, 2, "connect", None, {"conn_id": 1}),
        Frame(midnight - 28 * S, 1, 3, "in", plain),
        Frame(midnight + 12 * S, 1, 4, "in", plain),
        event_frame(midnight + 40 * S, 0, 5, "stop", None, {"reason": "signal"}),
    ])
    assert summarize(tmp_path, date="2026-04-30", silence_seconds=20).gaps == [
        Gap("silence", 265598, "2026-05-01T03:59:32Z", "2026-05-01T04:00:12Z", 40.0, "265598")]
    assert summarize(tmp_path, date="2026-05-01", silence_seconds=20).gaps == [
        Gap("silence", 265598, "2026-05-01T04:00:12Z", "2026-05-01T04:00:40Z", 28.0, "265598")]


def test_the_last_run_killed_is_a_crash_with_no_run_since(tmp_path: Path) -> None:
    """A kill -9, a power cut or a full disk ends the folder's last run without a stop. The
    summary said nothing (``gaps: 0``): a crash gap showed only once a later run connected."""
    aapl = [p for p in real_payloads() if b'"topic":"smd+265598"' in p][:2]
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
        Frame(T0 + 2 * S, 1, 3, "in", aapl[0]),
        Frame(T0 + 4 * S, 1, 4, "in", aapl[1]),
    ])
    s = summarize(tmp_path, silence_seconds=60)
    assert s.gaps == [Gap("crash", None, "2026-04-30T14:00:04Z", None, None)]
    assert to_text(s).splitlines()[-1] == (
        "    crash      socket           2026-04-30T14:00:04Z .. ?  (no run since; the run ended "
        "without stopping: killed, crashed or a power cut)")


def test_a_recording_running_now_is_no_crash(tmp_path: Path) -> None:
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 1, 2, "connect", None, {"conn_id": 1}),
    ])
    lock = FolderLock(tmp_path)
    lock.acquire()  # as the recorder holds it while it runs
    try:
        assert summarize(tmp_path).gaps == []
    finally:
        lock.release()
    assert [g.kind for g in summarize(tmp_path).gaps] == ["crash"]  # once it is gone


def test_a_run_that_could_not_connect_at_first_waited(tmp_path: Path) -> None:
    """The gateway not up yet, or a wrong port: the run's first seconds held no connection,
    and the summary said "gaps: 0". A start-up that connects at once is no gap."""
    _write(tmp_path, [
        event_frame(T0, 0, 1, "start", None, {}),
        event_frame(T0 + 1 * S, 0, 2, "connect_failed", None, {"error": "refused"}),
        event_frame(T0 + 3 * S, 0, 3, "connect_failed", None, {"error": "refused"}),
        event_frame(T0 + 12 * S, 1, 4, "connect", None, {"conn_id": 1}),
        event_frame(T0 + 20 * S, 0, 5, "stop", None, {"reason": "signal"}),
    ], [  # a run that starts at once: no gap
        event_frame(T0 + 30 * S, 0, 6, "start", None, {}),
        event_frame(T0 + 30 * S + S // 5, 2, 7, "connect", None, {"conn_id": 2}),
        event_frame(T0 + 40 * S, 0, 8, "stop", None, {"reason": "signal"}),
    ], [  # one that never connected
        event_frame(T0 + 50 * S, 0, 9, "start", None, {}),
        event_frame(T0 + 51 * S, 0, 10, "rest_error", None, {"path": "/tickle"}),
        event_frame(T0 + 60 * S, 0, 11, "stop", None, {"reason": "duration"}),
    ], [  # and one killed before it ever did
        event_frame(T0 + 70 * S, 0, 12, "start", None, {}),
        event_frame(T0 + 71 * S, 0, 13, "auth", None, {"authenticated": False}),
    ])
    s = summarize(tmp_path)
    assert s.gaps == [
        Gap("waiting", None, "2026-04-30T14:00:00Z", "2026-04-30T14:00:12Z", 12.0),
        Gap("waiting", None, "2026-04-30T14:00:50Z", "2026-04-30T14:01:00Z", 10.0),
        Gap("waiting", None, "2026-04-30T14:01:10Z", None, None)]
    assert s.reconnects == 0
    assert to_text(s).splitlines()[-3:] == [
        "    waiting    socket           2026-04-30T14:00:00Z .. 2026-04-30T14:00:12Z  (12.0 s; "
        "from the run's start: the gateway was down or not logged in)",
        "    waiting    socket           2026-04-30T14:00:50Z .. 2026-04-30T14:01:00Z  (10.0 s; "
        "from the run's start: the gateway was down or not logged in)",
        "    waiting    socket           2026-04-30T14:01:10Z .. ?  (never connected; from the "
        "run's start: the gateway was down or not logged in)"]
