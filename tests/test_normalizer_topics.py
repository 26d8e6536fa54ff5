"""smh, sbd, sor, str and spl frames to exact rows (real frames where they exist)."""

from __future__ import annotations

import json

import pytest

from recorder.frames import Frame, event_frame
from recorder.normalizer import NormalizeError, normalize, normalize_frame
from tests.test_normalizer import T0, frame, one, real, rows

# --- smh -> bars --------------------------------------------------------------------------


def test_smh_real_answer_without_t() -> None:
    (text,) = real("smh")
    out = normalize([frame(text, 3)])
    assert set(out) == {"bars", "raw"}
    head = {"recv_ts": T0 + 3000, "seq": 3, "conid": 265598, "server_id": "588547",
            "symbol": "AAPL", "bar_time": None, "volume": None, "bar": "1min",
            "period": "1min", "source": "trades", "price_factor": 100, "volume_factor": 100,
            "outside_rth": False}  # fmt: skip
    assert rows(out, "bars") == [
        {**head, "open": 254.91, "high": 254.94, "low": 254.82, "close": 254.91},
        {**head, "open": 254.9, "high": 254.95, "low": 254.9, "close": 254.9},
    ]
    assert rows(out, "raw")[0]["topic"] == "smh+265598"


def test_smh_with_t_and_v() -> None:
    # Constructed in the real smh shape, with the %t/%v format keys the docs describe and a
    # numeric serverId; no payload echo (older gateways): bar/period/source null.
    answer = json.loads(real("smh")[0])
    answer.pop("payload")
    answer["serverId"] = 588547
    answer["data"] = [
        {"t": 1734973500000, "o": 254.91, "c": 254.91, "h": 254.94, "l": 254.82, "v": 1234.0},
        {"t": 1734973560000, "o": "254.9", "c": 254.9, "h": 254.95, "l": 254.9, "v": 0},
    ]
    out = normalize([frame(json.dumps(answer), 1)])
    head = {"recv_ts": T0 + 1000, "seq": 1, "conid": 265598, "server_id": "588547",
            "symbol": "AAPL", "bar": None, "period": None, "source": None,
            "price_factor": 100, "volume_factor": 100, "outside_rth": False}  # fmt: skip
    assert rows(out, "bars") == [
        {**head, "bar_time": 1734973500000, "open": 254.91, "high": 254.94, "low": 254.82,
         "close": 254.91, "volume": 1234.0},
        {**head, "bar_time": 1734973560000, "open": 254.9, "high": 254.95, "low": 254.9,
         "close": 254.9, "volume": 0.0},
    ]  # fmt: skip


def test_smh_payload_echo_that_is_not_json_still_gives_the_bars() -> None:
    text = ('{"topic":"smh+265598","serverId":"s1","payload":"{not json",'
            '"data":[{"o":1,"c":2,"h":3,"l":0.5,"v":10,"t":1777552110000}]}')
    out = normalize([frame(text)])
    assert "events" not in out
    (row,) = rows(out, "bars")
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"]) == (
        1.0, 3.0, 0.5, 2.0, 10.0)
    assert (row["bar"], row["period"], row["source"]) == (None, None, None)
    assert (row["price_factor"], row["volume_factor"], row["outside_rth"]) == (None, None, None)


def test_smh_refusal_is_an_error_event() -> None:
    # Constructed: a topic frame carrying an error (the gateway's shape for a refused request).
    out = normalize([frame('{"topic":"smh+265598","error":"Too many requests"}', 0)])
    assert set(out) == {"events", "raw"}
    assert rows(out, "events") == [
        {"recv_ts": T0, "conn_id": 1, "seq": 0, "kind": "error", "topic": "smh+265598",
         "detail": '{"topic":"smh+265598","error":"Too many requests"}'}
    ]  # fmt: skip


# --- sbd -> depth (no public capture: constructed from the CAMPUS sbd section) --------------

SBD = (
    '{"topic":"sbd+DU1234567+265598","data":[{"row":0,"focus":0,"price":"150.30"},'
    '{"row":1,"focus":1,"price":"100 @ 150.25"},{"row":2,"focus":0,"price":"150.20","bid":"1,200"},'
    '{"row":3,"focus":0,"price":"150.35","ask":"300"},{"row":4,"focus":0,"price":"x @ 1",'
    '"bid":"","mystery":7}]}'
)


