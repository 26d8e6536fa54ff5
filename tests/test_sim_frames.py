"""The simulator's frames agree with the real captured ones key for key (pure, no sockets).

For every topic with a live capture in ``../shared/ibkr/frames/``, a frame from the
simulator's encoders must have the same keys, in the same order (where the real gateway's
order is fixed), with the same JSON types.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from recorder.sim import encode, history
from recorder.sim.account import STR_EMPTY, Account, ladder
from recorder.sim.connection import SmdSub
from recorder.sim.market import FROZEN_CONID, UNUSABLE_CONID, Market, format_size, format_volume
from tests.real_frames import FRAMES_DIR as REAL_FRAMES_DIR

FRAMES = REAL_FRAMES_DIR


def real(topic_file: str) -> list[dict[str, Any]]:
    """The captured frames of one file that are valid JSON, parsed (key order kept)."""
    out = []
    for line in (FRAMES / f"{topic_file}.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(json.loads(line)["frame"]))
        except json.JSONDecodeError:
            continue  # doc samples published as invalid JSON
    return out


def shape(value: Any) -> Any:
    """Keys in order and JSON types, recursively (lists: the shape of the first element)."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def parsed(frame: bytes) -> dict[str, Any]:
    value = json.loads(frame)
    assert isinstance(value, dict)
    return value


def test_login_burst_frames_match_the_live_capture() -> None:
    success, *hbs = real("system")
    assert shape(parsed(encode.system_success("user1234", False))) == shape(success)
    assert shape(parsed(encode.heartbeat(1777415611502))) == shape(hbs[0])
    (live_sts,) = [f for f in real("sts") if "connected" in f["args"] and "username" in f["args"]]
    assert shape(parsed(encode.sts_login("user1234"))) == shape(live_sts)
    (live_act,) = real("act")
    ours = parsed(encode.act("U1234567", "69f03732.00000af0", False))
    assert list(ours) == list(live_act)
    assert list(ours["args"]) == list(live_act["args"])
    assert shape(ours["args"]["acctProps"]) == shape(live_act["args"]["acctProps"])
    assert shape(ours["args"]["serverInfo"]) == shape(live_act["args"]["serverInfo"])


def test_auth_lost_sts_frames_are_the_one_key_frames_seen() -> None:
    one_key = sorted(repr(shape(f)) for f in real("sts") if len(f["args"]) == 1)
    ours = sorted(repr(shape(parsed(f))) for f in encode.sts_auth_lost(False))
    assert ours == one_key


def test_tic_reply_waiting_and_topic_unknown() -> None:
    live_tic = real("tic")[0]
    ours = parsed(encode.tic_reply(live_tic["id"], live_tic["lastAccessed"]))
    assert ours == live_tic
    wire = json.loads((FRAMES / "tic.jsonl").read_text().splitlines()[0])["frame"]
    assert orjson.dumps(ours) == wire.encode()
    (waiting,) = [f for f in real("other") if f.get("message") == "waiting for session"]
    assert parsed(encode.WAITING_FOR_SESSION) == waiting
    (live_error,) = real("errors")
    assert parsed(encode.topic_unknown('{"session":"abc"}')) == live_error


def test_smd_snapshot_pair_and_delta_follow_the_key_order_rules() -> None:
    live = [f for f in real("smd") if "83" in f and "6509" in f]
    first_live = next(f for f in live if list(f)[0] != "server_id")
    second_live = next(f for f in live if list(f)[0] == "server_id")
    market = Market(3)
    sub = SmdSub(265598, "265598", ("6509", "83", "84", "31", "86"), "q1", 0.0)
    first, second = sub.snapshot(market.quote(265598), 1777552110061)
    f1, f2 = parsed(first), parsed(second)
    assert shape(f1) == shape(first_live)
    assert set(f2) == set(second_live) and list(f2)[:5] == list(second_live)[:5]
    assert list(f2)[-1] == "topic"
    assert {k: v for k, v in f1.items()} == {k: v for k, v in f2.items()}  # same values
    assert f1["6119"] == f1["server_id"] == "q1" and f1["conid"] == 265598
    for _ in range(50):
        market.step({265598})
        frame = sub.delta(market.quote(265598), 1777552110561)
        if frame is not None:
            delta = parsed(frame)
            assert list(delta)[:5] == ["server_id", "conidEx", "conid", "_updated", "6119"]
            assert list(delta)[-1] == "topic"
            for key, value in delta.items():
                if key in ("83",):
                    assert isinstance(value, float)
                elif key not in ("conid", "_updated"):
                    assert isinstance(value, str)


def test_value_encodings() -> None:
    assert format_size(1236) == "1,236" and format_size(500) == "500"
    assert format_volume(12_200_000) == "12.2M" and format_volume(10_200) == "10.2K"
    assert format_volume(950) == "950"
    market = Market(1)
    frozen = market.quote(FROZEN_CONID).fields()
    assert frozen["31"] == "C4735.10" and frozen["6509"] == "ZB"
    assert frozen["84"] == "" and frozen["88"] == ""
    assert market.quote(UNUSABLE_CONID).fields() == {"55": "-", "31": "N/A"}
    aapl = market.quote(265598).fields()
    assert isinstance(aapl["83"], float) and isinstance(aapl["87_raw"], float)
    assert str(aapl["87"]).endswith(("K", "M")) and "," in format_size(int(aapl["87_raw"]))
    sub = SmdSub(265598, "265598", ("87", "31"), "q9", 0.0)
    _, second = sub.snapshot(market.quote(265598), 1)
    keys = list(parsed(second))
    assert keys.index("87_raw") == keys.index("87") + 1  # 87_raw rides right after 87


