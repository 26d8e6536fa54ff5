"""The subscription book: which topics to subscribe on a connection, and when to refresh them.

Topics (SPEC §5), as sent:

- ``smd+CONID+{"fields":["31","84",…]}``, stopped with ``umd+CONID+{}``;
- ``sbd+ACCT+CONID`` or ``sbd+ACCT+CONID+EXCH``, stopped with ``ubd+ACCT`` (one per account);
- ``sor+{}`` / ``uor+{}``; ``str+{"realtimeUpdatesOnly":false,"days":1}`` / ``utr``;
  ``spl+{}`` / ``upl+{}``.

Rules:

- Pure: ``now`` (monotonic seconds) is passed in; the book returns :mod:`recorder.actions`
  for the driver to carry out in order.
- Subscriptions never survive a reconnect (the gateway forgets them). Every new authenticated
  connection gets every subscription again, from :meth:`SubscriptionBook.on_authenticated`;
  :meth:`SubscriptionBook.on_disconnected` forgets what was active.
- IBKR ends an smd stream 15 minutes after it was subscribed, silently: no frame says so,
  and the socket, ``hb`` and ``tic`` stay healthy. So ``smd_refresh_seconds`` after it was
  last sent on this connection (a new connection restarts the clock) every smd is sent again,
  as ``umd`` then ``smd``: a plain re-send of ``smd`` to a subscription the gateway still
  holds only adds fields, and neither restarts its clock nor revives a stream that ended.
  (A public client reports both, and that IBKR advised the ``umd`` first; the new
  subscription costs a snapshot per conid per refresh.)
- A conid named in several smd groups is subscribed once, with the union of their fields
  (re-sending smd with more fields only adds fields, so one message per conid is the truth).
- JSON in messages is compact and deterministic: the same config gives the same bytes.
- Active topic names are the gateway's frame topics: ``smd+265598``, ``sbd+DU1+265598``,
  ``sor``, ``str``, ``spl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from recorder.actions import Action, Note, Send
from recorder.config import Config

__all__ = ["SubscriptionBook", "Topic"]


@dataclass(frozen=True)
class Topic:
    """One subscription: its frame topic name and the messages that start and stop it."""

    name: str
    subscribe: str
    unsubscribe: str


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def topics_of(config: Config) -> tuple[tuple[Topic, ...], tuple[Topic, ...]]:
    """The config's (smd topics, other topics), in subscription order."""
    fields: dict[str, list[str]] = {}
    for group in config.smd:
        for conid in group.conids:
            merged = fields.setdefault(conid, [])
            merged.extend(f for f in group.fields if f not in merged)
    smd = tuple(
        Topic(f"smd+{conid}", f"smd+{conid}+{_json({'fields': ids})}", f"umd+{conid}+{{}}")
        for conid, ids in fields.items()
    )
    others: dict[str, Topic] = {}
    for sbd in config.sbd:
        target = f"{sbd.account}+{sbd.conid}" + (f"+{sbd.exchange}" if sbd.exchange else "")
        others.setdefault(f"sbd+{target}", Topic(f"sbd+{target}", f"sbd+{target}",
                                                 f"ubd+{sbd.account}"))
    if config.orders.enabled:
        others["sor"] = Topic("sor", "sor+{}", "uor+{}")
    if config.trades.enabled:
        args = {"realtimeUpdatesOnly": config.trades.realtime_only, "days": config.trades.days}
        others["str"] = Topic("str", f"str+{_json(args)}", "utr")
    if config.pnl.enabled:
        others["spl"] = Topic("spl", "spl+{}", "upl+{}")
    return smd, tuple(others.values())


class SubscriptionBook:
    """Subscribes on each authenticated connection and keeps smd streams from expiring."""

    def __init__(self, config: Config) -> None:
        self._smd, self._others = topics_of(config)
        self._refresh_seconds = config.session.smd_refresh_seconds
        self._connected = False
        self._active: set[str] = set()
        self._smd_sent_at: dict[str, float] = {}  # smd topic name -> last sent, this connection

    @property
    def active_topics(self) -> frozenset[str]:
        """Topics subscribed on the current connection."""
        return frozenset(self._active)

    @property
    def orders(self) -> bool:
        """Whether ``sor`` is subscribed: the day's order list is then fetched over REST too
        (seed 001: "query all orders for the current day first before subscribing")."""
        return any(topic.name == "sor" for topic in self._others)

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Every subscription the config asks for, in the order they are sent."""
        return self._smd + self._others

    def on_authenticated(self, now: float) -> list[Action]:
        """A new authenticated connection: subscribe everything (each Send, then its Note)."""
        self._connected = True
        self._active.clear()
        self._smd_sent_at.clear()
        actions: list[Action] = []
        for topic in self.topics:
            actions += [Send(topic.subscribe), Note("subscribe", topic.name)]
            self._active.add(topic.name)
        for topic in self._smd:
            self._smd_sent_at[topic.name] = now
        return actions

    def poll(self, now: float) -> list[Action]:
        """Subscribe anew every smd whose refresh is due: per topic Send ``umd``, Send ``smd``,
        then a Note ``smd_refresh``."""
        if not self._connected:
            return []
        actions: list[Action] = []
        for topic in self._smd:
            sent_at = self._smd_sent_at[topic.name]
            if now - sent_at >= self._refresh_seconds:
                actions += [
                    Send(topic.unsubscribe),
                    Send(topic.subscribe),
                    Note("smd_refresh", topic.name, {"age_seconds": round(now - sent_at, 3)}),
                ]
                self._smd_sent_at[topic.name] = now
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to do; None while disconnected or no smd."""
        if not self._connected or not self._smd_sent_at:
            return None
        return min(self._smd_sent_at.values()) + self._refresh_seconds

    def on_disconnected(self) -> None:
        """The connection is gone, and every subscription with it."""
        self._connected = False
        self._active.clear()
        self._smd_sent_at.clear()

    def unsubscribe_all(self) -> list[Action]:
        """Clean stop: unsubscribe what is active (one ``ubd`` per account), then stop polling.

        Each message is followed by a Note ``unsubscribe`` for every topic it ends.
        """
        actions: list[Action] = []
        sent: dict[str, list[str]] = {}
        for topic in self.topics:
            if topic.name in self._active:
                sent.setdefault(topic.unsubscribe, []).append(topic.name)
        for message, names in sent.items():
            actions.append(Send(message))
            actions += [Note("unsubscribe", name) for name in names]
        self.on_disconnected()
        return actions