def test_sbd_rows() -> None:
    out = normalize([frame(SBD, 9)])
    assert set(out) == {"depth", "raw"}
    base = {"recv_ts": T0 + 9000, "frame_seq": 9, "account": "DU1234567", "conid": 265598,
            "exchange": None, "focus": 0, "size": None, "bid_size": None, "ask_size": None,
            "extra": None}  # fmt: skip
    assert rows(out, "depth") == [
        {**base, "row": 0, "price": 150.30},
        {**base, "row": 1, "focus": 1, "price": 150.25, "size": 100.0},
        {**base, "row": 2, "price": 150.20, "bid_size": 1200.0},
        {**base, "row": 3, "price": 150.35, "ask_size": 300.0},
        {**base, "row": 4, "price": 1.0, "extra": [("price", "x @ 1"), ("mystery", "7")]},
    ]
    assert rows(out, "raw")[0]["topic"] == "sbd+DU1234567+265598"


@pytest.mark.parametrize(("item", "expected"), [
    ('{"row":0,"price":"100 @ abc"}', (100.0, None, [("price", "100 @ abc")])),
    ('{"row":0,"focus":"x"}', (None, None, [("focus", "x")])),
    ('{"row":0,"bid":"x"}', (None, None, [("bid", "x")])),
])
def test_sbd_unreadable_values_are_kept_in_extra(
        item: str, expected: tuple[object, object, object]) -> None:
    row = one('{"topic":"sbd+DU1+265598","data":[' + item + "]}", "depth")
    assert (row["size"], row["price"], row["extra"]) == expected


def test_sbd_with_exchange_and_old_bare_topic() -> None:
    out = normalize(
        [
            frame('{"topic":"sbd+DU1+8314+NYSE","data":[{"row":0,"focus":1,"price":99.5}]}', 0),
            frame('{"topic":"sbd","data":[{"row":0,"focus":0,"price":"1"}]}', 1),
        ]
    )
    got = [(r["account"], r["conid"], r["exchange"], r["price"]) for r in rows(out, "depth")]
    assert got == [("DU1", 8314, "NYSE", 99.5), (None, None, None, 1.0)]


# --- sor -> orders -------------------------------------------------------------------------

ORDER_NULLS = dict.fromkeys(
    ["account", "conid", "conid_ex", "order_id", "status", "order_ccp_status", "side",
     "order_type", "price", "avg_price", "total_size", "filled_quantity", "remaining_quantity",
     "ticker", "sec_type", "time_in_force", "order_desc", "last_execution_time", "extra"]
)  # fmt: skip


def test_sor_full_snapshot() -> None:
    row = one(real("sor")[0], "orders")
    assert row == {
        "recv_ts": T0, "seq": 0, "account": "U1234567", "conid": 265598, "conid_ex": "265598",
        "order_id": 912091175, "status": "Inactive", "order_ccp_status": "Pending Submit",
        "side": "BUY", "order_type": "Limit", "price": 1.0, "avg_price": None,
        "total_size": 1.0, "filled_quantity": 0.0, "remaining_quantity": 1.0, "ticker": "AAPL",
        "sec_type": "STK", "time_in_force": "CLOSE", "order_desc": "Buy 1 AAPL Limit 1.00, Day",
        "last_execution_time": 1777552533000, "snapshot": False,
        "extra": [("cashCcy", "USD"), ("sizeAndFills", "0/1"), ("description1", "AAPL"),
                  ("listingExchange", "NASDAQ.NMS"), ("companyName", "APPLE INC"),
                  ("outsideRTH", "false"), ("origOrderType", "LIMIT"), ("supportsTaxOpt", "1"),
                  ("lastExecutionTime", "260430123533"), ("bgColor", "#000000"),
                  ("fgColor", "#AFAFAF"), ("isEventTrading", "0")],
    }  # fmt: skip


def test_sor_status_delta_is_mostly_null() -> None:
    row = one(real("sor")[2], "orders")
    assert row == {
        **ORDER_NULLS, "recv_ts": T0, "seq": 0, "account": "U1234567", "order_id": 912091175,
        "status": "PendingSubmit", "snapshot": False, "extra": [("fgColor", "#3399CC")],
    }  # fmt: skip


