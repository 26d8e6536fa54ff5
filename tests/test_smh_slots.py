"""The smh slot scheduler: never more than the slots, every request answered or timed out."""

from __future__ import annotations

import orjson
import pytest

from recorder.actions import Action, Note, Send
from recorder.config import SmhRequest
from recorder.smh_slots import SmhScheduler, smh_message


def sent(actions: list[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Send)]


def notes(actions: list[Action], kind: str) -> list[Note]:
    return [a for a in actions if isinstance(a, Note) and a.kind == kind]


def conids_requested(actions: list[Action]) -> list[int]:
    return [int(text.split("+")[1]) for text in sent(actions) if text.startswith("smh+")]


def test_message_shape() -> None:
    text = smh_message(SmhRequest(265598, "2d", "5min", "bid_ask", True))
    topic, conid, args = text.split("+", 2)
    assert (topic, conid) == ("smh", "265598")
    assert args == ('{"period":"2d","bar":"5min","source":"bid_ask","outsideRth":true,'
                    '"format":"%o/%c/%h/%l/%v/%t"}')
    assert orjson.loads(args)["outsideRth"] is True


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="max_concurrent must be at least 1, got 0"):
        SmhScheduler([SmhRequest(1)], 0, 30.0)
    assert SmhScheduler([SmhRequest(1)], 1, 30.0).queued_count == 1


def test_the_request_event_says_what_was_asked() -> None:
    scheduler = SmhScheduler([SmhRequest(265598, "2d", "5min", "bid_ask", True)], 5, 30.0)
    [note] = notes(scheduler.on_authenticated(0.0), "smh_request")
    assert note.topic == "smh+265598"
    assert note.detail == {"period": "2d", "bar": "5min", "source": "bid_ask"}


def test_nothing_is_sent_before_authentication() -> None:
    scheduler = SmhScheduler([SmhRequest(1)], 5, 30.0)
    assert scheduler.poll(0.0) == []
    assert scheduler.next_deadline() is None
    assert scheduler.queued_count == 1


def test_twelve_requests_through_five_slots_all_answered() -> None:
    requests = [SmhRequest(100 + i) for i in range(12)]
    scheduler = SmhScheduler(requests, 5, 30.0)
    actions = scheduler.on_authenticated(0.0)
    assert conids_requested(actions) == [100, 101, 102, 103, 104]
    assert [n.topic for n in notes(actions, "smh_request")] == [f"smh+{c}" for c in range(100, 105)]
    assert scheduler.open_count == 5 and scheduler.queued_count == 7
    order = conids_requested(actions)
    answered: list[int] = []
    now = 0.0
    sent_at = dict.fromkeys(order, 0.0)
    for _ in range(12):
        now += 1.0
        conid = order[len(answered)]  # answers come in request order
        actions = scheduler.on_answer(conid, f"s{conid}", now)
        assert sent(actions)[0] == f"umh+s{conid}"
        detail = {"server_id": f"s{conid}", "waited_seconds": now - sent_at[conid]}
        assert notes(actions, "smh_answer")[0].detail == detail
        for follower in conids_requested(actions):
            sent_at[follower] = now
            order.append(follower)
        answered.append(conid)
        assert scheduler.open_count <= 5
    assert order == list(range(100, 112))  # FIFO
    assert scheduler.max_open_seen == 5
    assert scheduler.open_count == 0 and scheduler.queued_count == 0
    assert scheduler.next_deadline() is None


def test_timeout_frees_the_slot_for_the_next_request() -> None:
    scheduler = SmhScheduler([SmhRequest(1), SmhRequest(2)], 1, 30.0)
    assert conids_requested(scheduler.on_authenticated(0.0)) == [1]
    assert scheduler.next_deadline() == 30.0
    assert scheduler.poll(29.9) == []
    actions = scheduler.poll(30.0)
    assert notes(actions, "smh_timeout") == [Note("smh_timeout", "smh+1", {"waited_seconds": 30.0})]
    assert conids_requested(actions) == [2]
    assert scheduler.open_count == 1 and scheduler.queued_count == 0
    # the late answer of the timed-out request: no slot to free, but IBKR's gets its umh
    late = scheduler.on_answer(1, "late", 31.0)
    assert sent(late) == ["umh+late"]
    assert notes(late, "smh_answer")[0].detail == {"server_id": "late", "matched": False,
                                                    "late": True}
    assert scheduler.open_count == 1


