"""REST pacing: simulated minutes of requests never exceed IBKR's pacing table."""

from __future__ import annotations

import bisect
import random

import pytest

from recorder.pacing import Pacer, endpoint


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    # half-open windows [t, t + window) starting at each send
    return max(bisect.bisect_left(times, t + window - 1e-9) - i for i, t in enumerate(times))


def test_endpoint_normalisation() -> None:
    assert endpoint("/v1/api/tickle") == "/tickle"
    assert endpoint("/v1/api/iserver/auth/status?x=1") == "/iserver/auth/status"
    assert endpoint("tickle/") == "/tickle"
    assert endpoint("/v1/apix/tickle") == "/v1/apix/tickle"


def test_first_request_goes_at_once_and_tickle_is_one_a_second() -> None:
    pacer = Pacer()
    assert pacer.reserve("/v1/api/tickle", 10.0) == 0.0
    assert pacer.reserve("/tickle", 10.2) == pytest.approx(0.8)
    assert pacer.reserve("/tickle", 10.2) == pytest.approx(1.8)  # queued behind the last one


def test_validate_is_one_a_minute_and_unlimited_paths_only_obey_the_global_rate() -> None:
    pacer = Pacer()
    assert pacer.reserve("/v1/api/sso/validate", 0.0) == 0.0
    assert pacer.reserve("/v1/api/sso/validate", 1.0) == pytest.approx(59.0)
    assert pacer.reserve("/v1/api/iserver/auth/status", 100.0) == 0.0
    assert pacer.reserve("/v1/api/iserver/auth/status", 100.0) == pytest.approx(0.1)


def test_waiting_out_an_endpoint_first_holds_no_other_request_back() -> None:
    """/iserver/account/orders is once per 5 s. Reserving its next slot at once would take
    the global bucket 5 s ahead and hold /tickle back that long; waiting out
    ``endpoint_wait`` first, which commits nothing, does not."""
    orders = "/iserver/account/orders"
    pacer = Pacer()
    assert pacer.reserve(orders, 0.0) == 0.0
    assert pacer.endpoint_wait(orders, 1.0) == pytest.approx(4.0)
    assert pacer.endpoint_wait(orders, 1.0) == pytest.approx(4.0)  # nothing was committed
    assert pacer.endpoint_wait("/tickle", 1.0) == 0.0
    assert pacer.reserve("/tickle", 1.0) == 0.0  # not behind the orders list's next slot
    assert pacer.endpoint_wait(orders, 5.0) == 0.0
    assert pacer.reserve(orders, 5.0) == 0.0
    reserved_ahead = Pacer()  # what reserving at once did: /tickle waits for the list
    reserved_ahead.reserve(orders, 0.0)
    assert reserved_ahead.reserve(orders, 1.0) == pytest.approx(4.0)
    assert reserved_ahead.reserve("/tickle", 1.0) == pytest.approx(4.1)


def test_templated_paths_match_one_segment() -> None:
    pacer = Pacer()
    assert pacer.limit_key("/v1/api/fyi/settings/PM") == "/fyi/settings/{typecode}"
    assert pacer.limit_key("/v1/api/fyi/settings") == "/fyi/settings"
    assert pacer.limit_key("/v1/api/fyi/settings/PM/x") is None
    assert pacer.limit_key("/v1/api/iserver/auth/status") is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_simulated_minute_never_exceeds_any_rate(seed: int) -> None:
    rng = random.Random(seed)
    pacer = Pacer()
    paths = ["/v1/api/tickle", "/v1/api/sso/validate", "/v1/api/iserver/auth/status",
             "/v1/api/iserver/account/orders", "/v1/api/portfolio/accounts"]
    sent: dict[str, list[float]] = {p: [] for p in paths}
    now = 0.0
    while now < 60.0:
        now += rng.expovariate(40.0)  # callers asking far faster than allowed
        path = rng.choice(paths)
        wait = pacer.reserve(path, now)
        assert wait >= 0.0
        sent[path].append(now + wait)
    every = [t for times in sent.values() for t in times]
    assert max_in_window(every, 1.0) <= 10
    assert max_in_window(sent["/v1/api/tickle"], 1.0) == 1
    assert max_in_window(sent["/v1/api/sso/validate"], 60.0) == 1
    assert max_in_window(sent["/v1/api/iserver/account/orders"], 5.0) == 1
    assert max_in_window(sent["/v1/api/portfolio/accounts"], 5.0) == 1
    assert len(sent["/v1/api/iserver/auth/status"]) > 100  # unlimited paths still flow


def test_custom_limits_and_bad_arguments() -> None:
    pacer = Pacer({"/a": (2, 1.0)}, global_rate=100.0)
    assert [pacer.reserve("/a", 0.0) for _ in range(3)] == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(ValueError):
        Pacer(global_rate=0)
    with pytest.raises(ValueError):
        Pacer({"/a": (0, 1.0)})
