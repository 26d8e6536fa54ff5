"""The subscription book: exact messages, refresh schedule, reconnects, clean stop."""

from __future__ import annotations

from recorder.actions import Note, Send
from recorder.config import (
    Config,
    OrdersConfig,
    PnlConfig,
    SbdRequest,
    SessionConfig,
    SmdGroup,
    TradesConfig,
)
from recorder.subscriptions import SubscriptionBook

CONFIG = Config(
    session=SessionConfig(smd_refresh_seconds=540.0),
    smd=(SmdGroup(("265598", "8314@NYSE"), ("31", "84")), SmdGroup(("265598", "9"), ("86",))),
    sbd=(SbdRequest("DU1", 265598), SbdRequest("DU1", 9, "NYSE"), SbdRequest("U2", 3)),
    orders=OrdersConfig(True),
    trades=TradesConfig(True, days=3, realtime_only=True),
    pnl=PnlConfig(True),
)


def test_everything_is_subscribed_in_order_each_send_then_its_note() -> None:
    book = SubscriptionBook(CONFIG)
    assert book.active_topics == frozenset()
    assert book.on_authenticated(0.0) == [
        Send('smd+265598+{"fields":["31","84","86"]}'), Note("subscribe", "smd+265598"),
        Send('smd+8314@NYSE+{"fields":["31","84"]}'), Note("subscribe", "smd+8314@NYSE"),
        Send('smd+9+{"fields":["86"]}'), Note("subscribe", "smd+9"),
        Send("sbd+DU1+265598"), Note("subscribe", "sbd+DU1+265598"),
        Send("sbd+DU1+9+NYSE"), Note("subscribe", "sbd+DU1+9+NYSE"),
        Send("sbd+U2+3"), Note("subscribe", "sbd+U2+3"),
        Send("sor+{}"), Note("subscribe", "sor"),
        Send('str+{"realtimeUpdatesOnly":true,"days":3}'), Note("subscribe", "str"),
        Send("spl+{}"), Note("subscribe", "spl"),
    ]
    assert book.active_topics == {"smd+265598", "smd+8314@NYSE", "smd+9", "sbd+DU1+265598",
                                  "sbd+DU1+9+NYSE", "sbd+U2+3", "sor", "str", "spl"}


def test_nothing_configured_nothing_sent() -> None:
    book = SubscriptionBook(Config())
    assert book.on_authenticated(0.0) == []
    assert book.next_deadline() is None
    assert book.poll(1e6) == []
    assert book.unsubscribe_all() == []


def test_smd_refresh_schedule_and_reconnects() -> None:
    config = Config(smd=(SmdGroup(("1", "2"), ("31",)),))
    book = SubscriptionBook(config)
    assert book.poll(0.0) == [] and book.next_deadline() is None  # not connected yet
    book.on_authenticated(10.0)
    assert book.next_deadline() == 550.0
    assert book.poll(549.9) == []
    refresh = book.poll(550.0)
    assert refresh == [  # umd first: a plain re-send does not renew a stream (sim docstring)
        Send("umd+1+{}"), Send('smd+1+{"fields":["31"]}'),
        Note("smd_refresh", "smd+1", {"age_seconds": 540.0}),
        Send("umd+2+{}"), Send('smd+2+{"fields":["31"]}'),
        Note("smd_refresh", "smd+2", {"age_seconds": 540.0}),
    ]
    assert book.next_deadline() == 1090.0
    book.on_disconnected()
    assert book.active_topics == frozenset()
    assert book.next_deadline() is None
    assert book.poll(1090.0) == []
    # a reconnect subscribes again and restarts the refresh clock from then
    again = book.on_authenticated(1200.0)
    assert [a for a in again if isinstance(a, Send)] == [refresh[1], refresh[4]]
    assert book.next_deadline() == 1740.0
    assert book.poll(1739.0) == []
    assert len(book.poll(1740.0)) == 6


def test_a_late_poll_refreshes_once() -> None:
    book = SubscriptionBook(Config(smd=(SmdGroup(("1",)),)))
    book.on_authenticated(0.0)
    assert len(book.poll(5000.0)) == 3  # umd, smd, note
    assert book.poll(5000.0) == []
    assert book.next_deadline() == 5540.0


def test_unsubscribe_all_stops_what_is_active() -> None:
    book = SubscriptionBook(CONFIG)
    book.on_authenticated(0.0)
    assert book.unsubscribe_all() == [
        Send("umd+265598+{}"), Note("unsubscribe", "smd+265598"),
        Send("umd+8314@NYSE+{}"), Note("unsubscribe", "smd+8314@NYSE"),
        Send("umd+9+{}"), Note("unsubscribe", "smd+9"),
        Send("ubd+DU1"), Note("unsubscribe", "sbd+DU1+265598"),
        Note("unsubscribe", "sbd+DU1+9+NYSE"),
        Send("ubd+U2"), Note("unsubscribe", "sbd+U2+3"),
        Send("uor+{}"), Note("unsubscribe", "sor"),
        Send("utr"), Note("unsubscribe", "str"),
        Send("upl+{}"), Note("unsubscribe", "spl"),
    ]
    assert book.active_topics == frozenset()
    assert book.unsubscribe_all() == []
    assert book.poll(1e6) == []


def test_unsubscribe_all_while_disconnected_sends_nothing() -> None:
    book = SubscriptionBook(CONFIG)
    book.on_authenticated(0.0)
    book.on_disconnected()
    assert book.unsubscribe_all() == []