def test_a_late_answer_does_not_free_an_open_request_for_the_same_conid() -> None:
    """Two requests for one conid through one slot: the first times out, the second goes out,
    then the first one's answer comes. Freeing the second's slot for it would send a third
    request while the second is still open at IBKR: two open, where one is allowed."""
    a, b, c = SmhRequest(265598, bar="1min"), SmhRequest(265598, bar="5mins"), SmhRequest(8314)
    scheduler = SmhScheduler([a, b, c], 1, 30.0)
    assert sent(scheduler.on_authenticated(0.0)) == [smh_message(a)]
    assert sent(scheduler.poll(30.0)) == [smh_message(b)]
    late = scheduler.on_answer(265598, "first", 31.0)
    assert sent(late) == ["umh+first"]  # IBKR's slot for the first is freed; no new request
    assert (notes(late, "smh_answer")[0].detail or {}).get("late") is True
    assert scheduler.open_count == 1 and scheduler.queued_count == 1
    second = scheduler.on_answer(265598, "second", 32.0)
    assert sent(second) == ["umh+second", smh_message(c)]
    assert notes(second, "smh_answer")[0].detail == {"server_id": "second",
                                                      "waited_seconds": 2.0}


def test_a_request_never_answered_is_waited_for_one_timeout_more_then_forgotten() -> None:
    """A repeating request times out and its answer never comes. Its next round is answered:
    that answer is its own (it used to be taken for the lost one's, its slot held to its
    timeout, which made the next round's late in turn, for the rest of the connection)."""
    scheduler = SmhScheduler([SmhRequest(7, every_seconds=60.0)], 5, 30.0)
    scheduler.on_authenticated(0.0)
    assert notes(scheduler.poll(30.0), "smh_timeout")  # never answered
    assert conids_requested(scheduler.poll(60.0)) == [7]  # the next round
    answer = scheduler.on_answer(7, "round2", 61.0)
    assert notes(answer, "smh_answer")[0].detail == {"server_id": "round2", "waited_seconds": 1.0}
    assert scheduler.open_count == 0
    assert conids_requested(scheduler.poll(120.0)) == [7]
    answer = scheduler.on_answer(7, "round3", 120.5)
    assert notes(answer, "smh_answer")[0].detail == {"server_id": "round3", "waited_seconds": 0.5}
    assert not notes(scheduler.poll(150.0), "smh_timeout")


@pytest.mark.parametrize("every", [31.0, 45.0, 55.0])
def test_a_request_never_answered_is_not_handed_on_from_round_to_round(every: float) -> None:
    """Rounds closer together than two timeouts: the second round's answer comes while the
    lost first one is still waited for, and is taken for it. The second then times out, but
    it is waited for only as long as the first would have been: from the third round on,
    every answer is its own."""
    scheduler = SmhScheduler([SmhRequest(7, every_seconds=every)], 5, 30.0)
    scheduler.on_authenticated(0.0)
    assert notes(scheduler.poll(30.0), "smh_timeout")  # the first: never answered
    details = []
    for round_ in range(2, 8):
        sent_at = every * (round_ - 1)
        timeouts = notes(scheduler.poll(sent_at), "smh_timeout")
        assert scheduler.open_count == 1, round_
        answer = scheduler.on_answer(7, f"round{round_}", sent_at + 1.0)
        details.append((round_, bool(timeouts), notes(answer, "smh_answer")[0].detail))
    assert details[0][2] == {"server_id": "round2", "matched": False, "late": True}
    for round_, timed_out, detail in details[2:]:
        assert detail == {"server_id": f"round{round_}", "waited_seconds": 1.0}, details
        assert not timed_out, details


def test_a_reconnect_forgets_the_answers_a_timed_out_request_still_owed() -> None:
    scheduler = SmhScheduler([SmhRequest(5), SmhRequest(5)], 1, 30.0)
    scheduler.on_authenticated(0.0)
    scheduler.poll(30.0)  # the first times out, the second is open
    scheduler.on_disconnected()
    scheduler.on_authenticated(40.0)  # the second is asked again, on the new connection
    answer = scheduler.on_answer(5, "s", 41.0)  # its answer, not the first one's
    assert notes(answer, "smh_answer")[0].detail == {"server_id": "s", "waited_seconds": 1.0}
    assert scheduler.open_count == 0


def test_duplicate_answer_frees_nothing_and_sends_one_umh() -> None:
    scheduler = SmhScheduler([SmhRequest(7), SmhRequest(7), SmhRequest(8)], 2, 30.0)
    scheduler.on_authenticated(0.0)
    first = scheduler.on_answer(7, "a", 1.0)
    assert sent(first) == ["umh+a", smh_message(SmhRequest(8))]
    assert scheduler.on_answer(7, "a", 2.0) == []  # a streaming update
    assert scheduler.open_count == 2  # the second request for conid 7 is still open
    assert sent(scheduler.on_answer(7, "b", 3.0)) == ["umh+b"]
    assert scheduler.open_count == 1