def test_same_seed_same_quotes() -> None:
    a, b = Market(42), Market(42)
    for _ in range(20):
        a.step({265598, 8314})
        b.step({265598, 8314})
    assert a.quote(8314).fields() == b.quote(8314).fields()
    assert Market(43).quote(8314).fields() != Market(42).quote(8314).fields()


def test_smh_answer_matches_the_captured_answer() -> None:
    (live,) = real("smh")
    args = json.loads(live["payload"])
    frame = history.smh_answer(
        conid=265598, server_id="588547", symbol="AAPL", name="APPLE INC", price=254.91,
        args=args, payload=live["payload"], now_ms=1734973560000, rng=random.Random(1),
    )
    ours = parsed(frame)
    assert shape(ours) == shape(live)
    assert ours["payload"] == live["payload"] and ours["serverId"] == "588547"


@pytest.mark.parametrize(
    ("fmt", "keys"),
    [("%o/%c/%h/%l", ["o", "c", "h", "l"]), ("%t/%o/%c/%h/%l/%v", ["t", "o", "c", "h", "l", "v"])],
)
def test_smh_bars_follow_format(fmt: str, keys: list[str]) -> None:
    now_ms = 1734973560000
    frame = parsed(history.smh_answer(
        conid=1, server_id="1", symbol="X", name="X", price=10.0,
        args={"period": "1h", "bar": "5min", "format": fmt}, payload="{}", now_ms=now_ms,
        rng=random.Random(2),
    ))
    assert len(frame["data"]) == 12 and frame["barLength"] == 300
    assert [list(bar) for bar in frame["data"]] == [keys] * 12
    if "t" in keys:
        times = [bar["t"] for bar in frame["data"]]
        assert times[-1] == now_ms // 300_000 * 300_000 and times[1] - times[0] == 300_000


def test_sor_cancel_lifecycle_matches_the_live_seven_frames() -> None:
    live = real("sor")[:7]
    frames, executions = Account("U1234567", 1).lifecycle(Market(1).quote(265598), 1777552533000)
    assert executions == []
    assert [shape(parsed(f)) for f in frames] == [shape(f) for f in live]
    statuses = [parsed(f)["args"][0].get("status") for f in frames]
    assert statuses == [s["args"][0].get("status") for s in live]


def test_sor_fill_lifecycle_brings_executions_sent_twice() -> None:
    account = Account("U1234567", 1)
    quote = Market(1).quote(265598)
    account.lifecycle(quote, 1777552533000)
    frames, executions = account.lifecycle(quote, 1777552534000)
    last = parsed(frames[-1])["args"][0]
    assert last["status"] == "Filled" and last["remainingQuantity"] == 0.0
    assert executions
    lrcx = [f for f in real("str") if f["args"] and f["args"][0]["symbol"] == "LRCX"]
    (live_plain, live_comm) = lrcx
    for ex in executions:
        assert shape(parsed(ex.frame(False))) == shape(live_plain)
        assert shape(parsed(ex.frame(True))) == shape(live_comm)
    assert parsed(STR_EMPTY) == real("str")[0]


def test_every_fill_has_a_size_and_the_history_is_the_same_each_time() -> None:
    """A 2-lot order filled as 0 then 2 (``Bot 0 @ …``); and each str subscription got
    yesterday's executions under new ids, which a real account's history never does."""
    account = Account("U1234567", 1)
    quote = Market(1).quote(265598)
    sizes = []
    for n in range(200):
        sizes += [dict(ex.fields)["size"] for ex in account.lifecycle(quote, 1777552533000 + n)[1]]
    assert min(sizes) >= 1
    assert (1.0, 1.0) in set(zip(sizes, sizes[1:], strict=False))  # a 2-lot, filled 1 and 1
    first = [ex.frame(True) for ex in account.backfill(quote, 1777552600000)]
    again = [ex.frame(True) for ex in account.backfill(quote, 1777553600000)]
    assert first == again and len(first) == 2


def test_spl_and_sbd_shapes() -> None:
    live_spl = real("spl")[0]
    ours = parsed(Account("DU7654321", 1).pnl(0.0))
    assert list(ours["args"]) == ["DU7654321.Core"]
    assert shape(ours["args"]["DU7654321.Core"]) == shape(live_spl["args"]["DU7654321.Core"])
    rows = parsed(ladder("sbd+DU1+265598", Market(1).quote(265598)))["data"]
    assert [r["row"] for r in rows] == list(range(11))
    (focus,) = [r for r in rows if r["focus"] == 1]
    assert list(focus) == ["row", "focus", "price"] and " @ " in focus["price"]
    assert all(list(r)[:3] == ["row", "focus", "price"] for r in rows)
    assert {tuple(r)[3:] for r in rows if r["focus"] == 0} == {("ask",), ("bid",)}


def test_bad_utf8_and_malformed() -> None:
    frame = encode.with_bad_utf8(encode.blt("X", "notice"))
    assert b"\x99" in frame
    with pytest.raises(UnicodeDecodeError):
        frame.decode()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(encode.MALFORMED)
