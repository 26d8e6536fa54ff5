"""Keep-alive timers and reconnect backoff, driven by a hand-held clock."""

from __future__ import annotations

import itertools
import random

from recorder.config import SessionConfig
from recorder.policy import PROBE_SECONDS, VALIDATE_SECONDS, Due, KeepAlive, SessionTimers, backoff

SESSION = SessionConfig(tic_seconds=30.0, heartbeat_timeout_seconds=25.0, tickle_seconds=60.0)


def test_backoff_grows_to_the_cap_and_stays_within_bounds() -> None:
    delays = list(itertools.islice(backoff(1.0, 60.0, random.Random(7)), 200))
    assert all(1.0 <= d <= 60.0 for d in delays)
    assert 1.0 <= delays[0] <= 2.0  # the first ceiling is twice the minimum
    assert delays[3] >= 4.0 and delays[5] >= 16.0  # grows
    assert all(30.0 <= d <= 60.0 for d in delays[10:])  # capped, jittered down by half at most
    assert len(set(delays[10:])) > 100  # jittered, not a constant


def test_backoff_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    first = list(itertools.islice(backoff(0.5, 30.0, random.Random(1)), 20))
    again = list(itertools.islice(backoff(0.5, 30.0, random.Random(1)), 20))
    other = list(itertools.islice(backoff(0.5, 30.0, random.Random(2)), 20))
    assert first == again
    assert first != other


def test_backoff_doubles_its_ceiling() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 0.0  # no jitter: the ceiling itself

    assert list(itertools.islice(backoff(1.0, 10.0, Top()), 6)) == [2, 4, 8, 10, 10, 10]


def test_even_the_first_delay_is_jittered() -> None:
    """Recorders that lose their gateway together (its 01:00 reset) must not all come back
    at exactly ``min`` seconds."""
    firsts = {next(backoff(1.0, 60.0, random.Random(seed))) for seed in range(50)}
    assert len(firsts) == 50 and all(1.0 <= d <= 2.0 for d in firsts)


def test_backoff_degenerate_bounds() -> None:
    assert list(itertools.islice(backoff(5.0, 5.0, random.Random(0)), 3)) == [5.0, 5.0, 5.0]
    zero = list(itertools.islice(backoff(0.0, 3.0, random.Random(0)), 5))
    assert all(0.0 <= d <= 3.0 for d in zero) and zero[0] == 0.0 and zero[1] > 0.0
    assert all(d == 2.0 for d in itertools.islice(backoff(2.0, 1.0, random.Random(0)), 5))


def authenticated(keepalive: KeepAlive) -> KeepAlive:
    keepalive.on_authenticated()
    return keepalive


def test_keepalive_tics_every_period() -> None:
    keepalive = authenticated(KeepAlive(SESSION, now=100.0))
    assert keepalive.next_deadline() == 125.0  # the silence limit comes first
    keepalive.on_frame(110.0)
    assert keepalive.poll(129.9) == []
    assert keepalive.poll(130.0) == [Due.TIC]
    assert keepalive.poll(130.0) == []
    keepalive.on_frame(150.0)
    assert keepalive.next_deadline() == 160.0
    assert keepalive.poll(160.0) == [Due.TIC]


def test_keepalive_reports_dead_once_after_silence() -> None:
    keepalive = authenticated(KeepAlive(SESSION, now=0.0))
    keepalive.on_frame(10.0)
    assert keepalive.poll(30.0) == [Due.TIC]
    assert keepalive.poll(34.9) == []
    assert keepalive.poll(35.0) == [Due.DEAD]
    assert keepalive.poll(36.0) == []
    assert keepalive.next_deadline() == 60.0  # only the tic is left
    assert keepalive.poll(60.0) == [Due.TIC]
    keepalive.on_frame(61.0)  # a frame after all: watch again
    assert keepalive.poll(86.0) == [Due.DEAD]


def test_keepalive_frames_postpone_dead_and_old_times_are_ignored() -> None:
    keepalive = authenticated(KeepAlive(SESSION, now=0.0))
    for t in range(5, 300, 9):  # a frame every 9 s, like hb every 10 s
        keepalive.on_frame(float(t))
        keepalive.on_frame(0.0)  # a stale report must not move time backwards
        assert Due.DEAD not in keepalive.poll(float(t) + 8.9)
    assert keepalive.last_frame == 293.0


def test_keepalive_after_a_stall_fires_once_not_per_missed_period() -> None:
    keepalive = authenticated(KeepAlive(SESSION, now=0.0))
    keepalive.on_frame(1000.0)
    assert keepalive.poll(1000.0) == [Due.TIC]
    assert keepalive.next_deadline() == 1025.0


