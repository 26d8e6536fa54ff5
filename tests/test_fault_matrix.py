"""The fault matrix (issue 6): every gateway fault injected mid-recording, nothing lost.

Each row runs the real recorder against the simulated gateway over TLS on 127.0.0.1, injects
one fault, waits for the recording to resume, and compares every frame the simulator sent with
the ``raw`` rows the recorder published. The only frames allowed to be missing are those a
``gap`` event accounts for (``recorder.faultmatrix`` defines it precisely); faults that must not
cost a connection must leave no gap at all.

The classifier itself is checked on hand-made tables first, so a matrix that says "zero
unaccounted" is known to be able to say anything else.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from recorder.faultmatrix import BY_NAME, FAULTS, Gap, Tables, compare, run_fault, table
from recorder.sim import SentFrame
from tests.recording import SCALE

SECRET = "0123456789abcdef"


def sent(conn: int, *payloads: bytes, t0: int = 100) -> list[SentFrame]:
    return [SentFrame(conn, t0 + i, None, p) for i, p in enumerate(payloads)]


def tables(raw: dict[int, list[bytes]], gaps: dict[int, Gap] | None = None) -> Tables:
    return Tables(raw_in=raw, events=[], gaps=gaps or {},
                  local={conn: f"127.0.0.1:{40000 + conn}" for conn in raw})


PEERS = {7: "127.0.0.1:40001", 8: "127.0.0.1:40002"}


def test_everything_recorded_is_zero_missing() -> None:
    row = compare("x", sent(7, b"a", b"b"), PEERS, SECRET, tables({1: [b"a", b"b"]}))
    assert (row.sent, row.recorded, row.missing, row.unaccounted, row.unexpected) == (
        2, 2, 0, 0, 0)
    assert row.ok


def test_a_lost_tail_inside_a_gap_is_accounted() -> None:
    frames = sent(7, b"a", b"b", b"c") + sent(8, b"d", t0=500)
    gap = Gap(conn_id=1, start_ns=101, end_ns=400, last_seq=2, code=1006, next_conn_id=2)
    row = compare("x", frames, PEERS, SECRET, tables({1: [b"a"], 2: [b"d"]}, {1: gap}))
    assert (row.recorded, row.missing, row.accounted, row.unaccounted) == (2, 2, 2, 0)
    assert row.ok


def test_a_lost_tail_without_a_gap_is_unaccounted() -> None:
    row = compare("x", sent(7, b"a", b"b", b"c"), PEERS, SECRET, tables({1: [b"a"]}))
    assert (row.missing, row.accounted, row.unaccounted) == (2, 0, 2)
    assert not row.ok


def test_a_frame_sent_after_the_gap_ended_is_unaccounted() -> None:
    gap = Gap(conn_id=1, start_ns=100, end_ns=101, last_seq=1, code=1006, next_conn_id=2)
    row = compare("x", sent(7, b"a", b"b", b"c"), PEERS, SECRET, tables({1: [b"a"]}, {1: gap}))
    assert (row.missing, row.accounted, row.unaccounted) == (2, 1, 1)


def test_a_frame_lost_in_the_middle_is_never_a_gap() -> None:
    gap = Gap(conn_id=1, start_ns=100, end_ns=10_000, last_seq=2, code=1006, next_conn_id=2)
    row = compare("x", sent(7, b"a", b"b", b"c"), PEERS, SECRET,
                  tables({1: [b"a", b"c"]}, {1: gap}))
    assert row.unexpected == 1 and not row.ok
    assert "differs" in row.problems[0]


def test_the_session_id_is_compared_redacted_and_strangers_are_unexpected() -> None:
    frames = sent(7, b'{"id":"' + SECRET.encode() + b'"}')
    row = compare("x", frames, PEERS, SECRET, tables({1: [b'{"id":"<redacted>"}'], 3: [b"z"]}))
    assert row.recorded == 1 and row.unexpected == 1
    assert "matches no simulator connection" in row.problems[0]


def test_table_has_one_line_per_fault_and_says_yes_for_gaps() -> None:
    gap = Gap(conn_id=1, start_ns=101, end_ns=400, last_seq=1, code=1006, next_conn_id=None)
    row = compare("drop", sent(7, b"a", b"b"), PEERS, SECRET, tables({1: [b"a"]}, {1: gap}))
    lines = table([row]).splitlines()
    assert lines[0].split()[:3] == ["fault", "frames", "sent"]
    assert lines[2].split() == ["drop", "2", "1", "1", "yes", "0", "0.0"]


@pytest.mark.parametrize("name", [f.name for f in FAULTS])
def test_fault_loses_nothing_unaccounted(tmp_path: Path, name: str) -> None:
    row = asyncio.run(run_fault(BY_NAME[name], tmp_path, scale=SCALE))
    print(table([row]))
    assert row.problems == []
    assert row.sent > 20 and row.recorded > 20
    assert row.unaccounted == 0 and row.unexpected == 0
    assert row.recorded + row.missing == row.sent