def test_sor_market_order_empty_price_is_null() -> None:
    row = one(real("sor")[8], "orders")
    assert (row["order_type"], row["price"], row["order_id"]) == ("Market", None, 196655192)
    assert row["extra"] == [  # "price": "" is a blank: null, not kept in extra
        ("companyName", "INVESCO QQQ TRUST SERIES 1"), ("order_ref", "submit-143824-5264"),
    ]  # fmt: skip


def test_sor_a_blank_value_does_not_stop_the_rest_of_the_item() -> None:
    row = one('{"topic":"sor","args":[{"orderId":1,"price":"","status":"Filled",'
              '"side":"BUY"}]}', "orders")
    assert (row["order_id"], row["price"], row["status"], row["side"], row["extra"]) == (
        1, None, "Filled", "BUY", None)


def test_sor_conidex_and_avg_price_land_in_their_own_columns() -> None:
    row = one('{"topic":"sor","args":[{"acct":"DU1","conid":265598,"conidEx":"265598@SMART",'
              '"avgPrice":"150.25","orderId":1}]}', "orders")
    assert (row["conid"], row["conid_ex"], row["avg_price"], row["price"], row["extra"]) == (
        265598, "265598@SMART", 150.25, None, None)


def test_sor_batched_deltas_give_one_row_each_in_order() -> None:
    out = normalize([frame(real("sor")[10], 4)])
    got = [(r["seq"], r["order_id"], r["status"]) for r in rows(out, "orders")]
    assert got == [
        (4, 352055828, "PendingSubmit"),
        (4, 352055828, "PreSubmitted"),
        (4, 352055828, "Submitted"),
    ]


def test_sor_wrong_shape_is_the_documented_error() -> None:
    with pytest.raises(NormalizeError, match="sor frame has no `args` array"):
        normalize_frame(frame('{"topic":"sor","args":{"acct":"U1"}}'))
    with pytest.raises(NormalizeError, match="element is not an object"):
        normalize_frame(frame('{"topic":"sor","args":[1]}'))


def _orders_snapshot(detail: object, seq: int = 7) -> Frame:
    return event_frame(T0 + 5, 3, seq, "orders_snapshot", "sor", detail)


def test_the_day_order_list_gives_its_event_and_a_whole_row_per_order() -> None:
    """The ``/iserver/account/orders`` answer, kept as an event when a socket subscribes
    sor: its orders are rows too, marked ``snapshot``, joined to the event by seq."""
    full = json.loads(real("sor")[0])["args"][0]
    answer = {"orders": [full, {"acct": "U1234567", "orderId": 5, "status": "Filled"}],
              "snapshot": True}
    out = normalize([_orders_snapshot(answer)])
    assert set(out) == {"events", "orders"}
    (event,) = rows(out, "events")
    assert (event["kind"], event["topic"], event["seq"]) == ("orders_snapshot", "sor", 7)
    assert json.loads(event["detail"]) == answer
    got = rows(out, "orders")
    assert got[0] == {**one(real("sor")[0], "orders"), "recv_ts": T0 + 5, "seq": 7,
                      "snapshot": True}
    assert got[1] == {**ORDER_NULLS, "recv_ts": T0 + 5, "seq": 7, "account": "U1234567",
                      "order_id": 5, "status": "Filled", "snapshot": True}
    assert normalize_frame(_orders_snapshot(answer)) == {
        "events": [tuple(event.values())], "orders": [tuple(r.values()) for r in got]}


@pytest.mark.parametrize("detail", [None, [], {"orders": None}, {"orders": [1, "x"]},
                                    {"error": "no account"}])
def test_an_order_list_of_another_shape_keeps_its_event_and_gives_no_rows(
        detail: object) -> None:
    out = normalize([_orders_snapshot(detail)])
    assert set(out) == {"events"}
    assert rows(out, "events")[0]["kind"] == "orders_snapshot"


# --- str -> trades -------------------------------------------------------------------------

EUR_EXTRA = [
    ("supports_tax_opt", "0"), ("order_description", "Sold 0.87 @ 1.16833 on IDEALPRO"),
    ("accountCode", "U1234567"), ("account_allocation_name", "U1234567"),
    ("company_name", "European Monetary Union Euro"), ("contract_description_1", "EUR.USD"),
    ("conidEx", "12087792"), ("clearing_id", "IB"), ("clearing_name", "IB"),
    ("liquidation_trade", "1"), ("is_event_trading", "0"),
]  # fmt: skip