def test_reconnect_voids_open_slots_and_requeues_them_first() -> None:
    requests = [SmhRequest(c) for c in (1, 2, 3, 4)]
    scheduler = SmhScheduler(requests, 2, 30.0)
    scheduler.on_authenticated(0.0)
    scheduler.on_answer(1, "x", 1.0)  # 3 goes out
    scheduler.on_disconnected()
    assert scheduler.open_count == 0 and scheduler.queued_count == 3
    assert scheduler.poll(100.0) == []  # nothing while disconnected
    assert scheduler.next_deadline() is None
    actions = scheduler.on_authenticated(200.0)
    assert conids_requested(actions) == [2, 3]
    assert scheduler.queued_count == 1
    assert scheduler.on_answer(2, "x", 201.0)[0] == Send("umh+x")  # serverIds are per connection
    assert scheduler.next_deadline() == 230.0


def test_reconnect_without_on_disconnected_still_voids() -> None:
    scheduler = SmhScheduler([SmhRequest(1), SmhRequest(2)], 1, 30.0)
    scheduler.on_authenticated(0.0)
    assert conids_requested(scheduler.on_authenticated(5.0)) == [1]
    assert scheduler.open_count == 1 and scheduler.queued_count == 1


def test_every_seconds_requests_come_back() -> None:
    scheduler = SmhScheduler([SmhRequest(1, every_seconds=60.0), SmhRequest(2)], 5, 30.0)
    scheduler.on_authenticated(0.0)
    scheduler.on_answer(1, "a", 2.0)
    scheduler.on_answer(2, "b", 3.0)
    assert scheduler.next_deadline() == 60.0
    assert scheduler.poll(59.0) == []
    again = scheduler.poll(60.0)
    assert conids_requested(again) == [1]
    scheduler.on_answer(1, "c", 61.0)
    assert scheduler.next_deadline() == 120.0
    assert conids_requested(scheduler.poll(120.0)) == [1]  # request 2 was once only


def test_a_repeat_that_is_still_open_is_not_doubled() -> None:
    scheduler = SmhScheduler([SmhRequest(1, every_seconds=10.0)], 5, 30.0)
    scheduler.on_authenticated(0.0)
    assert scheduler.next_deadline() == 30.0  # the open slot's timeout, not the past repeat
    assert conids_requested(scheduler.poll(15.0)) == []
    assert scheduler.open_count == 1 and scheduler.queued_count == 0
    actions = scheduler.poll(30.0)  # times out, then comes straight back
    assert [type(a) for a in actions] == [Note, Send, Note]
    assert conids_requested(actions) == [1]


def test_never_more_open_than_allowed_under_churn() -> None:
    requests = [SmhRequest(c % 4, every_seconds=float(5 + c)) for c in range(9)]
    scheduler = SmhScheduler(requests, 3, 7.0)
    scheduler.on_authenticated(0.0)
    for step in range(1, 400):
        now = step * 0.5
        if step % 50 == 0:
            scheduler.on_disconnected()
            scheduler.on_authenticated(now)
        if step % 3 == 0:
            scheduler.on_answer(step % 4, f"s{step}", now)
        scheduler.poll(now)
        assert scheduler.open_count <= 3
    assert scheduler.max_open_seen == 3


def test_a_slot_times_out_counted_from_when_it_was_sent() -> None:
    scheduler = SmhScheduler([SmhRequest(1), SmhRequest(2)], 1, 30.0)
    assert conids_requested(scheduler.on_authenticated(1000.0)) == [1]
    assert scheduler.poll(1010.0) == []
    actions = scheduler.poll(1030.0)
    assert actions[0] == Note("smh_timeout", "smh+1", {"waited_seconds": 30.0})
    assert conids_requested(actions) == [2]


def test_an_answer_for_no_open_request_is_released_and_noted_unmatched() -> None:
    scheduler = SmhScheduler([SmhRequest(1)], 5, 30.0)
    scheduler.on_authenticated(0.0)
    assert scheduler.on_answer(999, "z", 1.0) == [
        Send("umh+z"), Note("smh_answer", "smh+999", {"server_id": "z", "matched": False})]
    assert scheduler.open_count == 1


def test_nothing_is_requested_or_due_while_disconnected() -> None:
    scheduler = SmhScheduler([SmhRequest(1), SmhRequest(2)], 1, 30.0)
    scheduler.on_authenticated(0.0)
    scheduler.on_disconnected()
    answer = scheduler.on_answer(1, "x", 1.0)
    assert conids_requested(answer) == [] and Send("umh+x") in answer
    repeat = SmhScheduler([SmhRequest(1, every_seconds=60.0)], 5, 30.0)
    repeat.on_authenticated(0.0)
    repeat.on_answer(1, "y", 1.0)
    repeat.on_disconnected()
    assert repeat.next_deadline() is None
