"""summary: exact rows, files, gaps and reconnects from a folder written here."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from recorder.frames import Frame, event_frame
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
    assert s.frames_per_conid == {265598: 4}
    assert s.gaps == [
        Gap("silence", 265598, "2026-04-30T14:00:02Z", "2026-04-30T14:01:40Z", 98.0),
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