def test_str_execution_sent_twice_keeps_both_rows() -> None:
    texts = real("str")
    out = normalize([frame(texts[0], 0), frame(texts[1], 1), frame(texts[2], 2)])
    execution = {
        "execution_id": "0000d5db.6c89b9be.01.01", "conid": 12087792, "symbol": "EUR",
        "side": "S", "size": 0.87, "price": 1.16833, "trade_time": 1777472478000,
        "exchange": "IDEALPRO", "net_amount": 1.0164471, "account": "U1234567",
        "sec_type": "CASH", "order_id": 177743917198, "extra": EUR_EXTRA,
    }  # fmt: skip
    assert rows(out, "trades") == [
        {"recv_ts": T0 + 1000, "seq": 1, **execution, "commission": None},
        {"recv_ts": T0 + 2000, "seq": 2, **execution, "commission": 0.0},
    ]
    assert len(rows(out, "raw")) == 3  # the empty `args: []` reply is kept in raw only


def test_str_doc_sample_string_conid_and_time() -> None:
    row = one(real("str")[8], "trades")
    assert (row["conid"], row["trade_time"], row["commission"], row["order_id"]) == (
        265598, 1617919801000, 0.35, None)  # fmt: skip
    assert ("conidex", "265598") in row["extra"] and ("submitter", "apara428") in row["extra"]


def test_str_trade_time_without_r_is_read_as_utc() -> None:
    row = one('{"topic":"str","args":[{"execution_id":"e1","trade_time":"20260429-14:21:18"}]}',
              "trades")  # fmt: skip
    assert (row["execution_id"], row["trade_time"], row["extra"]) == ("e1", 1777472478000, None)


@pytest.mark.parametrize("order", ["time first", "time_r first"])
def test_str_trade_time_r_wins_a_disagreement_in_either_key_order(order: str) -> None:
    """Constructed: the two times disagree by an hour (a gateway writing ``trade_time`` in
    local time, say). ``trade_time_r`` is the column's source (schemas/trades.toml) wherever it
    stands in the frame, and the other value is kept in ``extra``."""
    keys = ['"trade_time":"20260429-15:21:18"', '"trade_time_r":1777472478000']
    if order == "time_r first":
        keys.reverse()
    row = one('{"topic":"str","args":[{"execution_id":"e1",' + ",".join(keys) + "}]}",
              "trades")  # fmt: skip
    assert (row["trade_time"], row["extra"]) == (
        1777472478000, [("trade_time", "20260429-15:21:18")])  # fmt: skip


@pytest.mark.parametrize("order", ["account first", "acct first"])
def test_sor_acct_wins_a_disagreement_with_account(order: str) -> None:
    keys = ['"account":"U2"', '"acct":"U1"']
    if order == "acct first":
        keys.reverse()
    row = one('{"topic":"sor","args":[{"orderId":1,' + ",".join(keys) + "}]}", "orders")
    assert (row["account"], row["extra"]) == ("U1", [("account", "U2")])


# --- spl -> pnl ----------------------------------------------------------------------------


def test_spl_rows() -> None:
    a, b = real("spl")
    out = normalize([frame(a, 0), frame(b, 1)])
    assert rows(out, "pnl") == [
        {"recv_ts": T0, "seq": 0, "account": "DU7654321", "key": "DU7654321.Core",
         "row_type": 1, "dpl": -58.28, "nl": 1020000.0, "upl": 4600.0, "rpl": None,
         "uel": 1005353.88, "el": 1010000.0, "mv": 37910.0, "extra": None},
        {"recv_ts": T0 + 1000, "seq": 1, "account": "DU1234", "key": "DU1234.Core",
         "row_type": 1, "dpl": -57520.0, "nl": None, "upl": 972100.0, "rpl": None,
         "uel": None, "el": None, "mv": None, "extra": None},
    ]  # fmt: skip


def test_spl_two_accounts_and_unknown_key() -> None:
    text = '{"topic":"spl","args":{"U1.Core":{"rowType":1,"rpl":5,"foo":"x"},"U2.Core":{}}}'
    out = normalize([frame(text, 0)])
    got = [(r["account"], r["key"], r["rpl"], r["extra"]) for r in rows(out, "pnl")]
    assert got == [("U1", "U1.Core", 5.0, [("foo", "x")]), ("U2", "U2.Core", None, None)]
