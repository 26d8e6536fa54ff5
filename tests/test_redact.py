"""Redactor: the session id replaced in every payload and log message, and nowhere else."""

from __future__ import annotations

import logging

from recorder.frames import IN, OUT, Frame
from recorder.redact import RedactingFilter, Redactor

SECRET = "0123456789abcdef0123456789abcdef"


def frames(payloads: list[bytes]) -> list[Frame]:
    return [Frame(1, 1, i, IN if i % 2 else OUT, p) for i, p in enumerate(payloads)]


def test_apply_frames_replaces_the_id_wherever_it_is_and_touches_nothing_else() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    redactor.add("0ld-session-id")
    batch = frames([b'{"topic":"smd+1"}'] * 50
                   + [f'{{"topic":"tic","id":"{SECRET}"}}'.encode(),
                      f'{{"session":"{SECRET}","also":"{SECRET}"}}'.encode(),
                      b'{"late":"0ld-session-id"}'])
    out = redactor.apply_frames(batch)
    assert [f.payload for f in out] == [b'{"topic":"smd+1"}'] * 50 + [
        b'{"topic":"tic","id":"<redacted>"}', b'{"session":"<redacted>","also":"<redacted>"}',
        b'{"late":"<redacted>"}']
    assert [f[:4] for f in out] == [f[:4] for f in batch]


def test_apply_frames_returns_the_batch_itself_when_no_payload_holds_an_id() -> None:
    redactor = Redactor()
    batch = frames([b'{"topic":"smd+1"}'] * 10)
    assert redactor.apply_frames(batch) is batch  # no id known yet
    redactor.add(SECRET)
    assert redactor.apply_frames(batch) is batch
    # an id split across two payloads is no id: each payload is searched on its own
    split = frames([SECRET[:16].encode(), SECRET[16:].encode()])
    assert [f.payload for f in redactor.apply_frames(split)] == [f.payload for f in split]


def test_short_ids_are_ignored_and_log_messages_are_rewritten() -> None:
    redactor = Redactor()
    redactor.add("abc")  # too short: would redact ordinary text
    assert redactor.secrets == ()
    redactor.add(SECRET)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "cookie api=%s", (SECRET,), None)
    assert RedactingFilter(redactor).filter(record)
    assert record.getMessage() == "cookie api=<redacted>"
