"""The socket driver's frame classifier, on real frames and on the odd ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.signals import (
    HEARTBEAT,
    AuthChanged,
    Competing,
    SessionRefused,
    SmhAnswer,
    TicAnswer,
    WaitingForSession,
    classify,
    signal_of,
    topic_of,
)
from tests.real_frames import real_frames

real = real_frames


def test_login_sts_is_authenticated() -> None:
    assert signal_of(real("sts")[0]) == AuthChanged(True, False)


def test_split_sts_frames_after_auth_loss() -> None:
    frames = {f.decode(): signal_of(f) for f in real("sts")}
    assert frames['{"topic":"sts","args":{"authenticated":false}}'] == AuthChanged(False, None)
    assert frames['{"topic":"sts","args":{"competing":false}}'] == Competing(False)
    assert frames['{"topic":"sts","args":{"message":""}}'] is None


def test_real_smh_answer_gives_conid_and_server_id() -> None:
    assert signal_of(real("smh")[0]) == SmhAnswer(265598, "588547")


def test_waiting_for_session() -> None:
    assert signal_of(b'{"message":"waiting for session"}') == WaitingForSession()


def test_the_refusal_of_a_session_id() -> None:
    [refused] = real("errors")
    assert signal_of(refused) == SessionRefused()
    assert classify(refused) == (b"message", SessionRefused())
    for other in (b'{"error":"Topic unknown \'smx\'","code":1}',  # another bad topic
                  b'{"topic":"x","error":"Topic unknown \'{\\"s\'"}',  # a topic's frame
                  b"Topic unknown"):
        assert signal_of(other) is None and classify(other)[1] is None, other


def test_the_answer_to_a_tic_names_the_session() -> None:
    """Real answers: all alive, naming the /tickle session id (behaviours §3)."""
    assert {signal_of(frame) for frame in real("tic")} == {
        TicAnswer(True, "86b3be19d376d9a1e3a7b52379744520"),
        TicAnswer(True, "e5af95a05fe55041a403680abb434efa")}
    assert all(classify(frame) == (b"tic", signal_of(frame)) for frame in real("tic"))
    assert signal_of(b'{"topic":"tic","alive":false}') == TicAnswer(False, None)
    assert signal_of(b'{"topic":"tic","id":7}') == TicAnswer(False, None)
    assert signal_of(b'{"topic":"ticker","alive":true}') is None


@pytest.mark.parametrize("name", ["smd", "sor", "str", "spl", "act"])
def test_ordinary_frames_need_no_reaction(name: str) -> None:
    assert all(signal_of(frame) is None for frame in real(name))


def test_the_heartbeat_is_told_apart_from_other_system_frames() -> None:
    system = real("system")
    beats = [f for f in system if signal_of(f) == HEARTBEAT]
    assert beats and all(b'"hb":' in f for f in beats)
    others = [f for f in system if f not in beats]
    assert others and all(signal_of(f) is None for f in others)
    assert signal_of(b'{"topic":"smd+1","hb":1}') is None


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x99\xff", b'{"topic":"sts"', b'{"topic":"smh+abc","serverId":"1"}',
     b'{"topic":"sts","args":[1]}', b'{"topic":"smh+1"}', b"waiting for session",
     # digits int() refuses: a superscript two (str.isdigit() takes it), and 5,000 of them
     '{"topic":"smh+\u00b2","serverId":"1","data":[]}'.encode(),
     b'{"topic":"smh+' + b"7" * 5000 + b'","serverId":"1"}'],
)
def test_broken_frames_never_raise(payload: bytes) -> None:
    assert signal_of(payload) is None
    assert classify(payload)[1] is None


def test_a_conid_has_at_most_19_digits() -> None:
    """An int64 has 19 digits; more is no conid, and is not worth turning into an int."""
    nineteen = "9" * 19
    assert signal_of(f'{{"topic":"smh+{nineteen}","serverId":"7"}}'.encode()) == SmhAnswer(
        int(nineteen), "7")
    assert signal_of(f'{{"topic":"smh+1{nineteen}","serverId":"7"}}'.encode()) is None


def test_non_utf8_sts_still_read() -> None:
    assert signal_of(b'{"topic":"sts","args":{"authenticated":true,"message":"\x99"}}') == (
        AuthChanged(True, None)
    )


def test_topic_of() -> None:
    assert topic_of(real("smd")[0]) == b"smd"
    assert topic_of(real("system")[1]) == b"system"
    assert topic_of(b'{"message":"waiting for session"}') == b"message"
    assert topic_of(b'{"topic":"tic') == b"tic"


_PIECES = [b'"topic":"', b'sts"', b'smh+', b'sts', b'"', b"+", b"{", b"}", b"265598", b"@x",
           b'"serverId":"7"', b',"args":{"authenticated":true}', b'"competing":false',
           b"waiting for session", b'"message":', b"topic", b"\x99", b'"topic":"sts"',
           b'"topic":"smh+1"', b'"topic":"system"', b'"hb":', b'system']


@pytest.mark.parametrize("name", ["smd", "sor", "str", "spl", "system", "tic", "act", "errors",
                                  "sts", "smh", "ntf", "other"])
def test_classify_is_topic_of_and_signal_of_on_real_frames(name: str) -> None:
    assert all(classify(f) == (topic_of(f), signal_of(f)) for f in real(name))


@given(st.lists(st.sampled_from(_PIECES), max_size=8).map(b"".join) | st.binary(max_size=40))
def test_classify_is_topic_of_and_signal_of_on_any_bytes(payload: bytes) -> None:
    assert classify(payload) == (topic_of(payload), signal_of(payload))


@pytest.mark.parametrize(
    "payload",
    [b'{"topic":7,"a":{"topic":"smh+1"},"serverId":"s"}',  # a nested topic, not a string one
     b'{"topic":"smd+265598","serverId":"x"}',  # an smd frame is no smh answer
     b'{"error":"waiting for session"}',  # the phrase, not the prompt
     b'{"topic":"system","message":"waiting for session"}'],
)
def test_frames_that_only_look_like_a_signal_ask_for_nothing(payload: bytes) -> None:
    assert signal_of(payload) is None
    assert classify(payload)[1] is None