def test_keepalive_reports_a_socket_never_authenticated_once_however_busy() -> None:
    """Frames keep coming (hb, tic replies, sts authenticated:false), so the socket is not
    dead; but one not authenticated within the heartbeat timeout will never stream."""
    keepalive = KeepAlive(SESSION, now=100.0)
    assert keepalive.poll(101.0) == [Due.TIC]  # the probe
    assert keepalive.next_deadline() == 125.0
    for t in range(101, 125):
        keepalive.on_frame(float(t))
        assert Due.UNAUTHENTICATED not in keepalive.poll(float(t))
    assert keepalive.poll(125.0) == [Due.UNAUTHENTICATED]
    assert keepalive.poll(126.0) == []
    assert keepalive.next_deadline() == 130.0  # the tic; the silence limit is 149


def test_keepalive_a_socket_authenticated_in_time_is_never_reported() -> None:
    keepalive = KeepAlive(SESSION, now=0.0)
    keepalive.on_frame(0.2)
    keepalive.on_authenticated()
    keepalive.on_frame(24.0)
    assert keepalive.next_deadline() == 30.0
    assert keepalive.poll(25.0) == []
    assert keepalive.poll(30.0) == [Due.TIC]


def test_session_timers() -> None:
    timers = SessionTimers(SESSION, now=0.0)
    assert timers.next_deadline() == 60.0
    tickles = validates = 0
    now = 0.0
    while now < 3600.0:
        now = timers.next_deadline()
        due = timers.poll(now)
        assert due
        tickles += due.count(Due.TICKLE)
        validates += due.count(Due.VALIDATE)
    assert tickles == 60
    assert validates == 3600 / VALIDATE_SECONDS


def test_session_timers_never_validate_more_than_once_a_minute() -> None:
    timers = SessionTimers(SESSION, now=0.0, validate_seconds=1.0)
    times = []
    for step in range(0, 6000):
        if Due.VALIDATE in timers.poll(step / 10):
            times.append(step / 10)
    assert times and all(b - a >= 60.0 for a, b in itertools.pairwise(times))


def test_keepalive_a_frame_reported_again_at_the_same_time_does_not_rearm_dead() -> None:
    keepalive = authenticated(KeepAlive(SESSION, now=0.0))
    keepalive.on_frame(10.0)
    assert keepalive.poll(35.0) == [Due.TIC, Due.DEAD]
    keepalive.on_frame(10.0)  # the same frame time again: nothing new arrived
    assert keepalive.poll(36.0) == []


def test_backoff_below_half_a_second_still_doubles_from_its_minimum() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 0.0

    assert list(itertools.islice(backoff(0.25, 10.0, Top()), 6)) == [
        0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_keepalive_probes_a_socket_with_no_sts_once_with_a_tic() -> None:
    """A gateway that sends no login burst on a socket (real ones did not, after the first
    socket of a session) leaves it unauthenticated: a second after it opened it gets a tic,
    whose answer shows it is logged in. Once, and then the tics keep their period."""
    keepalive = KeepAlive(SESSION, now=0.0)
    assert keepalive.next_deadline() == PROBE_SECONDS == 1.0
    assert keepalive.poll(0.9) == []
    assert keepalive.poll(1.0) == [Due.TIC]
    assert keepalive.poll(1.5) == []
    keepalive.on_frame(1.1)  # the answer
    keepalive.on_authenticated()
    assert keepalive.next_deadline() == 26.1  # the silence limit; the tic is due at 30
    keepalive.on_frame(10.0)  # a heartbeat
    assert keepalive.poll(30.0) == [Due.TIC]


def test_keepalive_sends_no_probe_to_a_socket_authenticated_by_its_sts() -> None:
    keepalive = KeepAlive(SESSION, now=0.0)
    keepalive.on_frame(0.2)
    keepalive.on_authenticated()  # the sts of the login burst
    assert keepalive.poll(1.0) == [] and keepalive.next_deadline() == 25.2


def test_a_tic_due_on_its_period_is_the_probe_too() -> None:
    keepalive = KeepAlive(SessionConfig(tic_seconds=0.5, heartbeat_timeout_seconds=25.0), 0.0)
    assert keepalive.poll(0.5) == [Due.TIC]
    assert keepalive.poll(1.0) == [Due.TIC]  # the period's, not a second one
    assert keepalive.poll(1.2) == []
