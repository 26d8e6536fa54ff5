"""The smh slot scheduler: historical-bar requests through IBKR's few concurrent slots.

IBKR allows at most 5 concurrent historical requests; a sixth is ignored or breaks another
stream. So:

- At most ``max_concurrent`` requests are open at once. A slot is held from the ``smh``
  request until its answer arrives (then ``umh+<serverId>`` is sent, which is what frees the
  slot at IBKR) or until ``timeout_seconds`` pass with no answer (Note ``smh_timeout``).
- Requests wait in a FIFO queue. A request with ``every_seconds > 0`` comes back into the
  queue that many seconds after it was last sent (if it is not already queued or open);
  ``every_seconds == 0`` means once per run.
- ``umh`` goes out once per serverId. Later frames with the same serverId (streaming updates)
  free nothing. An answer matching no open slot (e.g. it came after its timeout) still gets its
  one ``umh``, so IBKR's slot is freed too.
- An answer frees the oldest open slot for its conid, unless a request for that conid timed
  out earlier on this connection and has had no answer yet: then the answer is taken for that
  late one's and frees nothing. Taken for an open request's, it would free a slot whose request
  is still open at IBKR, one more than ``max_concurrent``; taken the other way, wrongly, the
  worst is a slot held until its timeout. A late request is waited for one more
  ``timeout_seconds``, no longer: one that is never answered would otherwise have every later
  answer for its conid taken for the one before it, each slot held to its timeout. An answer
  taken for a late request while one for its conid is open leaves one of the two unanswered;
  if the open one then times out, the wait for it ends no later than the late one's would
  have, so a request never answered is forgotten once, not handed on from round to round.
- A reconnect voids open slots (their answers will not come): those requests go back to the
  front of the queue, in their order, and are sent again once the new connection is
  authenticated. Nothing is sent while disconnected.
- Pure: ``now`` (monotonic seconds) is passed in; actions come back for the driver.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson

from recorder.actions import Action, Note, Send
from recorder.config import SmhRequest

__all__ = ["BAR_FORMAT", "SmhScheduler", "smh_message"]

#: Bar keys asked for: open, close, high, low, volume, and the bar time (epoch ms).
BAR_FORMAT = "%o/%c/%h/%l/%v/%t"


def smh_message(request: SmhRequest) -> str:
    """The ``smh+CONID+{…}`` text for ``request`` (compact, deterministic JSON)."""
    args = {
        "period": request.period,
        "bar": request.bar,
        "source": request.source,
        "outsideRth": request.outside_rth,
        "format": BAR_FORMAT,
    }
    return f"smh+{request.conid}+{orjson.dumps(args).decode()}"


@dataclass(frozen=True)
class _Slot:
    index: int  # into the scheduler's requests
    sent_at: float
    # an answer that may have been this one's was taken for a late request waited for until
    # then: if this one times out, it is waited for no longer
    late_until: float | None = None


class SmhScheduler:
    """Queues smh requests and keeps at most ``max_concurrent`` of them open."""

    def __init__(
        self, requests: Sequence[SmhRequest], max_concurrent: int, timeout_seconds: float
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self._requests = tuple(requests)
        self._max = max_concurrent
        self._timeout = timeout_seconds
        self._queue: deque[int] = deque(range(len(self._requests)))
        self._open: list[_Slot] = []
        self._due: dict[int, float] = {}  # repeating request -> when it comes back
        self._unsubscribed: set[str] = set()  # serverIds that got their umh, this connection
        # conid -> until when each timed-out request not answered yet is waited for, oldest first
        self._late: dict[int, list[float]] = {}
        self._connected = False
        self.max_open_seen = 0

    @property
    def open_count(self) -> int:
        return len(self._open)

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    def on_authenticated(self, now: float) -> list[Action]:
        """A new authenticated connection: re-queue voided slots first, then fill slots."""
        self._void_open()
        self._connected = True
        return self._fill(now)

    def on_disconnected(self) -> None:
        """The connection is gone; open requests will never be answered."""
        self._connected = False
        self._void_open()

    def on_answer(self, conid: int, server_id: str, now: float) -> list[Action]:
        """An smh frame for ``conid`` with ``server_id`` arrived."""
        if server_id in self._unsubscribed:
            return []  # a streaming update of an answer already handled
        self._unsubscribed.add(server_id)
        topic = f"smh+{conid}"
        detail: dict[str, object] = {"server_id": server_id}
        late = self._waited_for(conid, now)
        slot = next((s for s in self._open if self._requests[s.index].conid == conid), None)
        if late:  # taken for the late request: the open one, if any, stays open
            until = late.pop(0)
            if slot is not None:
                self._open[self._open.index(slot)] = replace(slot, late_until=until)
            detail["matched"], detail["late"] = False, True
        elif slot is None:
            detail["matched"] = False
        else:
            self._open.remove(slot)
            detail["waited_seconds"] = round(now - slot.sent_at, 3)
        actions: list[Action] = [Send(f"umh+{server_id}"), Note("smh_answer", topic, detail)]
        return actions + self._fill(now)

    def poll(self, now: float) -> list[Action]:
        """Time out silent slots, bring repeating requests back, fill free slots."""
        if not self._connected:
            return []
        actions: list[Action] = []
        for slot in [s for s in self._open if now - s.sent_at >= self._timeout]:
            self._open.remove(slot)
            request = self._requests[slot.index]
            until = now + self._timeout
            if slot.late_until is not None:
                until = min(until, slot.late_until)
            if until > now:
                self._late.setdefault(request.conid, []).append(until)
            actions.append(Note("smh_timeout", f"smh+{request.conid}",
                                {"waited_seconds": round(now - slot.sent_at, 3)}))
        for index, due in sorted(self._due.items(), key=lambda item: item[1]):
            if due <= now and self._idle(index):
                del self._due[index]
                self._queue.append(index)
        return actions + self._fill(now)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to do; None while disconnected or idle."""
        if not self._connected:
            return None
        times = [s.sent_at + self._timeout for s in self._open]
        times += [due for index, due in self._due.items() if self._idle(index)]
        return min(times, default=None)

    # -- internals ---------------------------------------------------------------------------

    def _waited_for(self, conid: int, now: float) -> list[float]:
        """The late requests of ``conid`` still waited for at ``now`` (the others forgotten)."""
        late = [until for until in self._late.get(conid, ()) if until > now]
        if late:
            self._late[conid] = late
        else:
            self._late.pop(conid, None)
        return late

    def _idle(self, index: int) -> bool:
        return index not in self._queue and all(s.index != index for s in self._open)

    def _void_open(self) -> None:
        for slot in reversed(self._open):
            self._queue.appendleft(slot.index)
        self._open.clear()
        self._unsubscribed.clear()
        self._late.clear()  # answers to a closed connection's requests never come

    def _fill(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self._connected and self._queue and len(self._open) < self._max:
            index = self._queue.popleft()
            request = self._requests[index]
            self._open.append(_Slot(index, now))
            self.max_open_seen = max(self.max_open_seen, len(self._open))
            if request.every_seconds > 0:
                self._due[index] = now + request.every_seconds
            actions += [
                Send(smh_message(request)),
                Note("smh_request", f"smh+{request.conid}",
                     {"period": request.period, "bar": request.bar, "source": request.source}),
            ]
        return actions
